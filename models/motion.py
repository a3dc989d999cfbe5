"""The motion file format of the whole CLI and the in-memory ``Motion`` object.

File: ``.npz`` with
- ``joints``       float32 [T, J, 3]  metres, y up (canonical skeleton unless ``joint_names`` says otherwise)
- ``fps``          float scalar
- ``joint_names``  str [J]
- ``joints2d``     optional float32 [T, J, 2] (normalised image coordinates, x right, y down)
- ``confidence``   optional float32 [T, J] in [0, 1]
- ``meta``         optional 0-d str: JSON object (provenance: source, gaps filled by ``momu pose`` ...)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.skeleton import CANONICAL_JOINTS
from momu_live.models.timebase import as_rate, convert_frames, resample_times


@dataclass
class Motion:
    joints: np.ndarray  # (T, J, 3) float32, metres, y up
    fps: float
    joint_names: tuple[str, ...] = CANONICAL_JOINTS
    joints2d: np.ndarray | None = None  # (T, J, 2)
    confidence: np.ndarray | None = None  # (T, J)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.joints = np.asarray(self.joints, dtype=np.float32)
        self.joint_names = tuple(str(n) for n in self.joint_names)
        validate_joints(self.joints, len(self.joint_names), what="joints")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MomuError(f"motion fps must be a positive number, got {self.fps}")
        self.fps = float(self.fps)
        T, J = self.joints.shape[:2]
        if self.joints2d is not None:
            self.joints2d = np.asarray(self.joints2d, dtype=np.float32)
            if self.joints2d.shape != (T, J, 2):
                raise MomuError(f"joints2d must be [T, J, 2] = {(T, J, 2)}, got {self.joints2d.shape}")
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, dtype=np.float32)
            if self.confidence.shape != (T, J):
                raise MomuError(f"confidence must be [T, J] = {(T, J)}, got {self.confidence.shape}")

    @property
    def n_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def resample(self, fps: float) -> "Motion":
        """Resample in time to ``fps`` (cubic where there are >= 4 frames, else linear).

        Output frame k sits at exactly k / fps seconds; the length is floor(T * fps / fps_in)
        (at least 1), so durations never drift.
        """
        if abs(fps - self.fps) < 1e-9:
            return self
        n_out = max(1, convert_frames(self.n_frames, self.fps, fps, rounding="floor"))
        pos = resample_times(n_out, as_rate(fps), as_rate(self.fps))
        pos = np.clip(pos, 0, self.n_frames - 1)
        joints = _interp(self.joints, pos)
        j2d = _interp(self.joints2d, pos) if self.joints2d is not None else None
        conf = _interp(self.confidence, pos) if self.confidence is not None else None
        return replace(self, joints=joints, fps=float(fps), joints2d=j2d, confidence=conf)

    def save(self, path: str | Path, force: bool = True) -> Path:
        path = Path(path)
        if path.exists() and not force:
            raise MomuError(f"{path} exists; pass --force to overwrite")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"joints": self.joints, "fps": np.float64(self.fps), "joint_names": np.array(self.joint_names)}
        if self.joints2d is not None:
            arrays["joints2d"] = self.joints2d
        if self.confidence is not None:
            arrays["confidence"] = self.confidence
        if self.meta:
            arrays["meta"] = np.array(json.dumps(self.meta, default=_json_default))
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"meta value of type {type(o).__name__} is not JSON-serialisable")


def _interp(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Interpolate ``x`` (T, ...) at fractional frame positions ``pos`` (N,)."""
    T = x.shape[0]
    if T == 1:
        return np.repeat(x, len(pos), axis=0)
    if T >= 4:
        from scipy.interpolate import CubicSpline

        return CubicSpline(np.arange(T), x, axis=0)(pos).astype(np.float32)
    i0 = np.clip(np.floor(pos).astype(int), 0, T - 2)
    w = (pos - i0).reshape(-1, *([1] * (x.ndim - 1)))
    return ((1 - w) * x[i0] + w * x[i0 + 1]).astype(np.float32)


def validate_joints(joints: np.ndarray, n_joints: int | None = None, what: str = "joints") -> None:
    """Raise MomuError unless ``joints`` is a finite float array [T, J, 3] with T >= 1."""
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise MomuError(f"{what} must have shape [T, J, 3] (frames, joints, xyz), got {joints.shape}")
    if joints.shape[0] < 1:
        raise MomuError(f"{what} has no frames")
    if n_joints is not None and joints.shape[1] != n_joints:
        raise MomuError(f"{what} has {joints.shape[1]} joints but joint_names lists {n_joints}")
    bad = ~np.isfinite(joints)
    if bad.any():
        frames = np.unique(np.nonzero(bad)[0])
        raise MomuError(
            f"{what} contains NaN/inf in {len(frames)} frame(s) (first: {frames[:5].tolist()}); "
            "fill gaps first (e.g. `momu pose` interpolates short gaps) or drop those frames"
        )


def load_motion(path: str | Path) -> Motion:
    """Read a motion ``.npz`` (format above); clear errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise MomuError(f"motion file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # zipfile/npy errors
        raise MomuError(f"cannot read motion file {path}: {exc}. Expected an .npz with 'joints' and 'fps'") from None
    with z:
        if "joints" not in z or "fps" not in z:
            raise MomuError(f"{path} is not a momu motion file: needs arrays 'joints' [T,J,3] and 'fps' (has {sorted(z.files)})")
        joints = z["joints"]
        names = tuple(z["joint_names"].tolist()) if "joint_names" in z else None
        if names is None:
            if joints.ndim == 3 and joints.shape[1] == len(CANONICAL_JOINTS):
                names = CANONICAL_JOINTS
            else:
                raise MomuError(f"{path} has no 'joint_names' and {joints.shape[1] if joints.ndim == 3 else '?'} joints; add joint_names")
        return Motion(
            joints=joints,
            fps=float(z["fps"]),
            joint_names=names,
            joints2d=z["joints2d"] if "joints2d" in z else None,
            confidence=z["confidence"] if "confidence" in z else None,
            meta=_load_meta(z, path),
        )


def _load_meta(z, path: Path) -> dict:
    if "meta" not in z:
        return {}
    try:
        meta = json.loads(str(z["meta"]))
    except (ValueError, TypeError):
        raise MomuError(f"{path}: 'meta' is not a JSON object string; re-save the motion") from None
    if not isinstance(meta, dict):
        raise MomuError(f"{path}: 'meta' must hold a JSON object")
    return meta


# canonical rest offsets of ``synthetic_dance`` (metres; facing +z, left = +x, arms along +-x)
_SYNTH_OFFSETS = {
    "spine": (0, 0.25, 0.0), "neck": (0, 0.25, 0.0), "head": (0, 0.2, 0.03),
    "l_shoulder": (0.18, 0, 0), "l_elbow": (0.28, 0, 0), "l_wrist": (0.25, 0, 0),
    "r_shoulder": (-0.18, 0, 0), "r_elbow": (-0.28, 0, 0), "r_wrist": (-0.25, 0, 0),
    "l_hip": (0.1, 0, 0), "l_knee": (0, -0.45, 0), "l_ankle": (0, -0.42, 0), "l_toe": (0, -0.06, 0.15),
    "r_hip": (-0.1, 0, 0), "r_knee": (0, -0.45, 0), "r_ankle": (0, -0.42, 0), "r_toe": (0, -0.06, 0.15),
}


def synthetic_dance(seconds: float = 8.0, fps: float = 30.0, bpm: float = 120.0, seed: int = 0,
                    phase_s: float = 0.0, travel: float = 0.2, turn: float = 0.3) -> Motion:
    """A procedural, rigid, anatomically plausible canonical dancer for tests and demos (no data).

    Forward kinematics of a fixed-length 18-joint rig: the legs step alternately (one step per beat,
    knees bending forwards), arms swing against the legs, the pelvis dips once per beat with its
    lowest point at the beat times ``phase_s + k * 60 / bpm``, the body travels ``travel`` m/s along
    its facing and turns ``turn`` rad/s.  ``seed`` varies amplitudes slightly.  Bone lengths are
    constant, left is +x at frame 0 (facing +z), y up, feet near y = 0.
    """
    from scipy.spatial.transform import Rotation

    from momu_live.models.skeleton import CANONICAL_PARENTS, FEET

    rng = np.random.default_rng(seed)
    T = max(1, convert_frames_from_seconds(seconds, fps))
    t = np.arange(T, dtype=np.float64) / fps  # (T,)
    beat = 2 * np.pi * (t - phase_s) * bpm / 60.0  # (T,) 0 mod 2pi at beats
    stride = beat / 2  # one leg cycle = two beats
    a = 1.0 + 0.15 * rng.uniform(-1, 1, 8)
    zeros = np.zeros(T)
    ang = {name: np.zeros((T, 3)) for name in _SYNTH_OFFSETS}  # intrinsic XYZ radians
    ang["l_hip"][:, 0] = -0.15 - 0.35 * a[0] * np.sin(stride)
    ang["r_hip"][:, 0] = -0.15 + 0.35 * a[0] * np.sin(stride)
    ang["l_knee"][:, 0] = 0.25 + 0.3 * a[1] * np.maximum(0, np.sin(stride))
    ang["r_knee"][:, 0] = 0.25 + 0.3 * a[1] * np.maximum(0, -np.sin(stride))
    for c in ("l", "r"):
        ang[f"{c}_ankle"][:, 0] = -0.5 * (ang[f"{c}_hip"][:, 0] + ang[f"{c}_knee"][:, 0])
    ang["l_shoulder"][:, 2] = -1.3 + 0.1 * a[2] * np.sin(beat)
    ang["r_shoulder"][:, 2] = 1.3 - 0.1 * a[2] * np.sin(beat)
    ang["l_shoulder"][:, 0] = 0.4 * a[3] * np.sin(stride)
    ang["r_shoulder"][:, 0] = -0.4 * a[3] * np.sin(stride)
    ang["l_elbow"][:, 1] = 0.5 + 0.2 * a[4] * np.sin(beat)
    ang["r_elbow"][:, 1] = -0.5 - 0.2 * a[4] * np.sin(beat)
    ang["spine"][:, 1] = 0.1 * a[5] * np.sin(stride)
    ang["head"][:, 0] = 0.05 * a[6] * np.sin(beat)
    yaw = turn * t
    root_rot = Rotation.from_euler("YXZ", np.stack([yaw, zeros, 0.03 * a[7] * np.sin(stride)], 1)).as_matrix()
    fwd = np.stack([np.sin(yaw), zeros, np.cos(yaw)], 1)  # (T, 3)
    dt = 1.0 / fps
    root = np.cumsum(fwd * travel * dt, axis=0) - fwd[:1] * travel * dt  # (T, 3) starts at the origin
    root[:, 1] = 0.95 - 0.03 * (1 + np.cos(beat)) / 2  # lowest on the beat (cos = 1)
    joints = np.zeros((T, len(CANONICAL_JOINTS), 3))
    G = np.zeros((T, len(CANONICAL_JOINTS), 3, 3))
    for j, p in enumerate(CANONICAL_PARENTS):
        name = CANONICAL_JOINTS[j]
        if p < 0:
            G[:, j], joints[:, j] = root_rot, root
            continue
        R = Rotation.from_euler("XYZ", ang[name]).as_matrix() if name in ang else np.eye(3)
        joints[:, j] = joints[:, p] + np.einsum("tij,j->ti", G[:, p], np.asarray(_SYNTH_OFFSETS[name], float))
        G[:, j] = G[:, p] @ R
    joints[..., 1] -= joints[:, list(FEET), 1].min()  # lowest foot on the floor
    return Motion(joints=joints.astype(np.float32), fps=fps, meta={"source": "synthetic_dance", "bpm": bpm, "seed": seed,
                                                                    "phase_s": phase_s})


def convert_frames_from_seconds(seconds: float, fps: float) -> int:
    """Whole frames of ``fps`` in ``seconds`` (exact rational floor)."""
    from momu_live.models.timebase import time_to_frame

    return time_to_frame(seconds, fps, "floor")
