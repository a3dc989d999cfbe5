"""Denoiser wrappers (k-diffusion style): everything between the network and the samplers.

Every object here is a callable ``D(x, sigma) -> x0_hat`` in the VE parameterisation used by
models/sampling.py.  They compose:

- ``FlowDenoiser``: rectified-flow network -> VE denoiser (preconditioning).  With
  ``t = sigma / (1 + sigma)`` the flow state is ``x_t = x / (1 + sigma)`` and ``x0 = x_t - t v``.  It also
  carries the rhythm control of a sampling run (models/rhythm_control.py) into every network pass.
- ``CFGDenoiser``: classifier-free guidance (Ho & Salimans 2022, eq. 6):
  ``D = D_u + w (D_c - D_u)``; the conditional and unconditional passes go through ONE batched forward.
- ``JointDenoiser``: the paper's cross-guidance sampling for joint generation (MoMu-Diffusion Sec. 3.3):
  for ``t > Tc`` both modalities are denoised unconditionally; for ``t <= Tc`` each is conditioned
  on the other's current clean estimate (from the previous evaluation), with CFG weight ``w``.
  Music and motion (and their CFG twins) are batched into one forward.  ``x`` is (2B, C, L):
  rows [0, B) music, [B, 2B) motion.  Its only state is the last clean estimate, kept explicitly in
  ``self.state`` and reset by ``reset()``: make a new one (or reset) per sampling run.  ``post``
  (e.g. beat guidance, models/guidance.py) edits the estimate before it becomes the other modality's
  condition, so the music is conditioned on the guided dance and vice versa.
- ``InpaintDenoiser``: replaces the estimate on known frames with the known latents (RePaint-style
  replacement, Lugmayr et al. 2022, as in EDGE's continuation, Tseng et al. 2023): with any of our
  samplers the known frames then follow ``known + sigma * noise`` and end exactly at ``known``.
"""
from __future__ import annotations

import torch

from momu_live.models.dit import TASK_MOTION, TASK_MUSIC
from momu_live.models.schedules import sigma_to_t


def _col(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None]  # (B, 1, 1)


class FlowDenoiser:
    """VE denoiser from a rectified-flow velocity network (see module docstring)."""

    def __init__(self, model, rhythm: torch.Tensor | None = None):
        """``rhythm`` (1, R, L): the rhythm control (models/rhythm_control.py) every pass sees, CFG's unconditional
        pass included; None: the network's null rhythm (or a network without the control)."""
        self.model = model
        self.rhythm = rhythm if getattr(getattr(model, "cfg", None), "rhythm_dim", 0) else None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, task: torch.Tensor, cond: torch.Tensor | None = None,
                 cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        t = sigma_to_t(sigma.float())  # (B,)
        xt = x / _col(1.0 + sigma)  # (B, C, L)
        if self.rhythm is None:
            v = self.model(xt, t, task, cond, cond_mask)  # (B, C, L)
        else:
            v = self.model(xt, t, task, cond, cond_mask, self.rhythm.expand(x.shape[0], -1, -1))  # (B, C, L)
        return xt - _col(t) * v


class CFGDenoiser:
    """Conditional generation of one modality given the other's aligned latents ``cond`` (B, C, L)."""

    def __init__(self, inner: FlowDenoiser, task: int, cond: torch.Tensor, guidance: float = 1.0):
        self.inner, self.task, self.cond, self.w = inner, task, cond, float(guidance)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        task = torch.full((B,), self.task, device=x.device, dtype=torch.long)
        if self.w == 1.0:
            return self.inner(x, sigma, task, self.cond, None)
        ones = torch.ones(B, device=x.device, dtype=torch.bool)
        den = self.inner(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([task, task]),
                         torch.cat([self.cond, self.cond]), torch.cat([ones, ~ones]))  # (2B, C, L)
        d_c, d_u = den[:B], den[B:]
        return d_u + self.w * (d_c - d_u)


class JointDenoiser:
    """Cross-guidance joint sampler denoiser; ``x`` = cat([music (B,C,L), motion (B,C,L)]).  ``tc`` in flow time."""

    def __init__(self, inner: FlowDenoiser, guidance: float = 1.0, tc: float = 0.5, known: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, post=None):
        self.inner, self.w, self.tc, self.post = inner, float(guidance), float(tc), post
        self.state: torch.Tensor | None = None  # last clean estimate (2B, C, L)
        # continuation: known frames replace the estimate BEFORE it becomes the other modality's condition
        self.known, self.mask = known, (None if mask is None else mask.to(known.dtype))

    def reset(self) -> None:
        self.state = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        B2 = x.shape[0]
        B = B2 // 2
        task = torch.cat([torch.full((B,), TASK_MUSIC), torch.full((B,), TASK_MOTION)]).to(x.device)  # (2B,)
        t = float(sigma_to_t(sigma[:1].float()))
        if t > self.tc or self.state is None:
            den = self.inner(x, sigma, task, None, None)  # unconditional, both modalities in one pass
        else:
            est = self.state
            cond = torch.cat([est[B:], est[:B]])  # music <- motion estimate, motion <- music estimate
            if self.w == 1.0:
                den = self.inner(x, sigma, task, cond, None)
            else:
                ones = torch.ones(B2, device=x.device, dtype=torch.bool)
                both = self.inner(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([task, task]),
                                  torch.cat([cond, cond]), torch.cat([ones, ~ones]))  # (4B, C, L)
                den = both[B2:] + self.w * (both[:B2] - both[B2:])
        if self.post is not None:
            den = self.post(den, sigma)  # (2B, C, L)
        if self.known is not None:
            den = self.mask * self.known + (1 - self.mask) * den
        self.state = den.detach()
        return den


class InpaintDenoiser:
    """Known frames (``mask`` 1) are replaced by ``known``; ``mask`` broadcasts to x, e.g. (1, 1, L)."""

    def __init__(self, inner, known: torch.Tensor, mask: torch.Tensor):
        self.inner, self.known, self.mask = inner, known, mask.to(known.dtype)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        den = self.inner(x, sigma)
        return self.mask * self.known + (1 - self.mask) * den
