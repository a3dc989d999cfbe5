"""Samplers, schedules and denoiser wrappers on known targets (exact Gaussian denoiser) and a debug DiT."""
from __future__ import annotations

import pytest
import torch

from momu_live.models import sampling, schedules
from momu_live.models.builders import debug_dit
from momu_live.models.denoiser import CFGDenoiser, FlowDenoiser, InpaintDenoiser, JointDenoiser
from momu_live.models.dit import TASK_MUSIC

MU, S = 1.5, 0.5


def gaussian_denoiser(x, sigma):
    """Exact E[x0 | x] for x0 ~ N(MU, S^2) and x = x0 + sigma eps."""
    s = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    return MU + S ** 2 / (S ** 2 + s ** 2) * (x - MU)


@pytest.mark.parametrize("name,schedule,steps", [
    ("euler", "flow", 100), ("ddim", "ddpm", 100), ("ddpm", "ddpm", 200), ("heun", "karras", 30), ("dpmpp_2m", "karras", 30),
])
def test_samplers_recover_gaussian(name, schedule, steps):
    torch.manual_seed(0)
    sig = schedules.get_sigmas(schedule, steps)
    x = torch.randn(20000, 1, 1) * sig[0]
    g = torch.Generator().manual_seed(1)
    out = sampling.get_sampler(name)(gaussian_denoiser, x, sig, generator=g)
    assert abs(out.mean().item() - MU) < 0.03, out.mean()
    assert abs(out.std().item() - S) < 0.03, out.std()


def test_one_step_euler_returns_posterior_mean_and_more_steps_approach_target():
    """A single Euler step from pure noise gives D(x, sigma_max) ~ the data mean; std grows to S with steps."""
    torch.manual_seed(0)
    stds = []
    for n in (1, 2, 4, 16):
        sig = schedules.flow_sigmas(n)
        out = sampling.sample_euler(gaussian_denoiser, torch.randn(5000, 1, 1) * sig[0], sig)
        stds.append(out.std().item())
        assert abs(out.mean().item() - MU) < 0.05
    assert stds[0] < 0.01
    assert stds == sorted(stds) and abs(stds[-1] - S) < 0.05


def test_schedules_are_descending_and_end_at_zero():
    for name in schedules.SCHEDULES:
        for n in (1, 2, 8, 50):
            s = schedules.get_sigmas(name, n)
            assert len(s) == n + 1 and s[-1] == 0 and bool((s[:-1] > 0).all())
            assert bool((s[1:] < s[:-1]).all())
    t = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(schedules.sigma_to_t(schedules.t_to_sigma(t)), t)
    with pytest.raises(ValueError):
        schedules.flow_sigmas(0)


def test_inpainting_keeps_known_frames_exactly():
    torch.manual_seed(0)
    known = torch.randn(3, 2, 10)
    mask = torch.zeros(1, 1, 10)
    mask[..., :4] = 1
    den = InpaintDenoiser(gaussian_denoiser, known, mask)
    for name in ("euler", "ddpm", "dpmpp_2m", "heun"):
        sig = schedules.get_sigmas(sampling.DEFAULT_SCHEDULE[name], 6)
        out = sampling.get_sampler(name)(den, torch.randn(3, 2, 10) * sig[0], sig, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(out[..., :4], known[..., :4], atol=1e-4)
        assert not torch.allclose(out[..., 4:], known[..., 4:], atol=1e-2)


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    m = debug_dit(4).eval()
    for p in m.parameters():  # leave the zero-initialised output layer: randomise so guidance matters
        torch.nn.init.normal_(p, std=0.2)
    return m


def test_cfg_batches_cond_and_uncond_in_one_forward(dit):
    inner = FlowDenoiser(dit)
    cond = torch.randn(2, 4, 12)
    x, sigma = torch.randn(2, 4, 12) * 3, torch.full((2,), 3.0)
    task = torch.full((2,), TASK_MUSIC)
    d_c = inner(x, sigma, task, cond)
    d_u = inner(x, sigma, task, cond, torch.zeros(2, dtype=torch.bool))
    assert torch.allclose(d_u, inner(x, sigma, task, None), atol=1e-5)  # dropped condition == no condition
    calls = []
    dit.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    out = CFGDenoiser(inner, TASK_MUSIC, cond, 3.0)(x, sigma)
    dit._forward_hooks.clear()
    assert calls == [4]  # one forward of batch 2B
    assert torch.allclose(out, d_u + 3.0 * (d_c - d_u), atol=1e-4)
    assert torch.allclose(CFGDenoiser(inner, TASK_MUSIC, cond, 1.0)(x, sigma), d_c, atol=1e-5)


def test_joint_cross_guidance_switches_at_tc(dit):
    inner = FlowDenoiser(dit)
    den = JointDenoiser(inner, guidance=2.0, tc=0.5)
    calls = []
    dit.register_forward_hook(lambda m, a, o: calls.append((a[0].shape[0], a[3] is not None)))
    x = torch.randn(2, 4, 8)
    sig = schedules.flow_sigmas(4)  # t = 0.999, 0.749, 0.5, 0.25
    sampling.sample_euler(den, x * sig[0], sig)
    dit._forward_hooks.clear()
    # t > Tc: unconditional, both modalities in one batch of 2; t <= Tc: conditioned + CFG twin in one batch of 4
    assert calls == [(2, False), (2, False), (4, True), (4, True)]


def test_samplers_are_deterministic_given_a_seed(dit):
    inner = FlowDenoiser(dit)
    cond = torch.randn(1, 4, 9)
    den = CFGDenoiser(inner, TASK_MUSIC, cond, 2.0)
    sig = schedules.get_sigmas("ddpm", 5)
    x = torch.randn(1, 4, 9, generator=torch.Generator().manual_seed(3)) * sig[0]
    a = sampling.sample_ddpm(den, x, sig, generator=torch.Generator().manual_seed(5))
    b = sampling.sample_ddpm(den, x, sig, generator=torch.Generator().manual_seed(5))
    c = sampling.sample_ddpm(den, x, sig, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_unknown_sampler_is_a_clear_error():
    from momu_live import MomuError

    with pytest.raises(MomuError, match="unknown sampler"):
        sampling.get_sampler("nope")
    with pytest.raises(MomuError, match="unknown schedule"):
        schedules.get_sigmas("nope", 4)
