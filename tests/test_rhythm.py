"""Directogram, kinematic amplitude Q(r) and the rhythmic contrastive loss (paper Eq. 1-4)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from momu_live.models.motion import synthetic_dance
from momu_live.models.rhythm import (
    clip_starts, cut_clips, directogram, kinematic_amplitude, latent_amplitude, retrieval_ranks,
    rhythmic_contrastive_loss,
)
from momu_live.models.timebase import DEFAULT_TIMEBASE as TB

FPS = float(TB.motion_rate)


def _moving_joint(vx: np.ndarray, vy: np.ndarray) -> torch.Tensor:
    """One joint (1, T, 1, 3) whose per-frame velocity (m/s) is (vx, vy, 0)."""
    pos = np.zeros((len(vx) + 1, 3))
    pos[1:, 0] = np.cumsum(vx) / FPS
    pos[1:, 1] = np.cumsum(vy) / FPS
    return torch.from_numpy(pos)[None, :, None].float()


def test_directogram_bins_speed_by_direction():
    T = 10
    right = directogram(_moving_joint(np.full(T, 2.0), np.zeros(T)), n_bins=8)  # (1, T+1, 8)
    assert right.shape == (1, T + 1, 8)
    np.testing.assert_allclose(right[0, 1:, 0].numpy(), 2.0, rtol=1e-4)
    assert right[0, 1:, 1:].abs().max() < 1e-6
    up = directogram(_moving_joint(np.zeros(T), np.full(T, 1.0)), n_bins=8)
    np.testing.assert_allclose(up[0, 1:, 2].numpy(), 1.0, rtol=1e-4)  # 90 degrees -> bin 2 of 8
    left = directogram(_moving_joint(np.full(T, -0.5), np.zeros(T)), n_bins=4)
    np.testing.assert_allclose(left[0, 1:, 2].numpy(), 0.5, rtol=1e-4)  # 180 degrees -> bin 2 of 4


def test_kinematic_amplitude_is_half_wave_rectified_flux():
    # constant rightward motion, a sudden reversal at frame 10, then a stop at frame 20
    vx = np.concatenate([np.full(10, 1.0), np.full(10, -1.0), np.zeros(10)])
    q = kinematic_amplitude(_moving_joint(vx, np.zeros_like(vx)))[0].numpy()  # (31,)
    assert q[0] == 0 and q[1] == pytest.approx(1.0, rel=1e-4)  # onset from rest
    assert np.abs(q[2:10]).max() < 1e-4  # steady motion: no flux
    assert q[11] == pytest.approx(1.0, rel=1e-4)  # reversal: new energy in the opposite bin
    assert np.abs(q[21:]).max() < 1e-6  # stopping only removes energy: rectified to zero
    assert (q >= 0).all()


def test_q_peaks_on_the_beats_of_a_synthetic_dancer():
    bpm = 120.0
    m = synthetic_dance(seconds=8.0, fps=FPS, bpm=bpm, seed=0)
    q = kinematic_amplitude(torch.from_numpy(m.joints)[None])[0].numpy()
    # Q is periodic at the beat: its autocorrelation peaks near one beat period
    x = q - q.mean()
    ac = np.correlate(x, x, "full")[len(x) - 1:]
    period = FPS * 60 / bpm
    lag = np.argmax(ac[int(period * 0.6): int(period * 1.6)]) + int(period * 0.6)
    assert abs(lag - period) <= 1.5 or abs(lag - 2 * period) <= 1.5
    ql = latent_amplitude(torch.from_numpy(m.joints)[None])
    L = m.n_frames // 2
    assert ql.shape == (1, L)
    np.testing.assert_allclose(ql[0].numpy(), q[: 2 * L].reshape(L, 2).max(1), rtol=1e-6)


def test_cut_clips_max_pools():
    z = torch.randn(3, 4, 20)
    st = torch.tensor([[0, 0], [2, 5], [1, 12]])
    out = cut_clips(z, st, 8)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out[1], z[2, :, 5:13].amax(-1))
    torch.testing.assert_close(out[2], z[1, :, 12:20].amax(-1))
    starts, qc = clip_starts(torch.arange(20.0)[None].repeat(2, 1), 4, per_item=5, generator=torch.Generator().manual_seed(0))
    assert starts.shape == (10, 2) and (starts[:, 1] <= 16).all()
    torch.testing.assert_close(qc, starts[:, 1].float() + 1.5)


def test_contrastive_loss_rewards_alignment_and_trains():
    g = torch.Generator().manual_seed(0)
    B, C, L = 8, 16, 32
    music = torch.randn(B, C, L, generator=g)
    q = torch.rand(B, L, generator=g) + 0.1
    aligned = rhythmic_contrastive_loss(music, music.clone(), q, generator=torch.Generator().manual_seed(1))
    shuffled = rhythmic_contrastive_loss(music, music[torch.randperm(B, generator=g)], q,
                                         generator=torch.Generator().manual_seed(1))
    assert aligned < shuffled - 1.0
    # Q weighting: pairs with zero kinematic amplitude do not count
    q0 = q.clone()
    q0[:4] = 0
    noisy = music.clone()
    noisy[:4] = torch.randn(4, C, L, generator=g)  # corrupt only the motionless items
    l_sel = rhythmic_contrastive_loss(music, noisy, q0, select=False, generator=torch.Generator().manual_seed(2))
    l_all = rhythmic_contrastive_loss(music, noisy, torch.ones_like(q0), select=False,
                                      generator=torch.Generator().manual_seed(2))
    assert l_sel < l_all
    # gradient descent on the motion side aligns a random latent with the music latent
    motion = torch.randn(B, C, L, generator=g, requires_grad=True)
    opt = torch.optim.Adam([motion], 0.05)
    first = None
    for step in range(150):
        loss = rhythmic_contrastive_loss(music, motion, q, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first
    za = cut_clips(music, torch.tensor([[b, 0] for b in range(B)]), 8)
    zm = cut_clips(motion.detach(), torch.tensor([[b, 0] for b in range(B)]), 8)
    assert (retrieval_ranks(za, zm) == 0).float().mean() > 0.7
    assert math.isfinite(loss.item())
