"""Explicit rhythm features that condition the DiT next to the other modality's latents (causal, streamable).

The BiCoR-VAE latents (10.77 Hz) carry only a weak trace of the beat, so the DiT also sees, per
latent frame, a few hand-made onset features of the CONDITION modality at its native rate, folded
into channels (docs/GENERATION.md "Rhythm conditioning"):

- motion (condition of motion->music), 2 model-rate frames per latent frame x 2 features = 4 ch:
  feet speed s(t) = mean_j |p_j(t) - p_j(t-1)| fps over ankles and toes, and the kinematic amplitude
  Q(t) = sum_k relu(D(t, k) - D(t-1, k)) of MoMu-Diffusion Eq. 2 (models/rhythm.py); each
  ``(log1p(x) - mean) / std``.
- music (condition of music->motion), 8 mel frames per latent frame x 1 feature = 8 ch: onset
  strength o(n) = mean_f relu(M(f, n) - M(f, n-1)) (half-wave-rectified spectral flux of the log-mel),
  ``(log1p(o) - mean) / std``.

The DiT's condition input is ``cat([latents (C), motion rhythm (4), music rhythm (8)])`` (C + 12
channels); the modality that is not the condition is zero there.  Every difference is a BACKWARD
difference; the frames it needs from before a chunk are explicit state (``motion_rhythm_stream`` /
``music_rhythm_stream``), the very first frame of a stream has difference 0, so chunked == whole.
"""
from __future__ import annotations

import numpy as np
import torch

from momu_live.models.rhythm import directogram
from momu_live.models.skeleton import FEET
from momu_live.models.timebase import DEFAULT_TIMEBASE

MOTION_FEATS = 2  # feet speed, Q
MOTION_CH = MOTION_FEATS * 2  # per latent frame (motion_per_latent = 2)
MUSIC_CH = 8  # mel frames per latent frame
RHYTHM_DIM = MOTION_CH + MUSIC_CH
# log1p statistics measured on the training dances of the DwM pack (momu train diffusion --rhythm)
MOTION_MEAN = np.array([0.50, 0.78], np.float32)
MOTION_STD = np.array([0.33, 0.59], np.float32)
MUSIC_MEAN, MUSIC_STD = 0.12, 0.11


def _motion_frames(joints: torch.Tensor, fps: float) -> torch.Tensor:
    """(T, 18, 3) joints whose first 2 frames are context -> (T - 2, 2) raw [feet speed, Q] of the later frames."""
    v = (joints[1:] - joints[:-1]) * fps  # (T-1, 18, 3)
    feet = v[:, list(FEET)].norm(dim=-1).mean(-1)  # (T-1,)
    d = directogram(joints[None], fps=fps)[0, 1:]  # (T-1, K): D(t) for t >= 1
    q = torch.relu(d[1:] - d[:-1]).sum(-1)  # (T-2,)
    return torch.stack([feet[1:], q], dim=-1)  # (T-2, 2)


def motion_rhythm_stream(joints, state: dict | None = None, fps: float | None = None) -> tuple[torch.Tensor, dict]:
    """Model-rate joints chunk (2k, 18, 3) -> motion rhythm (4, k) (channels = frame-major [s, Q] x 2).

    ``state`` holds the last two joint frames; at the start of a stream the first frame is repeated
    (zero velocity, zero flux), exactly what a whole-sequence call does."""
    fps = float(fps if fps is not None else DEFAULT_TIMEBASE.motion_rate)
    j = torch.as_tensor(np.asarray(joints, dtype=np.float32), dtype=torch.float32)  # (2k, 18, 3)
    k2 = DEFAULT_TIMEBASE.motion_per_latent
    if j.dim() != 3 or j.shape[0] % k2:
        raise ValueError(f"motion rhythm needs (2k, 18, 3) joints, got {tuple(j.shape)}")
    ctx = j[:1].expand(2, -1, -1) if state is None else state["ctx"]  # (2, 18, 3)
    jj = torch.cat([ctx, j])  # (2 + 2k, 18, 3)
    raw = _motion_frames(jj.double(), fps).float()  # (2k, 2)
    if state is None:  # no previous directogram: Q(0) = 0 like models/rhythm.kinematic_amplitude
        raw[0, 1] = 0.0
    f = (torch.log1p(raw) - torch.from_numpy(MOTION_MEAN)) / torch.from_numpy(MOTION_STD)  # (2k, 2)
    k = j.shape[0] // k2
    out = f.reshape(k, k2 * MOTION_FEATS).t().contiguous()  # (4, k)
    return out, {"ctx": jj[-2:].clone()}


def music_rhythm_stream(mel, state: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Log-mel chunk (80, 8k) -> onset strength (8, k) (channel = mel frame within the latent frame)."""
    m = torch.as_tensor(mel, dtype=torch.float32)  # (80, 8k)
    per = DEFAULT_TIMEBASE.latent_per_mel
    if m.dim() != 2 or m.shape[-1] % per:
        raise ValueError(f"music rhythm needs a (80, 8k) log-mel, got {tuple(m.shape)}")
    prev = m[:, :1] if state is None else state["prev"]  # (80, 1)
    mm = torch.cat([prev, m], dim=-1)  # (80, 1 + 8k)
    o = torch.relu(mm[:, 1:] - mm[:, :-1]).mean(0)  # (8k,)
    f = (torch.log1p(o) - MUSIC_MEAN) / MUSIC_STD
    return f.reshape(-1, per).t().contiguous(), {"prev": m[:, -1:].clone()}  # (8, k)


def motion_rhythm(joints, fps: float | None = None) -> torch.Tensor:
    """Whole sequence (2L, 18, 3) -> (4, L)."""
    return motion_rhythm_stream(joints, None, fps)[0]


def music_rhythm(mel) -> torch.Tensor:
    """Whole log-mel (80, 8L) -> (8, L)."""
    return music_rhythm_stream(mel, None)[0]


def condition(latents: torch.Tensor, rhythm: torch.Tensor, modality: str) -> torch.Tensor:
    """DiT condition (B, C + RHYTHM_DIM, L) from the condition modality's latents (B, C, L) and rhythm (B, R_m, L)."""
    B, _, L = latents.shape
    r = rhythm.to(latents.device, latents.dtype)
    z_mo = latents.new_zeros(B, MOTION_CH, L)
    z_mu = latents.new_zeros(B, MUSIC_CH, L)
    if modality == "motion":
        return torch.cat([latents, r, z_mu], dim=1)
    if modality == "music":
        return torch.cat([latents, z_mo, r], dim=1)
    raise ValueError(f"modality must be 'motion' or 'music', got {modality!r}")
