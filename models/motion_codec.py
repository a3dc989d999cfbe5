"""Motion codecs: canonical joints <-> the DiT's normalised motion latents, offline and streaming.

The pipeline (models/generation.py) and beat guidance (models/guidance.py) talk to motion only through a
codec, so the motion representation is one choice made when the weights are loaded:

- ``PositionCodec``: the BiCoR-VAE's motion half (models/vae.py; 108 position/velocity features).  Bone
  lengths are not constrained: its decoded limbs stretch (docs/MODEL_CARD.md).
- ``RigCodec``: the rig motion VAE (models/rig_vae.py, docs/rig_vae.md) on rig features (models/rig.py):
  joints are fitted to rotations by the per-frame analytic IK (``rig.ik_analytic``), featurised causally,
  encoded; latents decode to features and then to joints by forward kinematics with fixed bone lengths,
  so **bone lengths are exact by construction** and the root path and heading are integrated across
  chunks.

One interface (all joints canonical (T, 18, 3) at the model rate, latents normalised (1, C, L) at the
latent rate, 2 motion frames per latent frame)::

    z = codec.encode(joints)                         # (1, C, T // 2)
    z, st = codec.encode_stream(joints_chunk, st)    # chunk (2k, 18, 3) -> (1, C, k); st=None starts
    j = codec.decode(z)                              # (2L, 18, 3) float32, root path from x = z = 0
    j, st = codec.decode_stream(z_chunk, st)         # continues the root path and heading
    jt = codec.joints_torch(z)                       # (B, 2L, 18, 3) differentiable (beat guidance)

Streaming states are explicit frozen dataclasses (``PositionEncState`` ...); chunked output equals the
whole-sequence output (tests/test_motion_codec.py).

Rig encoding choices (the paper has no rig; ours, configurable): IK is the analytic per-frame solution (no
refinement: it is causal and ~1 ms a frame; the training features came from the refined fit, docs/rig.md
gives both errors); foot contacts are causal: a foot joint is in contact when its height is within
``RigConfig.contact_margin`` of the lowest height that joint has had so far in the stream and its
backward-difference speed is below ``RigConfig.contact_speed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE


def _check_joints(j: np.ndarray, chunk: bool = False) -> np.ndarray:
    from momu_live.models.rig import N_JOINTS

    j = np.asarray(j, dtype=np.float32)
    per = DEFAULT_TIMEBASE.motion_per_latent
    if j.ndim != 3 or j.shape[1:] != (N_JOINTS, 3):
        raise MomuError(f"motion must be canonical joints (T, {N_JOINTS}, 3), got {j.shape}")
    if chunk and (j.shape[0] == 0 or j.shape[0] % per):
        raise MomuError(f"motion chunk must be (2k, 18, 3) model-rate frames, got {j.shape}")
    if j.shape[0] < per:
        raise MomuError(f"motion too short: {j.shape[0]} frames; need at least {per} frames at "
                        f"{float(DEFAULT_TIMEBASE.motion_rate):.2f} fps")
    if not np.isfinite(j).all():
        raise MomuError("motion contains NaN/inf; fill gaps first (momu pose does)")
    return j


# ------------------------------------------------------------------------------------------------
# position codec (BiCoR-VAE motion half)
@dataclass(frozen=True, eq=False)
class PositionEncState:
    vae: object = None  # the VAE encoder's layer states
    last_pose: np.ndarray | None = None  # (1, 18, 3) last input frame: velocities across chunk borders


@dataclass(frozen=True, eq=False)
class PositionDecState:
    vae: object = None  # the VAE decoder's layer states
    last_feat: np.ndarray | None = None  # (1, 108) last decoded feature frame
    last_root: tuple[float, float] | None = None  # (x, z) of the last decoded root


class PositionCodec:
    """The BiCoR-VAE's motion half as a codec (see the module docstring)."""

    kind = "position"

    def __init__(self, vae):
        self.vae = vae
        self.latent_dim = int(vae.latent_dim)
        self.tb = DEFAULT_TIMEBASE

    def _device(self):
        return next(self.vae.parameters()).device

    @torch.no_grad()
    def encode(self, joints) -> torch.Tensor:
        from momu_live.models.vae import motion_features

        f = torch.from_numpy(motion_features(_check_joints(joints)))[None].to(self._device())  # (1, T, 108)
        return self.vae.normalize_latent(self.vae.encode_motion(f)[0], "motion")  # (1, C, T // 2)

    @torch.no_grad()
    def encode_stream(self, joints, state: PositionEncState | None = None):
        from momu_live.models.vae import motion_features

        j = _check_joints(joints, chunk=True)
        st = state or PositionEncState()
        jj = j if st.last_pose is None else np.concatenate([st.last_pose, j])
        f = motion_features(jj)[0 if st.last_pose is None else 1:]  # (2k, 108): backward differences across chunks
        mu, _, enc = self.vae.encode_motion_stream(torch.from_numpy(f)[None].to(self._device()), st.vae)  # (1, C, k)
        return self.vae.normalize_latent(mu, "motion"), PositionEncState(enc, j[-1:])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        from momu_live.models.vae import features_to_joints

        feats = self.vae.decode_motion(self.vae.denormalize_latent(z, "motion"))  # (1, 2L, 108)
        return features_to_joints(feats[0], self.tb.motion_rate)

    @torch.no_grad()
    def decode_stream(self, z: torch.Tensor, state: PositionDecState | None = None):
        from momu_live.models.vae import features_to_joints

        st = state or PositionDecState()
        if z.shape[-1] == 0:
            return np.zeros((0, 18, 3), np.float32), st
        feats, dec = self.vae.decode_motion_stream(self.vae.denormalize_latent(z, "motion"), st.vae)  # (1, 2k, 108)
        f = feats[0].detach().cpu().numpy()  # (2k, 108)
        if st.last_feat is None:
            j = features_to_joints(f, self.tb.motion_rate)
        else:
            j = features_to_joints(np.concatenate([st.last_feat, f]), self.tb.motion_rate, root_xz0=st.last_root)[1:]
        return j, PositionDecState(dec, f[-1:], (float(j[-1, 0, 0]), float(j[-1, 0, 2])))

    def joints_torch(self, z: torch.Tensor) -> torch.Tensor:
        from momu_live.models.guidance import world_joints_torch

        feats = self.vae.decode_motion(self.vae.denormalize_latent(z, "motion"))  # (B, 2L, 108)
        return world_joints_torch(feats, float(self.tb.motion_rate))  # (B, 2L, 18, 3)


# ------------------------------------------------------------------------------------------------
# rig codec (rig VAE + analytic IK + FK)
@dataclass(frozen=True, eq=False)
class RigEncState:
    vae: object = None  # the rig VAE encoder's RigVAEState
    last_rot6d: np.ndarray | None = None  # (1, 18, 6) last input frame's local rotations
    last_root: np.ndarray | None = None  # (1, 3) last input frame's root
    last_feet: np.ndarray | None = None  # (1, 4, 3) last input frame's foot joints
    floor: np.ndarray | None = None  # (4,) lowest height of each foot joint so far


@dataclass(frozen=True, eq=False)
class RigDecState:
    vae: object = None  # RigVAEState: decoder layers + root integration (last feature frame, x, z, theta)


def causal_contacts(feet: np.ndarray, fps: float, last_feet: np.ndarray | None = None, floor: np.ndarray | None = None,
                    cfg=None) -> tuple[np.ndarray, np.ndarray]:
    """Causal foot contacts (T, 4) in {0, 1} of foot joints (T, 4, 3) and the updated floor (4,).

    Contact: height within ``contact_margin`` of the lowest height so far and backward-difference speed below
    ``contact_speed`` (models/rig.RigConfig); frame 0 of a stream takes frame 1's speed."""
    from momu_live.models.rig import RigConfig

    cfg = cfg or RigConfig()
    h = feet[..., 1]  # (T, 4)
    low_so_far = np.minimum.accumulate(h, axis=0)  # (T, 4)
    if floor is not None:
        low_so_far = np.minimum(low_so_far, floor[None])
    prev = feet[:1] if last_feet is None else last_feet  # (1, 4, 3)
    sp = np.linalg.norm(np.diff(np.concatenate([prev, feet]), axis=0), axis=-1) * fps  # (T, 4)
    if last_feet is None and len(feet) > 1:
        sp[0] = sp[1]
    c = (h < low_so_far + cfg.contact_margin) & (sp < cfg.contact_speed)  # (T, 4)
    return c.astype(np.float32), low_so_far[-1]


class RigCodec:
    """The rig motion VAE as a codec (see the module docstring).  ``bones`` (17,): the bone lengths generated
    dances are decoded with (default: the rig VAE checkpoint's ``meta["bones"]``, the training dances' median)."""

    kind = "rig"

    def __init__(self, vae, bones=None):
        from momu_live.models.rig import N_BONES

        self.vae = vae
        self.latent_dim = int(vae.latent_dim)
        self.tb = DEFAULT_TIMEBASE
        if bones is None:
            bones = (getattr(vae, "meta", None) or {}).get("bones")
        if bones is None:
            raise MomuError("the rig codec needs bone lengths: the rig VAE checkpoint has no meta['bones']; "
                            "re-export it with `momu train rig-vae --resume` or pass bones")
        b = np.asarray(bones, np.float64)
        if b.shape != (N_BONES,) or not np.all(b > 0):
            raise MomuError(f"bone lengths must be {N_BONES} positive numbers, got shape {b.shape}")
        self.bones = b

    def _device(self):
        return self.vae.feat_mean.device

    def _bones_t(self, batch: int = 1) -> torch.Tensor:
        return torch.as_tensor(self.bones, dtype=torch.float32, device=self._device()).expand(batch, -1)  # (B, 17)

    def features(self, joints, state: RigEncState | None = None) -> tuple[np.ndarray, RigEncState]:
        """Joints (T, 18, 3) -> rig features (T, 86) float32 (analytic IK, causal contacts) and the encoder-side
        state for the next chunk (its ``vae`` field untouched)."""
        from momu_live.models.rig import CONTACT_JOINTS, encode_features, ik_analytic

        st = state or RigEncState()
        X = np.asarray(joints, np.float64)  # (T, 18, 3)
        r6 = ik_analytic(X, self.bones)  # (T, 18, 6)
        root = X[:, 0]  # (T, 3)
        feet = X[:, list(CONTACT_JOINTS)]  # (T, 4, 3)
        con, floor = causal_contacts(feet, float(self.tb.motion_rate), st.last_feet, st.floor)
        if st.last_rot6d is not None:  # prepend the previous frame: velocities across the chunk border
            r6_in, root_in = np.concatenate([st.last_rot6d, r6]), np.concatenate([st.last_root, root])
            con_in = np.concatenate([con[:1], con])
        else:
            r6_in, root_in, con_in = r6, root, con
        with torch.no_grad():
            f = encode_features(torch.from_numpy(r6_in)[None], torch.from_numpy(root_in)[None],
                                torch.from_numpy(con_in.astype(np.float64))[None], float(self.tb.motion_rate))[0]
        f = f.numpy().astype(np.float32)[0 if st.last_rot6d is None else 1:]  # (T, 86)
        return f, RigEncState(st.vae, r6[-1:], root[-1:], feet[-1:], floor)

    @torch.no_grad()
    def encode(self, joints) -> torch.Tensor:
        z, _ = self.encode_stream(_check_joints(joints)[: len(joints) // 2 * 2], None)
        return z  # (1, C, T // 2)

    @torch.no_grad()
    def encode_stream(self, joints, state: RigEncState | None = None):
        j = _check_joints(joints, chunk=True)
        f, st = self.features(j, state)  # (2k, 86)
        mu, _, venc = self.vae.encode_stream(torch.from_numpy(f)[None].to(self._device()), st.vae)  # (1, C, k)
        return self.vae.normalize_latent(mu), RigEncState(venc, st.last_rot6d, st.last_root, st.last_feet, st.floor)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        return self.decode_stream(z, None)[0]

    @torch.no_grad()
    def decode_stream(self, z: torch.Tensor, state: RigDecState | None = None):
        st = state or RigDecState()
        if z.shape[-1] == 0:
            return np.zeros((0, 18, 3), np.float32), st
        zz = self.vae.denormalize_latent(z.to(self._device()).float())  # (1, C, k)
        pos, vst = self.vae.decode_positions_stream(zz, self._bones_t(z.shape[0]), st.vae)  # (1, 2k, 18, 3)
        return pos[0].cpu().numpy().astype(np.float32), RigDecState(vst)

    def joints_torch(self, z: torch.Tensor) -> torch.Tensor:
        feats = self.vae.decode(self.vae.denormalize_latent(z))  # (B, 2L, 86)
        return self.vae.positions(feats, self._bones_t(z.shape[0]))  # (B, 2L, 18, 3)

