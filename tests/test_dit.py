"""The diffusion transformer: shapes, adaLN-Zero init, length-free local attention, training, checkpoints."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from momu_live import MomuError
from momu_live.models.builders import build_dit, debug_dit
from momu_live.models.checkpoint import save_checkpoint
from momu_live.models.dit import SIZES, DiTConfig, band_mask, flow_matching_loss


def _randomise(m):
    torch.manual_seed(0)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return m.eval()


def test_shapes_any_length_and_zero_init():
    m = debug_dit(4).eval()
    for L in (1, 7, 64, 301):
        x = torch.randn(2, 4, L)
        v = m(x, torch.rand(2), torch.tensor([0, 1]), torch.randn(2, 4, L))
        assert v.shape == (2, 4, L)
        assert torch.count_nonzero(v) == 0  # adaLN-Zero + zero output layer: the untrained net predicts 0


def test_band_attention_is_local_and_translation_invariant():
    cfg = SIZES["debug"]
    m = _randomise(debug_dit(4))
    L = 80
    x, c = torch.randn(1, 4, L), torch.randn(1, 4, L)
    t, task = torch.tensor([0.4]), torch.tensor([1])
    v = m(x, t, task, c)
    x2 = x.clone()
    x2[..., 0] += 5.0
    v2 = m(x2, t, task, c)
    reach = cfg.depth * cfg.attn_window  # receptive field of stacked banded attention
    assert (v2 - v)[..., 0].abs().max() > 1e-3
    assert torch.allclose(v2[..., reach + 1:], v[..., reach + 1:], atol=1e-5)
    # RoPE + band: a window far from the borders gives the same output wherever it sits
    a = m(x[..., 10:70], t, task, c[..., 10:70])
    b = m(x[..., 0:80], t, task, c[..., 0:80])[..., 10:70]
    inner = slice(reach, 60 - reach)
    assert torch.allclose(a[..., inner], b[..., inner], atol=1e-4)
    assert band_mask(5, 8, "cpu") is None and band_mask(20, 8, "cpu").sum() < 400


def test_condition_and_task_change_the_output():
    m = _randomise(debug_dit(4))
    x, c = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    t = torch.tensor([0.5])
    v0 = m(x, t, torch.tensor([0]), c)
    assert not torch.allclose(v0, m(x, t, torch.tensor([1]), c), atol=1e-4)
    assert not torch.allclose(v0, m(x, t, torch.tensor([0]), None), atol=1e-4)
    assert torch.allclose(m(x, t, torch.tensor([0]), c, torch.tensor([False])), m(x, t, torch.tensor([0]), None), atol=1e-6)


def test_flow_matching_training_learns_a_conditional_map():
    """A debug DiT learns music = -motion (a per-frame aligned relation): loss falls well below its start."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    m = debug_dit(4)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(120):
        motion = torch.randn(8, 4, 12, generator=g)
        loss = flow_matching_loss(m, -motion, motion, torch.zeros(8, dtype=torch.long), g, cond_drop=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.set_num_threads(threads)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_checkpoint_round_trip_and_strict_errors(tmp_path):
    from momu_live.models.pretrained import load_dit

    m = _randomise(debug_dit(4))
    save_checkpoint(tmp_path / "dit", m, m.cfg, "dit", {"note": "test"})
    back = load_dit(tmp_path / "dit")
    x = torch.randn(1, 4, 10)
    args = (torch.tensor([0.3]), torch.tensor([0]), torch.randn(1, 4, 10))
    assert torch.equal(back(x, *args), m(x, *args))
    other = build_dit(dataclasses.replace(SIZES["debug"], latent_dim=4, dim=48))
    save_checkpoint(tmp_path / "bad", other, m.cfg, "dit")  # config says dim 32, weights have 48
    with pytest.raises(MomuError, match="does not match"):
        load_dit(tmp_path / "bad")
    with pytest.raises(MomuError, match="not found"):
        load_dit(tmp_path / "missing")
    with pytest.raises(MomuError, match="unknown DiT size"):
        build_dit("huge")
    assert isinstance(build_dit({**dataclasses.asdict(SIZES["debug"])}).cfg, DiTConfig)


def test_train_pipeline_encode_train_resume(tmp_path):
    """A synthetic pack -> frozen debug VAE latents -> a few training steps -> resume -> strict-loadable checkpoint."""
    import json

    import numpy as np

    from momu_live.models.builders import debug_vae
    from momu_live.models.motion import synthetic_dance
    from momu_live.models.packing import PackedDance, save_pack
    from momu_live.models.pretrained import load_dit
    from momu_live.models.timebase import DEFAULT_TIMEBASE as TB
    from momu_live.models.train_diffusion import TrainConfig, encode_pack, load_latents, save_latents, train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    dances = []
    for i, split in enumerate(["train", "train", "val"]):
        L = 40
        j = synthetic_dance(2 * L / float(TB.motion_rate) + 0.2, fps=float(TB.motion_rate), seed=i).joints[: 2 * L]
        mel = (rng.normal(size=(80, 8 * L)) - 5).astype(np.float16)
        dances.append(PackedDance(f"d{i}", mel, j.astype(np.float16), "pop", split))
    pack = save_pack(dances, tmp_path / "pack")
    lat = encode_pack(pack, debug_vae(), progress=False)
    assert lat["music/d0"].shape == (4, 40) and lat["motion/d2"].shape == (4, 40)
    save_latents(lat, tmp_path / "lat.npz")
    lat = load_latents(tmp_path / "lat.npz")
    cfg = TrainConfig(size="debug", steps=6, batch=4, clip=16, val_every=3, ckpt_every=3, warmup=2)
    train(lat, tmp_path / "run", cfg, progress=False)
    train(lat, tmp_path / "run", dataclasses.replace(cfg, steps=9), resume=True, progress=False)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [r["step"] for r in log] == [3, 6, 9] and all(np.isfinite(r["val_loss"]) for r in log)
    m = load_dit(tmp_path / "run" / "dit")
    assert m.cfg.latent_dim == 4
    with pytest.raises(MomuError, match="no val dance|lower --clip"):
        train(lat, tmp_path / "run2", dataclasses.replace(cfg, clip=400), progress=False)
