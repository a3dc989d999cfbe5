"""Noise schedules as descending sigma arrays (k-diffusion convention, Karras et al. 2022).

All samplers (models/sampling.py) work in the variance-exploding (VE) parameterisation
``x = x0 + sigma * eps`` and take a 1-D tensor of sigmas ending in 0.  The diffusion model itself
is trained as a rectified flow (Liu et al. 2023; flow matching, Lipman et al. 2023):
``x_t = (1 - t) x0 + t eps``, which is the same process after rescaling:
``sigma = t / (1 - t)`` and ``x_VE = x_t / (1 - t)`` (models/denoiser.py does the conversion).

Schedules:
- ``flow_sigmas(n)``: n uniform steps in flow time t from ``t_max`` to 0 (the rectified-flow path;
  the few-step default: straight paths make uniform Euler steps in t exact for a perfect flow).
- ``karras_sigmas(n)``: Karras et al. 2022 eq. 5 (rho = 7), used by DPM-Solver++ and the many-step baseline.
- ``ddpm_sigmas(n)``: n of the 1000 discrete DDPM times equally spaced (Ho et al. 2020 / DDIM
  Song et al. 2021 "uniform" skip), mapped through the flow path.
"""
from __future__ import annotations

import torch

T_MAX = 0.999  # flow time of the first step (sigma = 999): x_t is pure noise up to 0.1% of x0


def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Flow time t in [0, 1) -> VE sigma = t / (1 - t)."""
    return t / (1.0 - t)


def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """VE sigma -> flow time t = sigma / (1 + sigma) (t = 1 for sigma = inf)."""
    return torch.where(torch.isinf(sigma), torch.ones_like(sigma), sigma / (1.0 + sigma))


def _append_zero(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s, s.new_zeros(1)])


def flow_sigmas(n: int, t_max: float = T_MAX, shift: float = 1.0) -> torch.Tensor:
    """n steps uniform in flow time from t_max to 0 (optionally time-shifted, SD3 eq. 23: t' = s t / (1 + (s-1) t))."""
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {n}")
    t = torch.linspace(t_max, 0.0, n + 1, dtype=torch.float64)[:-1]
    t = shift * t / (1 + (shift - 1) * t)
    return _append_zero(t_to_sigma(t)).float()


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float | None = None, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 eq. 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0."""
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {n}")
    smax = float(t_to_sigma(torch.tensor(T_MAX, dtype=torch.float64))) if sigma_max is None else sigma_max
    if n == 1:
        return _append_zero(torch.tensor([smax], dtype=torch.float64)).float()
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), smax ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho).float()


def ddpm_sigmas(n: int, n_train: int = 1000, t_max: float = T_MAX) -> torch.Tensor:
    """n of the n_train discrete training times, equally spaced ("DDIM uniform" skip), as sigmas."""
    if n < 1 or n > n_train:
        raise ValueError(f"steps must be in [1, {n_train}], got {n}")
    idx = torch.linspace(n_train, 1, n, dtype=torch.float64).round()
    t = idx / n_train * t_max
    return _append_zero(t_to_sigma(t)).float()


SCHEDULES = {"flow": flow_sigmas, "karras": karras_sigmas, "ddpm": ddpm_sigmas}


def get_sigmas(name: str, n: int) -> torch.Tensor:
    try:
        return SCHEDULES[name](n)
    except KeyError:
        from momu_live import MomuError

        raise MomuError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
