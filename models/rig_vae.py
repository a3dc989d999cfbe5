"""Rig motion VAE (prototype): a causal 1-D convolutional VAE on rig features (models/rig.py, docs/rig.md).

Input: rig features (B, T, 86) at the model motion rate (21.53 fps; ``rig.FEATURE_LAYOUT``: root velocity in the
facing frame, root height, heading velocity, 6-D local rotations of the 13 non-leaf joints, 4 foot contacts),
normalised inside the model with the training set's ``RigStats`` (buffers ``feat_mean`` / ``feat_std``).
Latent: (B, C, T // 2) at the latent rate (10.77 Hz; motion x2 down, models/timebase.py), the rate of the music
latents.  Output: features (B, 2L, 86) (contact channels as probabilities, ``decode``; or as logits, ``decode_raw``),
and joint positions through ``rig.features_to_positions`` (decode + FK) with the dancer's own bone lengths, so
bone lengths are exact by construction: a decoder cannot stretch a limb.

Layers are models/vae.py's causal streaming blocks (``_encoder`` / ``_decoder``: ``CausalConv1d``, ``ResBlock``,
``StreamSeq``), so every output frame depends only on inputs up to its own block.  Streaming with explicit state:

    mu, logvar, st = vae.encode_stream(feats_chunk (B, 2k, 86), st)      # st=None starts a stream
    feats, st = vae.decode_stream(z_chunk (B, C, k), st)
    pos, st = vae.decode_positions_stream(z_chunk, bones (B, 17), st, start=None)   # + root integration state

Chunked output equals whole-sequence output (tests/test_rig_vae.py).  Length rule as models/vae.py: crop, never
pad (a trailing odd frame is dropped; fewer than 2 frames raises MomuError).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from momu_live import MomuError
from momu_live.models.rig import (
    FEATURE_LAYOUT, N_FEATURES, RigStats, decode_features, fk, rest_offsets_torch,
)
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.models.vae import _decoder, _encoder

SL_ROOT = slice(0, 4)  # root velocity x z, height, heading velocity
SL_ROT = FEATURE_LAYOUT["rot6d"]
SL_CON = FEATURE_LAYOUT["contacts"]


@dataclass(frozen=True)
class RigVAEConfig:
    latent_dim: int = 16
    channels: tuple = (128, 160)  # motion rate, latent rate (one x2 level, as the motion branch of models/vae.py)
    res_per_level: int = 2
    feat_dim: int = N_FEATURES
    fps: float = float(DEFAULT_TIMEBASE.motion_rate)
    logvar_min: float = -12.0
    logvar_max: float = 6.0


SIZES: dict[str, RigVAEConfig] = {
    "debug": RigVAEConfig(latent_dim=4, channels=(16, 16), res_per_level=1),
    "small": RigVAEConfig(),
    "base": RigVAEConfig(channels=(256, 384), res_per_level=3),
}


@dataclass
class RigVAEState:
    """Streaming state: encoder / decoder layer states and the root integration (last feature frame, (x, z, theta))."""
    enc: list | None = None
    dec: list | None = None
    last: torch.Tensor | None = None  # (B, 1, 86) last decoded feature frame
    pose: torch.Tensor | None = None  # (B, 3) x, z, theta of that frame


class RigVAE(nn.Module):
    """Rig-feature VAE; see the module docstring."""

    def __init__(self, cfg: RigVAEConfig):
        super().__init__()
        if len(cfg.channels) != 2:
            raise ValueError("RigVAEConfig.channels must have two levels (one x2 downsampling: the latent rate)")
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        self.downsample = 2
        assert self.downsample == DEFAULT_TIMEBASE.motion_per_latent
        self.encoder = _encoder(cfg.feat_dim, tuple(cfg.channels), cfg.res_per_level, 2 * cfg.latent_dim)
        self.decoder = _decoder(cfg.latent_dim, tuple(cfg.channels), cfg.res_per_level, cfg.feat_dim)
        self.register_buffer("feat_mean", torch.zeros(cfg.feat_dim))
        self.register_buffer("feat_std", torch.ones(cfg.feat_dim))
        # the DiT's latent normalisation (train_rig_vae.latent_stats, set at every export; saved with the weights)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("latent_std", torch.ones(cfg.latent_dim))

    # ---- normalisation
    def set_stats(self, stats: RigStats | dict) -> None:
        """Feature normalisation (``RigStats`` or its dict); saved with the weights (buffers)."""
        s = RigStats.from_dict(stats) if isinstance(stats, dict) else stats
        self.feat_mean.copy_(torch.as_tensor(s.mean, dtype=torch.float32))
        self.feat_std.copy_(torch.as_tensor(s.std, dtype=torch.float32))

    def set_latent_stats(self, stats: dict) -> None:
        self.latent_mean.copy_(torch.as_tensor(stats["mean"], dtype=torch.float32))
        self.latent_std.copy_(torch.as_tensor(stats["std"], dtype=torch.float32))

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Posterior means (B, C, L) -> the DiT's unit-scale latents (per-channel mean / std of the training dances)."""
        return (z - self.latent_mean[:, None]) / self.latent_std[:, None]

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std[:, None] + self.latent_mean[:, None]

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.feat_mean) / self.feat_std

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised decoder output -> features; contact channels become probabilities (sigmoid of the logits)."""
        f = y * self.feat_std + self.feat_mean
        return torch.cat([f[..., : SL_CON.start], torch.sigmoid(y[..., SL_CON])], dim=-1)

    # ---- encode
    def _check(self, feats: torch.Tensor) -> None:
        if feats.dim() != 3 or feats.shape[-1] != self.cfg.feat_dim:
            raise MomuError(f"rig VAE expects features (B, T, {self.cfg.feat_dim}), got {tuple(feats.shape)}")

    def encode(self, feats: torch.Tensor):
        """feats (B, T, 86) -> (mu, logvar) (B, C, T // 2) (a trailing odd frame is dropped)."""
        self._check(feats)
        T = feats.shape[1] // 2 * 2
        if T == 0:
            raise MomuError(f"motion too short: {feats.shape[1]} frames < one latent frame (2); pass a longer clip")
        mu, logvar, _ = self.encode_stream(feats[:, :T], None)
        return mu, logvar

    def encode_stream(self, feats: torch.Tensor, state: RigVAEState | None = None):
        """Streaming encode: chunk (B, 2k, 86) -> (mu, logvar (B, C, k), state)."""
        self._check(feats)
        st = state or RigVAEState()
        h, enc = self.encoder(self.normalize(feats).transpose(1, 2), st.enc)  # (B, 2C, k)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max), RigVAEState(enc, st.dec, st.last, st.pose)

    # ---- decode
    def decode_raw(self, z: torch.Tensor, state: list | None = None):
        """z (B, C, L) -> normalised features (B, 2L, 86) with contact logits, decoder layer state."""
        y, st = self.decoder(z, state)
        return y.transpose(1, 2), st

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, L) -> features (B, 2L, 86) (contacts as probabilities)."""
        return self.denormalize(self.decode_raw(z)[0])

    def decode_stream(self, z: torch.Tensor, state: RigVAEState | None = None):
        """Streaming decode: z chunk (B, C, k) -> (features (B, 2k, 86), state)."""
        st = state or RigVAEState()
        y, dec = self.decode_raw(z, st.dec)
        return self.denormalize(y), RigVAEState(st.enc, dec, st.last, st.pose)

    # ---- positions
    def positions(self, feats: torch.Tensor, bones: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """Features (B, T, 86) + bone lengths (B, 17) -> joints (B, T, 18, 3) (decode + FK; bones exact);
        ``start`` (B, 3) = (x0, z0, theta0) of frame 0 (zeros when None)."""
        return self.positions_stream(feats, bones, None, start)[0]

    def positions_stream(self, feats: torch.Tensor, bones: torch.Tensor, state: RigVAEState | None = None,
                         start: torch.Tensor | None = None):
        """Feature chunk (B, t, 86) -> (joints (B, t, 18, 3), state): integrates root path and heading across chunks."""
        st = state or RigVAEState()
        fps = self.cfg.fps
        B = feats.shape[0]
        if st.last is None:
            s0 = start if start is not None else feats.new_zeros(B, 3)
            x, pose0 = feats, s0
        else:  # prepend the previous frame: its pose is the start, so frame 0 of this chunk integrates its velocity
            x, pose0 = torch.cat([st.last, feats], dim=1), st.pose
        rot6d, root, _ = decode_features(x, fps, pose0)
        pos = fk(rot6d, root, rest_offsets_torch(bones))  # (B, t(+1), J, 3)
        theta = pose0[:, 2] + (x[:, 1:, 3] / fps).sum(1)  # heading of the last frame (as decode_features integrates)
        pose = torch.stack([root[:, -1, 0], root[:, -1, 2], theta], dim=-1)
        if st.last is not None:
            pos = pos[:, 1:]
        return pos, RigVAEState(st.enc, st.dec, feats[:, -1:], pose)

    def decode_positions_stream(self, z: torch.Tensor, bones: torch.Tensor, state: RigVAEState | None = None,
                                start: torch.Tensor | None = None):
        """z chunk (B, C, k) -> (joints (B, 2k, 18, 3), state): decode + FK in one streaming call."""
        feats, st = self.decode_stream(z, state)
        return self.positions_stream(feats, bones, st, start)


def load_rig_vae(path, device: str | torch.device = "cpu") -> RigVAE:
    """Load a trained rig VAE checkpoint (``OUT/rig_vae.safetensors`` + ``.json``) strictly."""
    from momu_live.models.builders import build_rig_vae
    from momu_live.models.checkpoint import load_checkpoint

    model, doc = load_checkpoint(path, "rig_vae", build_rig_vae)
    model.meta = doc.get("meta", {})  # training figures, rig stats, default bones (models/motion_codec.RigCodec)
    return model.to(device).eval()
