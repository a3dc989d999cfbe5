"""BiCoR-VAE (MoMu-Diffusion, NeurIPS 2024, Sec. 3.1): aligned music and motion latents.

Two 1-D convolutional VAEs share one latent width ``C`` and one latent rate (DESIGN.md time bases):

- music VAE: log-mel (B, 80, 8L) at 86.13 Hz  -> latent (B, C, L) at 10.77 Hz (x8 down)
- motion VAE: features (B, 2L, F) at 21.53 fps -> latent (B, C, L) at 10.77 Hz (x2 down)

Latent frame ``i`` of both covers audio samples ``[i*2048, (i+1)*2048)``.

Length rule (crop, never pad): ``encode_music`` uses the first ``8 * (N // 8)`` mel frames,
``encode_motion`` the first ``2 * (T // 2)`` motion frames; trailing frames are dropped.  Since a
motion of ``T = N // 4`` frames (the model-rate length of N mel frames) gives ``T // 2 == N // 8``,
the two latents of a pair always have the same length.  Fewer than one latent frame of input
raises MomuError.  ``latent_length(n, "music"|"motion")`` returns L.

Every layer is causal (left context only, no lookahead): latent frame i depends on input up to
the end of its own block and decoded frame t on latents <= t's block.  Streaming uses explicit
state: ``encode_music_stream(mel_chunk, state) -> (mu, logvar, state)`` etc. with ``state=None``
at the start; chunk lengths must be multiples of the block (8 mel / 2 motion frames / 1 latent),
and chunked output equals whole-sequence output (tests/test_vae.py).

Latent normalisation for the diffusion model: per-channel mean/std of the posterior means over
the training data, per modality, stored in the checkpoint JSON (``meta.latent_stats``) and kept as
buffers ``latent_shift`` / ``latent_scale`` of shape (2, C) (row 0 music, row 1 motion).  Use
``normalize_latent(z, "music")`` / ``denormalize_latent(z, "motion")``.

Motion features (``motion_features``), F = 108 per frame, all in the world frame (y up):
  [0:51)   joint positions minus the pelvis, joints 1..17 (metres / POS_SCALE)
  [51:52)  pelvis height above its clip-independent reference (y - ROOT_Y_REF) / POS_SCALE
  [52:54)  pelvis horizontal velocity (vx, vz) in m/s / ROOT_VEL_SCALE
  [54:108) velocities of all 18 joints in m/s / VEL_SCALE (backward differences; frame 0 copies frame 1)
``features_to_joints`` integrates the root velocity (starting at ``root_xz0``, default the origin)
and adds the root-relative positions; the velocity block is used by the losses and the rhythm
indicator, not by the inverse.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F_

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

N_JOINTS = 18
POS_SCALE = 0.5  # metres
ROOT_Y_REF = 0.9  # metres (typical pelvis height)
ROOT_VEL_SCALE = 1.0  # m/s
VEL_SCALE = 2.0  # m/s
FEAT_DIM = 3 * (N_JOINTS - 1) + 1 + 2 + 3 * N_JOINTS  # 108
SL_REL = slice(0, 51)
SL_ROOT_Y = slice(51, 52)
SL_ROOT_VEL = slice(52, 54)
SL_VEL = slice(54, 108)
MEL_MEAN = -5.0  # fixed log-mel normalisation inside the music VAE
MEL_STD = 2.5


# ---------------------------------------------------------------------------------------------
# motion feature transform
def motion_features_torch(joints: torch.Tensor, fps: float | Fraction | None = None) -> torch.Tensor:
    """Batched, differentiable ``motion_features``: joints (B, T, 18, 3) -> (B, T, 108)."""
    fps = float(fps if fps is not None else DEFAULT_TIMEBASE.motion_rate)
    B, T = joints.shape[:2]
    root = joints[:, :, 0]  # (B, T, 3)
    rel = (joints[:, :, 1:] - root[:, :, None]).reshape(B, T, -1) / POS_SCALE  # (B, T, 51)
    ry = (root[..., 1:2] - ROOT_Y_REF) / POS_SCALE  # (B, T, 1)
    if T > 1:
        d = (joints[:, 1:] - joints[:, :-1]) * fps  # (B, T-1, 18, 3)
        vel = torch.cat([d[:, :1], d], dim=1)  # (B, T, 18, 3)
    else:
        vel = torch.zeros_like(joints)
    rvel = vel[:, :, 0][..., [0, 2]] / ROOT_VEL_SCALE  # (B, T, 2)
    v = vel.reshape(B, T, -1) / VEL_SCALE  # (B, T, 54)
    return torch.cat([rel, ry, rvel, v], dim=-1)  # (B, T, 108)


def motion_features(joints, fps: float | Fraction | None = None) -> np.ndarray:
    """Canonical joints (T, 18, 3) at the model motion rate -> features (T, 108) float32 (layout above)."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (N_JOINTS, 3):
        raise MomuError(f"motion_features expects canonical joints (T, 18, 3), got {j.shape}")
    if not np.isfinite(j).all():
        raise MomuError("motion contains NaN/inf; fill gaps before encoding")
    return motion_features_torch(torch.from_numpy(j)[None], fps)[0].numpy().astype(np.float32)


def features_to_joints(feats, fps: float | Fraction | None = None, root_xz0=(0.0, 0.0)) -> np.ndarray:
    """Features (T, 108) -> canonical joints (T, 18, 3): root from height + integrated velocity."""
    f = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    f = f.astype(np.float64)
    if f.ndim != 2 or f.shape[1] != FEAT_DIM:
        raise MomuError(f"features_to_joints expects (T, {FEAT_DIM}), got {f.shape}")
    fps = float(fps if fps is not None else DEFAULT_TIMEBASE.motion_rate)
    T = f.shape[0]
    root = np.zeros((T, 3))
    rv = f[:, SL_ROOT_VEL] * ROOT_VEL_SCALE / fps  # (T, 2) metres per frame
    steps = np.concatenate([np.zeros((1, 2)), rv[1:]], axis=0)
    root[:, [0, 2]] = np.asarray(root_xz0, dtype=np.float64)[None] + np.cumsum(steps, axis=0)
    root[:, 1] = f[:, 51] * POS_SCALE + ROOT_Y_REF
    out = np.empty((T, N_JOINTS, 3))
    out[:, 0] = root
    out[:, 1:] = f[:, SL_REL].reshape(T, N_JOINTS - 1, 3) * POS_SCALE + root[:, None]
    return out.astype(np.float32)


def features_to_joints_torch(feats: torch.Tensor) -> torch.Tensor:
    """Root-relative joints (B, T, 18, 3) from features (B, T, F) (differentiable; pelvis at origin)."""
    B, T, _ = feats.shape
    rel = feats[..., SL_REL].reshape(B, T, N_JOINTS - 1, 3) * POS_SCALE  # (B, T, 17, 3)
    return torch.cat([torch.zeros_like(rel[:, :, :1]), rel], dim=2)  # (B, T, 18, 3)


# ---------------------------------------------------------------------------------------------
# configs
@dataclass(frozen=True)
class BiCoRVAEConfig:
    latent_dim: int = 16
    n_mels: int = 80
    music_channels: tuple = (80, 128, 160)  # per x2 level (3 levels = x8)
    motion_channels: tuple = (128, 160)  # motion rate, latent rate (1 level = x2)
    res_per_level: int = 2
    feat_dim: int = FEAT_DIM
    mel_mean: float = MEL_MEAN
    mel_std: float = MEL_STD
    logvar_min: float = -12.0
    logvar_max: float = 6.0
    disc_channels: int = 32  # mel discriminator (training only)


SIZES: dict[str, BiCoRVAEConfig] = {
    "debug": BiCoRVAEConfig(latent_dim=4, music_channels=(16, 16, 16), motion_channels=(16, 16), res_per_level=1,
                            disc_channels=8),
    "small": BiCoRVAEConfig(),
    "base": BiCoRVAEConfig(latent_dim=16, music_channels=(192, 256, 384), motion_channels=(256, 384), res_per_level=3,
                           disc_channels=64),
}


# ---------------------------------------------------------------------------------------------
# causal streaming layers: forward(x (B, C, T), state) -> (y, state); state=None means "start"
class CausalConv1d(nn.Module):
    """Conv1d with left padding only; stride s consumes inputs in blocks of s (T % s == 0).

    The state is the last ``(k-1)*d + 1 - s`` input frames (zeros at the start).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.pad = (kernel - 1) * dilation + 1 - stride
        if self.pad < 0:
            raise ValueError("kernel too small for stride")
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation)

    def forward(self, x, state=None):
        if x.shape[-1] % self.stride:
            raise MomuError(f"causal conv with stride {self.stride} got {x.shape[-1]} frames (not a multiple)")
        if self.pad == 0:
            return self.conv(x), None
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.pad)
        xx = torch.cat([state, x], dim=-1)  # (B, C, pad + T)
        return self.conv(xx), xx[..., xx.shape[-1] - self.pad:]


class ResBlock(nn.Module):
    def __init__(self, ch: int, dilation: int = 1):
        super().__init__()
        self.c1 = CausalConv1d(ch, ch, 3, dilation=dilation)
        self.c2 = nn.Conv1d(ch, ch, 1)

    def forward(self, x, state=None):
        h, s = self.c1(F_.silu(x), state)
        return x + self.c2(F_.silu(h)), s


class Upsample(nn.Module):
    """x2 nearest repeat then a causal conv (output frame t sees inputs <= t // 2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = CausalConv1d(cin, cout, 3)

    def forward(self, x, state=None):
        return self.conv(torch.repeat_interleave(x, 2, dim=-1), state)


class Act(nn.Module):
    def forward(self, x, state=None):
        return F_.silu(x), None


class StreamSeq(nn.Module):
    """Sequence of streaming layers; its state is the list of its layers' states."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, state=None):
        state = state if state is not None else [None] * len(self.layers)
        new = []
        for layer, s in zip(self.layers, state):
            x, s2 = layer(x, s)
            new.append(s2)
        return x, new


def _res(ch: int, n: int) -> list:
    return [ResBlock(ch, dilation=3 ** (i % 2)) for i in range(n)]


def _encoder(cin: int, chans: tuple, n_res: int, cout: int) -> StreamSeq:
    layers = [CausalConv1d(cin, chans[0], 3)]
    for i, ch in enumerate(chans[:-1]):
        layers += _res(ch, n_res) + [CausalConv1d(ch, chans[i + 1], 4, stride=2)]
    layers += _res(chans[-1], n_res) + [Act(), CausalConv1d(chans[-1], cout, 3)]
    return StreamSeq(*layers)


def _decoder(cin: int, chans: tuple, n_res: int, cout: int) -> StreamSeq:
    rev = tuple(reversed(chans))
    layers = [CausalConv1d(cin, rev[0], 3)] + _res(rev[0], n_res)
    for i, ch in enumerate(rev[1:]):
        layers += [Upsample(rev[i], ch)] + _res(ch, n_res)
    layers += [Act(), CausalConv1d(rev[-1], cout, 3)]
    return StreamSeq(*layers)


class ModalityVAE(nn.Module):
    """Encoder (x: (B, cin, T) -> 2C channels at T / 2^levels) and decoder back."""

    def __init__(self, cin: int, enc_chans: tuple, n_res: int, latent_dim: int):
        super().__init__()
        self.downsample = 2 ** (len(enc_chans) - 1)
        self.encoder = _encoder(cin, enc_chans, n_res, 2 * latent_dim)
        self.decoder = _decoder(latent_dim, enc_chans, n_res, cin)


class BiCoRVAE(nn.Module):
    """Music + motion VAEs with aligned latents (paper Sec. 3.1).  See the module docstring."""

    def __init__(self, cfg: BiCoRVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        self.music = ModalityVAE(cfg.n_mels, tuple(cfg.music_channels) + (cfg.music_channels[-1],), cfg.res_per_level,
                                 cfg.latent_dim)
        self.motion = ModalityVAE(cfg.feat_dim, tuple(cfg.motion_channels), cfg.res_per_level, cfg.latent_dim)
        assert self.music.downsample == DEFAULT_TIMEBASE.latent_per_mel
        assert self.motion.downsample == DEFAULT_TIMEBASE.motion_per_latent
        self.register_buffer("latent_shift", torch.zeros(2, cfg.latent_dim), persistent=False)
        self.register_buffer("latent_scale", torch.ones(2, cfg.latent_dim), persistent=False)

    # ---- bookkeeping
    @staticmethod
    def latent_length(n: int, modality: str) -> int:
        """Latent frames L for ``n`` mel frames (music) or model-rate motion frames (motion): crop rule."""
        block = {"music": DEFAULT_TIMEBASE.latent_per_mel, "motion": DEFAULT_TIMEBASE.motion_per_latent}[modality]
        return n // block

    def _crop(self, x: torch.Tensor, block: int, what: str) -> torch.Tensor:
        n = x.shape[-1] // block * block
        if n == 0:
            raise MomuError(f"{what} too short: {x.shape[-1]} frames < one latent frame ({block}); pass a longer clip")
        return x[..., :n]

    def _split(self, h: torch.Tensor):
        mu, logvar = h.chunk(2, dim=1)  # (B, C, L) each
        return mu, logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max)

    # ---- music
    def encode_music(self, mel: torch.Tensor):
        """mel (B, 80, N) -> (mu, logvar) (B, C, N // 8) (trailing N % 8 frames dropped)."""
        mu, logvar, _ = self.encode_music_stream(self._crop(mel, 8, "mel"), None)
        return mu, logvar

    def encode_music_stream(self, mel: torch.Tensor, state=None):
        """Streaming encode: mel chunk (B, 80, 8k) -> (mu, logvar (B, C, k), state)."""
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise MomuError(f"encode_music expects mel (B, {self.cfg.n_mels}, N), got {tuple(mel.shape)}")
        x = (mel - self.cfg.mel_mean) / self.cfg.mel_std  # (B, 80, 8k)
        h, state = self.music.encoder(x, state)  # (B, 2C, k)
        return (*self._split(h), state)

    def decode_music(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, L) -> log-mel (B, 80, 8L)."""
        return self.decode_music_stream(z, None)[0]

    def decode_music_stream(self, z: torch.Tensor, state=None):
        y, state = self.music.decoder(z, state)  # (B, 80, 8k)
        return y * self.cfg.mel_std + self.cfg.mel_mean, state

    # ---- motion
    def encode_motion(self, feats: torch.Tensor):
        """feats (B, T, F) -> (mu, logvar) (B, C, T // 2) (a trailing odd frame is dropped)."""
        mu, logvar, _ = self.encode_motion_stream(self._crop(feats.transpose(1, 2), 2, "motion").transpose(1, 2), None)
        return mu, logvar

    def encode_motion_stream(self, feats: torch.Tensor, state=None):
        """Streaming encode: feats chunk (B, 2k, F) -> (mu, logvar (B, C, k), state)."""
        if feats.dim() != 3 or feats.shape[-1] != self.cfg.feat_dim:
            raise MomuError(f"encode_motion expects features (B, T, {self.cfg.feat_dim}), got {tuple(feats.shape)}")
        h, state = self.motion.encoder(feats.transpose(1, 2), state)  # (B, 2C, k)
        return (*self._split(h), state)

    def decode_motion(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, L) -> features (B, 2L, F)."""
        return self.decode_motion_stream(z, None)[0]

    def decode_motion_stream(self, z: torch.Tensor, state=None):
        y, state = self.motion.decoder(z, state)  # (B, F, 2k)
        return y.transpose(1, 2), state

    # ---- latent normalisation for the diffusion model
    def _row(self, modality: str) -> int:
        try:
            return {"music": 0, "motion": 1}[modality]
        except KeyError:
            raise MomuError(f"modality must be 'music' or 'motion', got {modality!r}") from None

    def normalize_latent(self, z: torch.Tensor, modality: str) -> torch.Tensor:
        r = self._row(modality)
        return (z - self.latent_shift[r][:, None]) / self.latent_scale[r][:, None]  # (B, C, L)

    def denormalize_latent(self, z: torch.Tensor, modality: str) -> torch.Tensor:
        r = self._row(modality)
        return z * self.latent_scale[r][:, None] + self.latent_shift[r][:, None]  # (B, C, L)

    def set_latent_stats(self, stats: dict) -> None:
        """stats: {"music": {"mean": [C], "std": [C]}, "motion": {...}} (checkpoint JSON ``meta.latent_stats``)."""
        for m, r in (("music", 0), ("motion", 1)):
            self.latent_shift[r] = torch.as_tensor(stats[m]["mean"], dtype=torch.float32)
            self.latent_scale[r] = torch.as_tensor(stats[m]["std"], dtype=torch.float32).clamp_min(1e-4)

    def latent_stats(self) -> dict:
        return {m: {"mean": self.latent_shift[r].tolist(), "std": self.latent_scale[r].tolist()}
                for m, r in (("music", 0), ("motion", 1))}


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps (Kingma & Welling 2014)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)), mean over all elements."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


class MelDiscriminator(nn.Module):
    """Patch discriminator on log-mels (B, 80, T) -> logits (B, 1, F', T') (LSGAN, stage 1 adversarial loss)."""

    def __init__(self, ch: int = 32, n_mels: int = 80, mel_mean: float = MEL_MEAN, mel_std: float = MEL_STD):
        super().__init__()
        self.mel_mean, self.mel_std = mel_mean, mel_std
        self.net = nn.ModuleList([
            nn.Conv2d(1, ch, 3, stride=(2, 1), padding=1),
            nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1),
            nn.Conv2d(2 * ch, 4 * ch, 3, stride=2, padding=1),
            nn.Conv2d(4 * ch, 4 * ch, 3, stride=1, padding=1),
        ])
        self.out = nn.Conv2d(4 * ch, 1, 3, padding=1)

    def forward(self, mel: torch.Tensor):
        x = ((mel - self.mel_mean) / self.mel_std)[:, None]  # (B, 1, 80, T)
        feats = []
        for conv in self.net:
            x = F_.leaky_relu(conv(x), 0.2)
            feats.append(x)
        return self.out(x), feats


# ---------------------------------------------------------------------------------------------
# loading
DEFAULT_WEIGHTS = "vae"


def default_weights_path():
    from pathlib import Path

    return Path(__file__).resolve().parent / "weights" / "vae.safetensors"


def load_bicor_vae(path=None, device: str | torch.device = "cpu") -> BiCoRVAE:
    """Load a trained BiCoR-VAE (default ``models/weights/vae.safetensors``) strictly, with latent stats."""
    from momu_live.models.builders import build_vae
    from momu_live.models.checkpoint import load_checkpoint

    path = path or default_weights_path()
    model, doc = load_checkpoint(path, "vae", build_vae)
    stats = doc.get("meta", {}).get("latent_stats")
    if stats is None:
        raise MomuError(f"{path}: checkpoint JSON has no meta.latent_stats; re-export it with `momu train vae`")
    model.set_latent_stats(stats)
    return model.to(device).eval()
