"""Samplers: small pure functions with one signature (k-diffusion style, Karras et al. 2022).

    sample_<name>(denoiser, x, sigmas, extra=None, generator=None, callback=None) -> x0

- ``denoiser(x, sigma, **extra) -> D(x, sigma)``: the clean-data estimate in the VE parameterisation
  ``x = x0 + sigma * eps`` (models/denoiser.py wraps the rectified-flow network, CFG, cross-guidance
  and inpainting into this form); ``sigma`` is a (B,) tensor.
- ``x``: the starting noise already scaled by ``sigmas[0]``; ``sigmas``: descending, last one 0
  (models/schedules.py).  The loop never leaves the device of ``x``.
- ``generator``: a torch.Generator for the stochastic samplers (same seed -> same output).
- ``callback(i, n)``: progress hook.

Samplers: ``euler`` (= deterministic DDIM, Song et al. 2021 eq. 12 in VE form; with the flow schedule
it is the rectified-flow Euler sampler, the few-step path), ``ddpm`` (ancestral sampling, Ho et al.
2020 eq. 4 / DDIM eta = 1), ``heun`` (Karras et al. 2022 Alg. 1) and ``dpmpp_2m`` (DPM-Solver++(2M),
Lu et al. 2022 Alg. 2, data prediction, multistep).
"""
from __future__ import annotations

from typing import Callable

import torch


def _sig(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return s.expand(x.shape[0])  # (B,)


def _dims(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return s.reshape(-1, *([1] * (x.dim() - 1)))


@torch.no_grad()
def sample_euler(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra: dict | None = None,
                 generator: torch.Generator | None = None, callback: Callable | None = None) -> torch.Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (= DDIM, eta 0)."""
    extra = extra or {}
    sigmas = sigmas.to(x.device)
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        den = denoiser(x, _sig(x, s), **extra)  # (B, C, L)
        x = den + (x - den) * (s_next / s)  # exact form of x + (s_next - s) * (x - den) / s
        if callback is not None:
            callback(i, n)
    return x


@torch.no_grad()
def sample_ddpm(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra: dict | None = None,
                generator: torch.Generator | None = None, callback: Callable | None = None) -> torch.Tensor:
    """Ancestral sampling (DDPM posterior step, Ho et al. 2020 eq. 6-7, in VE form = Euler ancestral, eta 1)."""
    extra = extra or {}
    sigmas = sigmas.to(x.device)
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        den = denoiser(x, _sig(x, s), **extra)
        if s_next == 0:
            x = den
        else:
            s_up = torch.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2)
            s_down = torch.sqrt(s_next ** 2 - s_up ** 2)
            x = den + (x - den) * (s_down / s)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + noise * s_up
        if callback is not None:
            callback(i, n)
    return x


@torch.no_grad()
def sample_heun(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra: dict | None = None,
                generator: torch.Generator | None = None, callback: Callable | None = None) -> torch.Tensor:
    """Heun's 2nd-order method (Karras et al. 2022 Alg. 1, S_churn = 0); 2 evaluations per step but the last."""
    extra = extra or {}
    sigmas = sigmas.to(x.device)
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        den = denoiser(x, _sig(x, s), **extra)
        d = (x - den) / s
        x_next = x + d * (s_next - s)
        if s_next > 0:
            den2 = denoiser(x_next, _sig(x, s_next), **extra)
            d2 = (x_next - den2) / s_next
            x_next = x + (d + d2) / 2 * (s_next - s)
        x = x_next
        if callback is not None:
            callback(i, n)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra: dict | None = None,
                    generator: torch.Generator | None = None, callback: Callable | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) with lambda = -log sigma (VE: alpha = 1)."""
    extra = extra or {}
    sigmas = sigmas.to(x.device)
    n = len(sigmas) - 1
    old_den = None
    h_last = None
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        den = denoiser(x, _sig(x, s), **extra)
        if s_next == 0:
            x = den
        else:
            t, t_next = -torch.log(s), -torch.log(s_next)
            h = t_next - t
            if old_den is None or h_last is None:
                d = den  # first step: DPM-Solver++(1) = DDIM
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old_den  # Alg. 2 line 6
            x = (s_next / s) * x - torch.expm1(-h) * d
            h_last = h
        old_den = den
        if callback is not None:
            callback(i, n)
    return x


SAMPLERS: dict[str, Callable] = {
    "euler": sample_euler,
    "ddim": sample_euler,
    "ddpm": sample_ddpm,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}
# the schedule each sampler is normally paired with (models/schedules.py)
DEFAULT_SCHEDULE = {"euler": "flow", "ddim": "ddpm", "ddpm": "ddpm", "heun": "karras", "dpmpp_2m": "karras"}


def get_sampler(name: str) -> Callable:
    try:
        return SAMPLERS[name]
    except KeyError:
        from momu_live import MomuError

        raise MomuError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
