"""Diffusion transformer over BiCoR-VAE latents (MoMu-Diffusion Sec. 3.2; DiT blocks, Peebles & Xie 2023).

One network serves both cross-modal directions and joint generation: a *task* embedding says which
modality is being denoised (0 = music, 1 = motion) and the other modality's latents, which share the
latent time base (10.77 Hz, docs/DESIGN.md), are the per-frame condition:

    h_i = W_x x_t[i] + (m * W_c c[i] + (1 - m) * e_null)          (B, L, D)
          [+ (r * W_r rho[i] + (1 - r) * e_null_rhythm)]            rhythm control (rhythm_dim > 0)
    c_emb = MLP(sinusoid(1000 t)) + E_task[task]                    (B, D)
    h = DiTBlock(h, c_emb) x depth;  v = Linear(adaLN(h, c_emb))     (B, L, C)

- Timestep conditioning by adaLN-Zero (DiT Sec. 3.2: per-block shift/scale/gate regressed from
  c_emb, gates initialised to zero so every block starts as the identity).
- Positions by rotary embeddings (RoPE, Su et al. 2021) on queries/keys only, plus a banded
  (local) attention mask of radius ``attn_window`` latent frames: attention depends only on relative
  offsets inside the band, so any length generates in one pass with exactly the context seen in
  training (no length extrapolation).
- Condition dropout (``m = 0`` with probability ``cond_drop`` in training) gives the unconditional
  model needed for classifier-free guidance and for the paper's cross-guidance (t > Tc).
- Rhythm control (beyond the paper; models/rhythm_control.py): an optional per-frame beat / bar phase and tempo
  input ``rho`` (B, R, L), dropped with probability ``rhythm_drop`` in training (``r = 0``) so the model also
  runs without one.  ``W_r`` starts at zero: a DiT initialised from one without the control starts unchanged.
- Output: the rectified-flow velocity v = eps - x0 for x_t = (1 - t) x0 + t eps (models/denoiser.py
  turns it into a VE denoiser).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

TASK_MUSIC = 0  # denoise music latents (condition: motion)
TASK_MOTION = 1  # denoise motion latents (condition: music)
MODALITIES = ("music", "motion")


@dataclass(frozen=True)
class DiTConfig:
    latent_dim: int = 16  # C: BiCoR-VAE latent width
    dim: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    attn_window: int = 48  # band radius in latent frames (4.5 s each side)
    n_tasks: int = 2
    cond_drop: float = 0.1  # training-time condition dropout (CFG)
    rope_base: float = 10000.0
    rhythm_dim: int = 0  # rhythm control channels (models/rhythm_control.RHYTHM_DIM); 0: none
    rhythm_drop: float = 0.2  # training-time rhythm dropout


SIZES: dict[str, DiTConfig] = {
    "debug": DiTConfig(latent_dim=4, dim=32, depth=2, heads=2, attn_window=8),
    "small": DiTConfig(dim=192, depth=8, heads=4),
    "base": DiTConfig(dim=384, depth=12, heads=6),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) times (DDPM / Transformer positional encoding) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


def rope_tables(L: int, head_dim: int, base: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (L, head_dim/2) of RoPE (Su et al. 2021, eq. 34)."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    ang = torch.arange(L, device=device, dtype=torch.float32)[:, None] * inv[None]  # (L, hd/2)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_2i, x_2i+1) of (B, H, L, hd) by position angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, L, hd/2)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, L, hd/2, 2)
    return out.flatten(-2)


def band_mask(L: int, radius: int, device) -> torch.Tensor | None:
    """(L, L) boolean mask, True where |i - j| <= radius; None when the band covers everything."""
    if L <= radius + 1:
        return None
    i = torch.arange(L, device=device)
    return (i[:, None] - i[None, :]).abs() <= radius


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # (B, L, D)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cos, sin, mask):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, hd)
        return self.proj(o.transpose(1, 2).reshape(B, L, D))


class DiTBlock(nn.Module):
    """Pre-LN transformer block with adaLN-Zero (DiT Fig. 3, right)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x, c, cos, sin, mask):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=-1)  # (B, D) each
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1), cos, sin, mask)
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))  # (B, L, D)


class DiT(nn.Module):
    """v = DiT(x_t (B, C, L), t (B,), task (B,), cond (B, C, L), cond_mask (B,), rhythm (B, R, L), rhythm_mask (B,))
    -> (B, C, L)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        C, D = cfg.latent_dim, cfg.dim
        self.x_in = nn.Linear(C, D)
        self.c_in = nn.Linear(C, D)
        self.null_cond = nn.Parameter(torch.zeros(D))
        if cfg.rhythm_dim:
            self.r_in = nn.Linear(cfg.rhythm_dim, D)
            self.null_rhythm = nn.Parameter(torch.zeros(D))
            nn.init.zeros_(self.r_in.weight)
            nn.init.zeros_(self.r_in.bias)
        self.t_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.task_emb = nn.Embedding(cfg.n_tasks, D)
        self.blocks = nn.ModuleList(DiTBlock(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.out = nn.Linear(D, C)
        for m in (self.ada_out[1], self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, task: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None, rhythm: torch.Tensor | None = None,
                rhythm_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, L = x.shape
        h = self.x_in(x.transpose(1, 2))  # (B, L, D)
        h = h + self._embed(cond, cond_mask, self.c_in, self.null_cond, B, h.dtype)
        if self.cfg.rhythm_dim:
            h = h + self._embed(rhythm, rhythm_mask, self.r_in, self.null_rhythm, B, h.dtype)
        c = self.t_mlp(timestep_embedding(1000.0 * t, self.cfg.dim)) + self.task_emb(task)  # (B, D)
        cos, sin = rope_tables(L, self.cfg.dim // self.cfg.heads, self.cfg.rope_base, x.device, h.dtype)
        mask = band_mask(L, self.cfg.attn_window, x.device)
        for blk in self.blocks:
            h = blk(h, c, cos, sin, mask)
        sh, sc = self.ada_out(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm_out(h), sh, sc)).transpose(1, 2)  # (B, C, L)

    @staticmethod
    def _embed(c: torch.Tensor | None, mask: torch.Tensor | None, proj: nn.Linear, null: torch.Tensor, B: int, dtype):
        """Per-frame condition (B, *, L) -> (B, L, D) embedding; rows with mask 0 (or no condition) get ``null``."""
        if c is None:
            return null
        m = torch.ones(B, device=c.device, dtype=dtype) if mask is None else mask.to(dtype)  # (B,)
        return m[:, None, None] * proj(c.transpose(1, 2)) + (1 - m)[:, None, None] * null  # (B, L, D)


def flow_matching_loss(model: DiT, x0: torch.Tensor, cond: torch.Tensor, task: torch.Tensor,
                       generator: torch.Generator | None = None, cond_drop: float | None = None,
                       rhythm: torch.Tensor | None = None, rhythm_drop: float | None = None,
                       cond_keep: torch.Tensor | None = None) -> torch.Tensor:
    """Rectified-flow / conditional flow-matching loss (Liu et al. 2023 eq. 1; Lipman et al. 2023 eq. 23):
    || v_theta((1-t) x0 + t eps, t) - (eps - x0) ||^2 with t ~ logit-normal(0, 1) (SD3, Esser et al. 2024).
    ``rhythm`` (B, R, L): the rhythm control, dropped per item with probability ``rhythm_drop``; ``cond_keep`` (B,)
    bool: items whose condition is always dropped (False), e.g. music-only corpus crops."""
    B = x0.shape[0]
    dev = x0.device
    eps = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
    t = torch.sigmoid(torch.randn(B, generator=generator, device=dev))  # (B,)
    xt = (1 - t)[:, None, None] * x0 + t[:, None, None] * eps  # (B, C, L)
    p = model.cfg.cond_drop if cond_drop is None else cond_drop
    keep = (torch.rand(B, generator=generator, device=dev) >= p)  # (B,)
    if cond_keep is not None:
        keep = keep & cond_keep.to(dev)
    r_keep = None
    if rhythm is not None:
        pr = model.cfg.rhythm_drop if rhythm_drop is None else rhythm_drop
        r_keep = torch.rand(B, generator=generator, device=dev) >= pr  # (B,)
    v = model(xt, t, task, cond, keep, rhythm, r_keep)
    return F.mse_loss(v, eps - x0)
