"""A rig as the motion representation: root trajectory + local joint rotations (6-D) + foot contacts.

The canonical skeleton (models/skeleton.py: 18 joints, ``CANONICAL_PARENTS``, metres, y up, the
dancer faces +z) becomes a *rig*: per-dance constant bone lengths (17, in ``BONES`` order) laid along
the T-pose directions ``skeleton.REST_DIRECTIONS`` give the rest offsets (18, 3); every frame has a
root (pelvis) position and one local rotation per joint.  Forward kinematics (BVH convention) puts
joint ``c`` with parent ``p`` at ``x_c = x_p + G_p o_c`` with ``G_j = G_p R_j`` (``G``: global,
``R``: local rotation, ``o``: rest offset), so **bone lengths are exact by construction**.

Rotations use the continuous 6-D representation of Zhou et al. 2019 ("On the continuity of rotation
representations in neural networks", Sec. 4): the first two columns ``(a1, a2)`` of the rotation
matrix; back to a matrix by Gram-Schmidt ``b1 = a1/|a1|, b2 = (a2 - (b1.a2) b1)/|...|, b3 = b1 x b2``.
Leaf joints (head, wrists, toes) move nothing: their local rotation is the identity.

Feature layout of ``to_features`` (C = ``N_FEATURES`` = 86 channels per frame, ``FEATURE_LAYOUT``):

| channels | what | unit |
|---|---|---|
| 0:2   | root (pelvis) velocity (x, z) in the facing frame of frame t: R_y(theta_t)^T (p_t - p_{t-1}) * fps | m/s |
| 2     | root height (pelvis y) | m |
| 3     | facing angular velocity wrap(theta_t - theta_{t-1}) * fps | rad/s |
| 4:82  | 6-D local rotations of the 13 non-leaf joints (``ROTATED_JOINTS``, canonical order), 6 each; the root's is taken in the facing frame (R_y(theta_t)^T G_root) | - |
| 82:86 | foot contacts l_heel, l_toe, r_heel, r_toe (heel = the ankle joint) in {0, 1} | - |

The facing angle theta is the heading of the root's x axis (the hips' left): left = G_root e_x,
theta = atan2(-left_z, left_x) (forward = left x up, as ``skeleton.facing_direction``).  Frame 0's
velocities copy frame 1's (``from_features`` never reads them); ``from_features`` integrates from
``start = (x0, z0, theta0)`` (zeros by default), so it inverts ``to_features`` exactly given
``rig_start(rig)``.  Encoding and decoding are written once in torch (differentiable, batched:
``encode_features`` / ``decode_features``); the numpy API runs them in float64.

Inverse kinematics (``fit_rig``): (1) bone lengths = per-bone median over frames; (2) analytic swing
initialisation per joint: pelvis and neck take the frame of their left-right children (hips /
shoulders) and their upward child; hip and shoulder joints swing their rest bone onto the observed
bone with the twist set by the bend plane of the next bone (knee / elbow), the knees with the twist
set by the foot (toe) direction, blended into the minimal swing as the limb straightens; spine,
elbows and ankles take the minimal swing (twist inherited from the parent); (3) optional Adam
refinement of all rotations, root positions and the per-dance bone lengths on the position error,
plus a rotation-acceleration smoothness term and a small anchor to the analytic solution (it fixes
the twists that positions do not see).  Measured fit errors: docs/rig.md.

Rotations out: ``rig_quaternions`` (a rig's own rotations), ``frame_quaternions`` (per frame straight from
joint positions by ``ik_analytic``, for streams: OSC ``/momu/pose/rot``), ``models.bvh.export_rig_bvh``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from momu_live import MomuError
from momu_live.models.skeleton import (
    BONES, CANONICAL_JOINTS, CANONICAL_PARENTS, JOINT_INDEX, LEAF_JOINTS, REST_DIRECTIONS,
)
from momu_live.models.timebase import DEFAULT_TIMEBASE, Timebase, as_rate

N_JOINTS = len(CANONICAL_JOINTS)
N_BONES = len(BONES)
ROTATED_JOINTS: tuple[int, ...] = tuple(j for j in range(N_JOINTS) if j not in LEAF_JOINTS)  # 13 joints
# bone index (into BONES / bone-length arrays) of each non-root joint, -1 for the root
BONE_OF: tuple[int, ...] = tuple(
    next((k for k, (_, c) in enumerate(BONES) if c == j), -1) for j in range(N_JOINTS)
)
_J = JOINT_INDEX
CONTACT_JOINTS: tuple[int, ...] = (_J["l_ankle"], _J["l_toe"], _J["r_ankle"], _J["r_toe"])
CONTACT_NAMES: tuple[str, ...] = ("l_heel", "l_toe", "r_heel", "r_toe")

FEATURE_LAYOUT: dict[str, slice] = {
    "root_vel_xz": slice(0, 2),
    "root_height": slice(2, 3),
    "heading_vel": slice(3, 4),
    "rot6d": slice(4, 4 + 6 * len(ROTATED_JOINTS)),
    "contacts": slice(4 + 6 * len(ROTATED_JOINTS), 8 + 6 * len(ROTATED_JOINTS)),
}
N_FEATURES = FEATURE_LAYOUT["contacts"].stop  # 86
_IDENTITY6 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_REST_UNIT = np.asarray(REST_DIRECTIONS, np.float64)
_REST_UNIT = _REST_UNIT / np.maximum(np.linalg.norm(_REST_UNIT, axis=-1, keepdims=True), 1e-12)  # (J, 3) exact unit


@dataclass(frozen=True)
class RigConfig:
    """Rates and foot-contact thresholds of the rig representation.

    ``rate``: the frame rate rigs are fitted and featurised at (``rig_from_motion`` resamples to it);
    None = the model motion rate of ``timebase`` (21.533 fps).  A foot joint is in contact when its
    height is below its own ``contact_percentile`` height in the dance plus ``contact_margin`` and its
    speed (central differences) is below ``contact_speed``; the heel is the ankle joint.
    """

    timebase: Timebase = DEFAULT_TIMEBASE
    rate: str | None = None  # exact rate as a string ("25", "30000/1001"); None: timebase.motion_rate
    contact_speed: float = 0.4  # m/s
    contact_margin: float = 0.04  # m above the joint's low reference height
    contact_percentile: float = 5.0

    @property
    def fps(self) -> Fraction:
        return as_rate(self.rate) if self.rate is not None else self.timebase.motion_rate


@dataclass(frozen=True)
class IkConfig:
    """Inverse kinematics: analytic initialisation, then ``iters`` Adam steps (0 = analytic only).

    Loss = mean_tj w_tj |FK - x|^2 / (1 cm)^2  +  ``smooth`` * mean |d^2 r6 / dt^2|^2 (per frame)
         + ``anchor`` * mean |r6 - r6_init|^2  +  ``ortho`` * (6-D columns unit and orthogonal).
    """

    iters: int = 150
    lr: float = 0.01  # 6-D parameters
    lr_root: float = 0.002  # metres
    lr_bones: float = 0.002  # log bone length
    smooth: float = 0.5
    anchor: float = 1e-3
    ortho: float = 1e-2
    refine_bones: bool = True
    loss: str = "l2"  # "l2": squared distance; "l1": distance (robust; minimises MPJPE itself)
    device: str = "cpu"


@dataclass
class RigMotion:
    """A motion as a rig: local rotations + root trajectory + constant bone lengths (+ contacts)."""

    rot6d: np.ndarray  # (T, J, 6) local rotations (in the parent's frame), 6-D (Zhou 2019)
    root: np.ndarray  # (T, 3) pelvis position, metres, y up
    bones: np.ndarray  # (17,) bone lengths in skeleton.BONES order (m)
    fps: float
    contacts: np.ndarray | None = None  # (T, 4) l_heel l_toe r_heel r_toe in {0, 1}
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rot6d = np.asarray(self.rot6d, dtype=np.float64)
        self.root = np.asarray(self.root, dtype=np.float64)
        self.bones = np.asarray(self.bones, dtype=np.float64)
        T = self.rot6d.shape[0]
        if self.rot6d.shape != (T, N_JOINTS, 6) or self.root.shape != (T, 3) or self.bones.shape != (N_BONES,):
            raise MomuError(f"rig needs rot6d (T, {N_JOINTS}, 6), root (T, 3), bones ({N_BONES},); got "
                            f"{self.rot6d.shape}, {self.root.shape}, {self.bones.shape}")
        if self.contacts is not None:
            self.contacts = np.asarray(self.contacts, dtype=np.float32)
            if self.contacts.shape != (T, 4):
                raise MomuError(f"rig contacts must be (T, 4), got {self.contacts.shape}")
        self.fps = float(self.fps)

    @property
    def n_frames(self) -> int:
        return int(self.rot6d.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """Rest offsets (J, 3) of every joint from its parent (root: 0)."""
        return rest_offsets(self.bones)

    def local_matrices(self) -> np.ndarray:
        """Local rotation matrices (T, J, 3, 3)."""
        return rot6d_to_matrix_np(self.rot6d)

    def global_matrices(self) -> np.ndarray:
        """Global rotation matrices (T, J, 3, 3) (G_j = G_parent R_j)."""
        return fk_np(self.rot6d, self.root, self.offsets, return_global=True)[1]

    def positions(self) -> np.ndarray:
        """Joint positions (T, J, 3) by forward kinematics (float64)."""
        return fk_np(self.rot6d, self.root, self.offsets)

    def to_motion(self):
        """The rig's FK as a canonical ``Motion`` (float32)."""
        from momu_live.models.motion import Motion

        return Motion(joints=self.positions().astype(np.float32), fps=self.fps, meta={"source": "rig", **self.meta})

    def save(self, path: str | Path, cfg: RigConfig | None = None) -> Path:
        """Write a compact ``.npz``: ``features`` float32 (T, 86), ``bones`` (17,), ``start`` (3,), ``fps``, ``meta``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(
                f, features=to_features(self, cfg).astype(np.float32), bones=self.bones.astype(np.float32),
                start=np.asarray(rig_start(self), np.float64), fps=np.float64(self.fps),
                meta=np.array(json.dumps(self.meta, default=_json_default)),
            )
        return path


def _json_default(o):
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def load_rig(path: str | Path) -> RigMotion:
    """Read a rig written by ``RigMotion.save`` (features decoded with ``from_features``)."""
    path = Path(path)
    if not path.exists():
        raise MomuError(f"rig file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            feats, bones, start, fps = z["features"], z["bones"], z["start"], float(z["fps"])
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (KeyError, ValueError, OSError) as exc:
        raise MomuError(f"{path} is not a rig file ({exc}); write one with `momu data rig`") from None
    rig = from_features(feats, bones, fps=fps, start=tuple(start))
    rig.meta = meta
    return rig


# ------------------------------------------------------------------------------------------------
# rest pose


def rest_offsets(bones) -> np.ndarray:
    """Rest offsets (J, 3) = bone length x T-pose direction (``skeleton.REST_DIRECTIONS``); root 0."""
    bones = np.asarray(bones, dtype=np.float64)  # (17,)
    dirs = _REST_UNIT  # (J, 3)
    lengths = np.array([bones[k] if k >= 0 else 0.0 for k in BONE_OF])  # (J,)
    return dirs * lengths[:, None]


def rest_offsets_torch(bones: torch.Tensor) -> torch.Tensor:
    """Differentiable ``rest_offsets``: bones (..., 17) -> offsets (..., J, 3)."""
    dirs = torch.tensor(_REST_UNIT, dtype=bones.dtype, device=bones.device)  # (J, 3)
    idx = torch.tensor([max(k, 0) for k in BONE_OF], device=bones.device)
    mask = torch.tensor([k >= 0 for k in BONE_OF], dtype=bones.dtype, device=bones.device)
    lengths = bones[..., idx] * mask  # (..., J)
    return lengths[..., None] * dirs  # (..., J, 3)


def bone_lengths_of(joints) -> np.ndarray:
    """Per-frame bone lengths (T, 17) of canonical joints (T, J, 3)."""
    j = np.asarray(joints, dtype=np.float64)
    p = [b[0] for b in BONES]
    c = [b[1] for b in BONES]
    return np.linalg.norm(j[:, c] - j[:, p], axis=-1)


# ------------------------------------------------------------------------------------------------
# 6-D rotations (Zhou et al. 2019)


def rot6d_to_matrix(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """6-D (..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt on the two columns (Zhou 2019, Eq. 15)."""
    a1, a2 = x[..., 0:3], x[..., 3:6]  # (..., 3)
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(eps)
    a2p = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2p / a2p.norm(dim=-1, keepdim=True).clamp_min(eps)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)  # (..., 3, 3) columns b1 b2 b3


def matrix_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> 6-D (..., 6): the first two columns."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def rot6d_to_matrix_np(x) -> np.ndarray:
    """numpy ``rot6d_to_matrix`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    a2p = a2 - np.sum(b1 * a2, -1, keepdims=True) * b1
    b2 = a2p / np.maximum(np.linalg.norm(a2p, axis=-1, keepdims=True), 1e-12)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)  # (..., 3, 3)


def matrix_to_rot6d_np(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)  # (..., 6)


# ------------------------------------------------------------------------------------------------
# forward kinematics


def fk(rot6d: torch.Tensor, root: torch.Tensor, offsets: torch.Tensor, return_global: bool = False):
    """Forward kinematics (batched, differentiable).

    rot6d (B, T, J, 6) local rotations, root (B, T, 3) pelvis positions, offsets (B, J, 3) or (J, 3)
    rest offsets -> positions (B, T, J, 3) (and global rotations (B, T, J, 3, 3) with ``return_global``).
    Any leading dims work as long as ``rot6d`` is (..., J, 6) and ``root`` (..., 3).
    x_c = x_p + G_p o_c, G_j = G_p R_j (BVH convention): bone lengths are |o_c| exactly.
    """
    R = rot6d_to_matrix(rot6d)  # (..., J, 3, 3)
    if offsets.dim() == rot6d.dim() - 1:  # (B, J, 3) -> (B, 1, J, 3)
        offsets = offsets.unsqueeze(-3)
    G: list[torch.Tensor] = []
    P: list[torch.Tensor] = []
    for j, p in enumerate(CANONICAL_PARENTS):
        if p < 0:
            G.append(R[..., j, :, :])
            P.append(root)
        else:
            G.append(G[p] @ R[..., j, :, :])  # (..., 3, 3)
            P.append(P[p] + (G[p] @ offsets[..., j, :, None])[..., 0])  # (..., 3)
    pos = torch.stack(P, dim=-2)  # (..., J, 3)
    return (pos, torch.stack(G, dim=-3)) if return_global else pos


def fk_np(rot6d, root, offsets, return_global: bool = False):
    """numpy forward kinematics (float64): rot6d (T, J, 6), root (T, 3), offsets (J, 3) -> (T, J, 3)."""
    R = rot6d_to_matrix_np(rot6d)  # (T, J, 3, 3)
    root = np.asarray(root, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    G = np.empty_like(R)
    P = np.empty(R.shape[:-1])  # (T, J, 3)
    for j, p in enumerate(CANONICAL_PARENTS):
        if p < 0:
            G[..., j, :, :], P[..., j, :] = R[..., j, :, :], root
        else:
            G[..., j, :, :] = G[..., p, :, :] @ R[..., j, :, :]
            P[..., j, :] = P[..., p, :] + np.einsum("...ij,...j->...i", G[..., p, :, :], offsets[..., j, :])
    return (P, G) if return_global else P


# ------------------------------------------------------------------------------------------------
# features (torch, batched; numpy wrappers below)


def heading_torch(root6d: torch.Tensor) -> torch.Tensor:
    """Facing angle theta (...,) of root 6-D rotations (..., 6): left = a1, theta = atan2(-left_z, left_x)."""
    return torch.atan2(-root6d[..., 2], root6d[..., 0])


def _rot_y_cols(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Apply R_y(theta) (or its transpose) to 3-vectors x (..., 3); c, s = cos, sin theta (...)."""
    if inverse:  # R_y^T: (c x - s z, y, s x + c z)
        return torch.stack([c * x[..., 0] - s * x[..., 2], x[..., 1], s * x[..., 0] + c * x[..., 2]], dim=-1)
    return torch.stack([c * x[..., 0] + s * x[..., 2], x[..., 1], -s * x[..., 0] + c * x[..., 2]], dim=-1)


def encode_features(rot6d: torch.Tensor, root: torch.Tensor, contacts: torch.Tensor | None, fps: float) -> torch.Tensor:
    """Rig (rot6d (B, T, J, 6), root (B, T, 3), contacts (B, T, 4) or None) -> features (B, T, 86).

    Layout in the module docstring (``FEATURE_LAYOUT``).  Differentiable.
    """
    B, T = rot6d.shape[:2]
    theta = heading_torch(rot6d[..., 0, :])  # (B, T)
    c, s = torch.cos(theta), torch.sin(theta)
    if T > 1:
        d = _rot_y_cols(root[:, 1:] - root[:, :-1], c[:, 1:], s[:, 1:], inverse=True) * fps  # (B, T-1, 3)
        vel = torch.cat([d[:, :1], d], dim=1)[..., [0, 2]]  # (B, T, 2) frame 0 copies frame 1
        dth = theta[:, 1:] - theta[:, :-1]
        om = torch.atan2(torch.sin(dth), torch.cos(dth)) * fps  # (B, T-1)
        om = torch.cat([om[:, :1], om], dim=1)  # (B, T)
    else:
        vel = root.new_zeros(B, T, 2)
        om = root.new_zeros(B, T)
    r6 = rot6d[:, :, list(ROTATED_JOINTS)]  # (B, T, 13, 6)
    root6 = torch.cat([_rot_y_cols(r6[..., 0, 0:3], c, s, True), _rot_y_cols(r6[..., 0, 3:6], c, s, True)], -1)
    r6 = torch.cat([root6[:, :, None], r6[:, :, 1:]], dim=2)  # (B, T, 13, 6)
    con = contacts if contacts is not None else root.new_zeros(B, T, 4)
    return torch.cat([vel, root[..., 1:2], om[..., None], r6.reshape(B, T, -1), con.to(root.dtype)], dim=-1)


def decode_features(feats: torch.Tensor, fps: float, start: torch.Tensor | None = None):
    """Features (B, T, 86) -> (rot6d (B, T, J, 6), root (B, T, 3), contacts (B, T, 4)).  Differentiable.

    Integrates the facing angle and the root's horizontal path from ``start`` (B, 3) = (x0, z0, theta0)
    (zeros when None); frame 0's velocity channels are not read.  Leaf joints get the identity.
    """
    B, T, C = feats.shape
    if C != N_FEATURES:
        raise MomuError(f"rig features must have {N_FEATURES} channels, got {C}")
    if start is None:
        start = feats.new_zeros(B, 3)
    om = feats[..., 3]  # (B, T)
    dth = torch.cat([om.new_zeros(B, 1), om[:, 1:] / fps], dim=1)
    theta = start[:, 2:3] + torch.cumsum(dth, dim=1)  # (B, T)
    c, s = torch.cos(theta), torch.sin(theta)
    v = feats[..., 0:2]
    v3 = torch.stack([v[..., 0], torch.zeros_like(v[..., 0]), v[..., 1]], dim=-1) / fps  # (B, T, 3)
    d = _rot_y_cols(v3, c, s, inverse=False)  # (B, T, 3)
    d = torch.cat([d.new_zeros(B, 1, 3), d[:, 1:]], dim=1)
    x = start[:, 0:1] + torch.cumsum(d[..., 0], dim=1)
    z = start[:, 1:2] + torch.cumsum(d[..., 2], dim=1)
    root = torch.stack([x, feats[..., 2], z], dim=-1)  # (B, T, 3)
    r6 = feats[..., FEATURE_LAYOUT["rot6d"]].reshape(B, T, len(ROTATED_JOINTS), 6)  # (B, T, 13, 6)
    root6 = torch.cat([_rot_y_cols(r6[..., 0, 0:3], c, s, False), _rot_y_cols(r6[..., 0, 3:6], c, s, False)], -1)
    full = feats.new_tensor(_IDENTITY6).expand(B, T, N_JOINTS, 6).clone()  # (B, T, J, 6)
    full[:, :, list(ROTATED_JOINTS[1:])] = r6[:, :, 1:]
    full[:, :, 0] = root6
    return full, root, feats[..., FEATURE_LAYOUT["contacts"]]


def features_to_positions(feats: torch.Tensor, offsets: torch.Tensor, fps: float, start: torch.Tensor | None = None) -> torch.Tensor:
    """Features (B, T, 86) + rest offsets (B, J, 3) -> joint positions (B, T, J, 3) (decode + FK; differentiable)."""
    rot6d, root, _ = decode_features(feats, fps, start)
    return fk(rot6d, root, offsets)


def rig_start(rig: RigMotion) -> tuple[float, float, float]:
    """(x0, z0, theta0) of a rig's first frame: what ``from_features`` needs to invert ``to_features`` exactly."""
    r6 = torch.from_numpy(rig.rot6d[0, 0])
    return float(rig.root[0, 0]), float(rig.root[0, 2]), float(heading_torch(r6))


def to_features(rig: RigMotion, cfg: RigConfig | None = None) -> np.ndarray:
    """Rig -> features (T, 86) float32 (layout: ``FEATURE_LAYOUT``; contacts from FK when the rig has none)."""
    contacts = rig.contacts if rig.contacts is not None else foot_contacts(rig.positions(), rig.fps, cfg)
    with torch.no_grad():
        f = encode_features(torch.from_numpy(rig.rot6d)[None], torch.from_numpy(rig.root)[None],
                            torch.from_numpy(np.asarray(contacts, np.float64))[None], rig.fps)
    return f[0].numpy().astype(np.float32)


def from_features(feats, bones, fps: float | None = None, start=None) -> RigMotion:
    """Features (T, 86) + bone lengths (17,) -> ``RigMotion`` (float64); the exact inverse of ``to_features``.

    fps: the features' rate (default ``RigConfig().fps``, the model motion rate); start: (x0, z0, theta0).
    """
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[1] != N_FEATURES:
        raise MomuError(f"rig features must be (T, {N_FEATURES}), got {feats.shape}")
    fps = float(RigConfig().fps if fps is None else fps)
    st = None if start is None else torch.tensor(np.asarray(start, np.float64).reshape(1, 3))
    with torch.no_grad():
        rot6d, root, con = decode_features(torch.from_numpy(feats)[None], fps, st)
    return RigMotion(rot6d=rot6d[0].numpy(), root=root[0].numpy(), bones=np.asarray(bones, np.float64),
                     fps=fps, contacts=con[0].numpy())


# ------------------------------------------------------------------------------------------------
# normalisation


@dataclass
class RigStats:
    """Per-channel feature normalisation (x - mean) / std; contact channels are left as they are."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)

    @classmethod
    def fit(cls, feats_list, min_std: float = 1e-2) -> "RigStats":
        """Mean / std over all frames of a list of (T, 86) arrays; std floored at ``min_std``."""
        x = np.concatenate([np.asarray(f, np.float64).reshape(-1, N_FEATURES) for f in feats_list], axis=0)
        mean, std = x.mean(0), np.maximum(x.std(0), min_std)
        con = FEATURE_LAYOUT["contacts"]
        mean[con], std[con] = 0.0, 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def normalize(self, feats):
        """(..., 86) -> normalised; numpy arrays or torch tensors."""
        if isinstance(feats, torch.Tensor):
            return (feats - feats.new_tensor(self.mean)) / feats.new_tensor(self.std)
        return (feats - self.mean) / self.std

    def denormalize(self, feats):
        if isinstance(feats, torch.Tensor):
            return feats * feats.new_tensor(self.std) + feats.new_tensor(self.mean)
        return feats * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "RigStats":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


# ------------------------------------------------------------------------------------------------
# foot contacts


def foot_contacts(positions, fps: float, cfg: RigConfig | None = None) -> np.ndarray:
    """Foot contacts (T, 4) in {0, 1} (l_heel l_toe r_heel r_toe; heel = ankle) from height + speed.

    Contact when the joint's height is below its own ``contact_percentile`` height in the sequence plus
    ``contact_margin`` and its speed (central differences x fps) is below ``contact_speed``.
    """
    cfg = cfg or RigConfig()
    feet = np.asarray(positions, np.float64)[:, list(CONTACT_JOINTS)]  # (T, 4, 3)
    ref = np.percentile(feet[..., 1], cfg.contact_percentile, axis=0)  # (4,)
    low = feet[..., 1] < ref + cfg.contact_margin  # (T, 4)
    if feet.shape[0] > 1:
        speed = np.linalg.norm(np.gradient(feet, axis=0), axis=-1) * fps  # (T, 4)
    else:
        speed = np.zeros(feet.shape[:2])
    return (low & (speed < cfg.contact_speed)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# inverse kinematics


def _unit(v, eps: float = 1e-12):
    return v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), eps)


_CYC1, _CYC2 = [1, 2, 0], [2, 0, 1]


def _cross(a, b):
    """Cross product of 3-vectors (..., 3) (broadcasting); ``np.cross`` costs 3x more on one frame's arrays."""
    return a[..., _CYC1] * b[..., _CYC2] - a[..., _CYC2] * b[..., _CYC1]


def _perp(v, axis):
    """Component of v (T, 3) perpendicular to the unit vectors ``axis`` (T, 3)."""
    return v - (v * axis).sum(-1, keepdims=True) * axis


def _frame(primary, secondary):
    """Rotation matrices (T, 3, 3) with columns (primary, secondary orthogonalised, primary x secondary)."""
    x = _unit(primary)
    y = _unit(_perp(secondary, x))
    return np.stack([x, y, _cross(x, y)], axis=-1)


def _swing(a, b):
    """Minimal rotations (T, 3, 3) taking directions a -> b; antiparallel: 180 deg about a normal.

    With unit a, b, v = a x b, c = a.b: R = c I + [v]x + v v^T / (1 + c) (Rodrigues without the angle;
    1 + c = |v|^2 / (1 - c) where c < 0, which keeps it exact near 180 deg).
    """
    a, b = _unit(a), _unit(b)
    v = _cross(a, b)  # (T, 3) sin(angle) x axis
    c = (a * b).sum(-1).clip(-1.0, 1.0)  # (T,)
    K = np.zeros(v.shape[:-1] + (3, 3))  # (T, 3, 3) [v]x
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = v[:, 2], -v[:, 1], v[:, 0]
    s2 = (v * v).sum(-1)  # (T,) sin^2
    anti = (s2 <= 1e-18) & (c < 0)  # (T,) antiparallel: no axis from a x b
    den = np.where(c < 0, np.where(anti, 1.0, s2) / np.maximum(1.0 - c, 1.0), 1.0 + c)  # 1 + c, exact near c = -1
    R = c[:, None, None] * np.eye(3) + K + v[:, :, None] * v[:, None, :] / den[:, None, None]
    if anti.any():
        n = _cross(a[anti], np.array([1.0, 0.0, 0.0]))  # (k, 3) a normal of a, or 0 when a is along x
        n = _unit(np.where((n * n).sum(-1, keepdims=True) < 1e-12, _cross(a[anti], np.array([0.0, 0.0, 1.0])), n))
        R[anti] = 2.0 * n[:, :, None] * n[:, None, :] - np.eye(3)  # 180 deg about n
    return R


# joints whose global rotation is the frame (left child - right child, up child)
_FRAME_JOINTS = {_J["pelvis"]: (_J["l_hip"], _J["r_hip"], _J["spine"]),
                 _J["neck"]: (_J["l_shoulder"], _J["r_shoulder"], _J["head"])}
# single-child joints whose twist follows the next bone: joint -> (grandchild, rest pole); the rest
# pole is where the next bone bends to, perpendicular to the rest bone: shins bend back, forearms
# forward, feet point forward from the shin.
_POLE_JOINTS = {
    _J["l_hip"]: (_J["l_ankle"], (0.0, 0.0, -1.0)), _J["r_hip"]: (_J["r_ankle"], (0.0, 0.0, -1.0)),
    _J["l_knee"]: (_J["l_toe"], (0.0, 0.0, 1.0)), _J["r_knee"]: (_J["r_toe"], (0.0, 0.0, 1.0)),
    _J["l_shoulder"]: (_J["l_wrist"], (0.0, 0.0, 1.0)), _J["r_shoulder"]: (_J["r_wrist"], (0.0, 0.0, 1.0)),
}
_POLE_FULL_SIN = 0.2  # the observed bend plane sets the whole twist once sin(bend) >= this
_CHILDREN = {j: [c for c, p in enumerate(CANONICAL_PARENTS) if p == j] for j in range(N_JOINTS)}
# rest frame (rest bone, rest pole) of each pole joint, (3, 3): constant (rest directions are unit)
_POLE_REST_FRAMES = {j: _frame(_REST_UNIT[_CHILDREN[j][0]][None], np.asarray(pole)[None])[0]
                     for j, (_, pole) in _POLE_JOINTS.items()}


def ik_analytic(joints, bones) -> np.ndarray:
    """Analytic IK: local 6-D rotations (T, J, 6) that swing each rest bone onto the observed bone.

    Pelvis / neck: frame of (left - right child, up child); hips, knees, shoulders: swing + twist from
    the next bone's bend plane (blended into the minimal swing as sin(bend) -> 0); spine, elbows,
    ankles: minimal swing (twist inherited); leaves: identity.  See the module docstring.
    """
    return matrix_to_rot6d_np(ik_analytic_matrices(joints, bones))


def ik_analytic_matrices(joints, bones) -> np.ndarray:
    """``ik_analytic`` as local rotation matrices (T, J, 3, 3) (leaves exactly the identity)."""
    X = np.asarray(joints, dtype=np.float64)  # (T, J, 3)
    T = X.shape[0]
    off = rest_offsets(bones)  # (J, 3)
    I3 = np.broadcast_to(np.eye(3), (T, 3, 3))
    G = np.zeros((T, N_JOINTS, 3, 3))
    for j, p in enumerate(CANONICAL_PARENTS):
        Gp = G[:, p] if p >= 0 else I3
        kids = _CHILDREN[j]
        if j in _FRAME_JOINTS:
            lc, rc, uc = _FRAME_JOINTS[j]
            G[:, j] = _frame(X[:, lc] - X[:, rc], X[:, uc] - X[:, j])  # rest frame is the identity
        elif len(kids) == 1:
            c = kids[0]
            d = _unit(X[:, c] - X[:, j])  # (T, 3) observed bone
            rest_w = Gp @ off[c]  # (T, 3) rest bone carried by the parent
            S = _swing(rest_w, d) @ Gp  # (T, 3, 3) minimal swing
            if j in _POLE_JOINTS:
                g, pole_rest = _POLE_JOINTS[j]
                pole_rest = np.asarray(pole_rest)
                nxt = X[:, g] - X[:, c]  # (T, 3) next bone
                pobs = _perp(nxt, d)
                sin_bend = np.sqrt((pobs * pobs).sum(-1) / np.maximum((nxt * nxt).sum(-1), 1e-18))  # (T,)
                w = (sin_bend / _POLE_FULL_SIN).clip(0.0, 1.0)[:, None]
                pfb = S @ pole_rest  # (T, 3) the minimal swing's pole (perpendicular to d)
                pole = w * _unit(pobs) + (1 - w) * pfb
                bad = (pole * pole).sum(-1) < 1e-6
                pole[bad] = pfb[bad]
                G[:, j] = _frame(d, pole) @ _POLE_REST_FRAMES[j].T
            else:
                G[:, j] = S
        else:  # leaf
            G[:, j] = Gp
    local = np.empty_like(G)
    for j, p in enumerate(CANONICAL_PARENTS):
        if j in LEAF_JOINTS:
            local[:, j] = np.eye(3)
        else:
            local[:, j] = G[:, j] if p < 0 else np.swapaxes(G[:, p], -1, -2) @ G[:, j]
    return local


def _orthonormalise6(r6: np.ndarray) -> np.ndarray:
    return matrix_to_rot6d_np(rot6d_to_matrix_np(r6))


def refine_ik(joints, rot6d, root, bones, ik: IkConfig, confidence=None):
    """Adam refinement of (rot6d (T, J, 6), root (T, 3), bones (17,)) on FK position error (``IkConfig``).

    Runs with one intra-op torch thread on the CPU (restored afterwards): each step is a few small
    (T, 3, 3) products, which extra threads only slow down (10-30x on a busy 2-core machine).
    """
    n_threads = torch.get_num_threads()
    if ik.device == "cpu":
        torch.set_num_threads(1)
    try:
        return _refine(joints, rot6d, root, bones, ik, confidence)
    finally:
        torch.set_num_threads(n_threads)


def _refine(joints, rot6d, root, bones, ik: IkConfig, confidence=None):
    dev = torch.device(ik.device)
    X = torch.as_tensor(np.asarray(joints), dtype=torch.float32, device=dev)  # (T, J, 3)
    W = (torch.ones(X.shape[:2], device=dev) if confidence is None
         else torch.as_tensor(np.asarray(confidence), dtype=torch.float32, device=dev))  # (T, J)
    W = W / W.mean().clamp_min(1e-6)
    rot_idx = list(ROTATED_JOINTS)
    r6_0 = torch.as_tensor(rot6d[:, rot_idx], dtype=torch.float32, device=dev)  # (T, 13, 6)
    r6 = r6_0.clone().requires_grad_(True)
    rt = torch.as_tensor(root, dtype=torch.float32, device=dev).clone().requires_grad_(True)  # (T, 3)
    logb = torch.log(torch.as_tensor(bones, dtype=torch.float32, device=dev)).requires_grad_(ik.refine_bones)
    full = torch.tensor(_IDENTITY6, device=dev).expand(X.shape[0], N_JOINTS, 6).clone()  # (T, J, 6)
    groups = [{"params": [r6], "lr": ik.lr}, {"params": [rt], "lr": ik.lr_root}]
    if ik.refine_bones:
        groups.append({"params": [logb], "lr": ik.lr_bones})
    opt = torch.optim.Adam(groups)
    for _ in range(ik.iters):
        opt.zero_grad(set_to_none=True)
        rot = full.index_copy(1, torch.tensor(rot_idx, device=dev), r6)  # (T, J, 6)
        pos = fk(rot, rt, rest_offsets_torch(torch.exp(logb)))  # (T, J, 3)
        sq = ((pos - X) ** 2).sum(-1)  # (T, J)
        loss = (W * (sq if ik.loss == "l2" else torch.sqrt(sq + 1e-6) * 1e-2)).mean() / 1e-4
        if r6.shape[0] > 2 and ik.smooth > 0:
            acc = r6[2:] - 2 * r6[1:-1] + r6[:-2]
            loss = loss + ik.smooth * (acc ** 2).sum(-1).mean()
        loss = loss + ik.anchor * ((r6 - r6_0) ** 2).sum(-1).mean()
        a1, a2 = r6[..., :3], r6[..., 3:]
        loss = loss + ik.ortho * (((a1 ** 2).sum(-1) - 1) ** 2 + ((a2 ** 2).sum(-1) - 1) ** 2 + (a1 * a2).sum(-1) ** 2).mean()
        loss.backward()
        opt.step()
    out = np.array(rot6d, dtype=np.float64, copy=True)
    out[:, rot_idx] = r6.detach().cpu().double().numpy()
    return _orthonormalise6(out), rt.detach().cpu().double().numpy(), torch.exp(logb).detach().cpu().double().numpy()


def fit_error_mm(a, b, confidence=None) -> dict:
    """MPJPE (mm) between joint arrays (T, J, 3): mean, per-joint (J,), 95th percentile, max."""
    e = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1) * 1000.0  # (T, J)
    if confidence is not None:
        e = np.where(np.asarray(confidence) > 0, e, np.nan)
    return {"mpjpe_mm": float(np.nanmean(e)), "per_joint_mm": np.nanmean(e, axis=0).round(2).tolist(),
            "p95_mm": float(np.nanpercentile(e, 95)), "max_mm": float(np.nanmax(e))}


def fit_rig(joints, fps: float, cfg: RigConfig | None = None, ik: IkConfig | None = None,
            confidence=None, bones=None) -> RigMotion:
    """Fit a rig to canonical joint positions (T, 18, 3) at ``fps`` (IK: analytic init + refinement).

    bones: fixed bone lengths (17,) (then not refined), default the per-bone median over frames.
    confidence (T, 18): weights of the position term (0 = ignored).  The fit report (MPJPE of the
    analytic and refined fits, per joint, seconds) is in ``rig.meta["fit"]``.
    """
    cfg = cfg or RigConfig()
    ik = ik or IkConfig()
    X = np.asarray(joints, dtype=np.float64)
    if X.ndim != 3 or X.shape[1:] != (N_JOINTS, 3):
        raise MomuError(f"fit_rig needs canonical joints (T, {N_JOINTS}, 3), got {X.shape}")
    if not np.isfinite(X).all():
        raise MomuError("fit_rig: joints contain NaN/inf; fill gaps first (momu pose does)")
    t0 = time.perf_counter()
    fixed = bones is not None
    b = np.asarray(bones, np.float64) if fixed else np.median(bone_lengths_of(X), axis=0)  # (17,)
    r6 = ik_analytic(X, b)  # (T, J, 6)
    root = X[:, 0].copy()
    report = {"analytic": fit_error_mm(fk_np(r6, root, rest_offsets(b)), X, confidence)}
    if ik.iters > 0:
        ik_run = replace(ik, refine_bones=False) if fixed else ik
        r6, root, b = refine_ik(X, r6, root, b, ik_run, confidence)
    pos = fk_np(r6, root, rest_offsets(b))
    report["refined"] = fit_error_mm(pos, X, confidence)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["iters"] = ik.iters
    return RigMotion(rot6d=r6, root=root, bones=b, fps=fps, contacts=foot_contacts(pos, fps, cfg),
                     meta={"fit": report})


def rig_from_motion(motion, cfg: RigConfig | None = None, ik: IkConfig | None = None, resample: bool = True) -> RigMotion:
    """Fit a rig to a ``Motion`` of any known skeleton (mapped to canonical; resampled to ``cfg.fps`` when ``resample``)."""
    from momu_live.models.skeleton import to_canonical

    cfg = cfg or RigConfig()
    m = to_canonical(motion)
    if resample:
        m = m.resample(float(cfg.fps))
    rig = fit_rig(m.joints, m.fps, cfg, ik, confidence=m.confidence)
    rig.meta.update({k: v for k, v in m.meta.items() if isinstance(v, (str, int, float, bool))})
    return rig


# ------------------------------------------------------------------------------------------------
# rotations out


def matrix_to_quat_np(M) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z) (sign not normalised)."""
    from scipy.spatial.transform import Rotation

    M = np.asarray(M, dtype=np.float64)
    q = Rotation.from_matrix(M.reshape(-1, 3, 3)).as_quat()[:, [3, 0, 1, 2]]  # (N, 4) scipy's x y z w -> w x y z
    return q.reshape(M.shape[:-2] + (4,))


def continuous_quat_signs(q, prev=None) -> np.ndarray:
    """Quaternions (T, J, 4) with signs continuous in time (q and -q are the same rotation).

    Each frame takes the sign nearer the previous frame's; frame 0 the sign nearer ``prev`` (J, 4) (the
    last frame sent, for streams), or w >= 0 when ``prev`` is None.
    """
    q = np.asarray(q, dtype=np.float64)  # (T, J, 4)
    if q.shape[0] == 0:
        return q
    if prev is None:
        first = q[:1, :, :1] < 0  # (1, J, 1)
    else:
        first = np.sum(q[:1] * np.asarray(prev, np.float64).reshape(1, -1, 4), axis=-1, keepdims=True) < 0
    flip = np.sum(q[1:] * q[:-1], axis=-1, keepdims=True) < 0  # (T-1, J, 1)
    sign = np.cumprod(np.where(np.concatenate([first, flip], axis=0), -1.0, 1.0), axis=0)  # (T, J, 1)
    return q * sign


def frame_quaternions(joints, bones=None, prev=None) -> np.ndarray:
    """Per-frame local joint rotations of canonical joints as unit quaternions (T, J, 4), (w, x, y, z).

    Streaming-safe: every frame is solved on its own by ``ik_analytic`` (no fit over time, no state);
    rotations are relative to the parent joint in the T-pose rest frame (``rest_offsets``), the root's
    is global (canonical axes: y up, the dancer faces +z); leaves (head, wrists, toes) are the
    identity.  ``joints``: (J, 3) (one frame: T = 1) or (T, J, 3), finite.  ``bones`` (17,): the rest
    pose's lengths; default the frames' own (``bone_lengths_of``, median over T).  The analytic
    rotations depend on the rest *directions* only, so FK of them with each frame's own lengths,
    ``fk_np(rot6d, root, rest_offsets(bone_lengths_of(frame)[0]))``, rebuilds that frame (exactly for
    a pose a rig can make; see ``ik_analytic`` for what a rig cannot).  ``prev`` (J, 4): the previous
    frame's quaternions, whose signs the first frame follows (``continuous_quat_signs``); frames
    after it follow each other.  Coincident joints (no bone direction) give the identity, never NaN.
    Cost: about 1 ms per frame on one CPU core (docs/rig.md).
    """
    X = np.asarray(joints, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]  # (1, J, 3)
    if X.ndim != 3 or X.shape[1:] != (N_JOINTS, 3):
        raise MomuError(f"frame_quaternions needs canonical joints ({N_JOINTS}, 3) or (T, {N_JOINTS}, 3), got "
                        f"{np.shape(joints)}")
    if not np.isfinite(X).all():
        raise MomuError("frame_quaternions: joints contain NaN/inf (rotations need every joint of the frame)")
    if bones is None:
        bones = np.median(bone_lengths_of(X), axis=0) if X.shape[0] > 1 else bone_lengths_of(X)[0]  # (17,)
        bones = np.maximum(bones, 1e-9)  # a collapsed bone keeps its rest direction
    else:
        bones = np.asarray(bones, dtype=np.float64)
        if bones.shape != (N_BONES,) or not (np.isfinite(bones).all() and (bones > 0).all()):
            raise MomuError(f"frame_quaternions: bones must be {N_BONES} positive lengths, got {np.shape(bones)}")
    local = ik_analytic_matrices(X, bones)  # (T, J, 3, 3)
    bad = np.abs(np.linalg.det(local) - 1.0) > 1e-3  # (T, J) degenerate frames (coincident joints)
    if bad.any():
        local[bad] = np.eye(3)
    if prev is not None:
        prev = np.asarray(prev, dtype=np.float64).reshape(-1, N_JOINTS, 4)[-1]  # (J, 4)
    return continuous_quat_signs(matrix_to_quat_np(local), prev)  # (T, J, 4)


def rig_quaternions(rig: RigMotion, space: str = "local") -> np.ndarray:
    """Unit quaternions (T, J, 4) as (w, x, y, z) of each joint's rotation.

    space 'local' (relative to the parent; the root's is global) or 'global'.  Signs are made
    continuous in time (q and -q are the same rotation: each frame takes the sign nearer the previous
    frame's) and frame 0 has w >= 0 (``continuous_quat_signs``).
    """
    if space == "local":
        M = rig.local_matrices()
    elif space == "global":
        M = rig.global_matrices()
    else:
        raise MomuError(f"quaternion space must be 'local' or 'global', got {space!r}")
    return continuous_quat_signs(matrix_to_quat_np(M))  # (T, J, 4)
