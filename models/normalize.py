"""Motion normalisation with exact inverses: root-relative pose + root trajectory, body scale, facing.

All functions work on canonical joints (..., T, 18, 3) (metres, y up; see ``skeleton.py``) and are
pure: the parameters needed to undo a step are returned, never stored globally.

- ``split_root`` / ``join_root``: joints = local + root, local pelvis at the origin.
- ``root_velocity`` / ``integrate_root``: per-frame root displacement (horizontal) and absolute height,
  the usual trajectory representation of motion models; exact inverse given the first position.
- ``body_scale``: mean bone length (median over frames) or standing height; ``normalize`` divides by it.
- ``facing_yaw`` / ``rotate_y``: yaw that turns the body's forward (left x up) onto +z.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momu_live import MomuError
from momu_live.models.skeleton import BONES, CANONICAL_JOINTS, JOINT_INDEX, ROOT, bone_lengths, facing_direction

_J = JOINT_INDEX


def _check(joints) -> np.ndarray:
    x = np.asarray(joints, dtype=np.float32)
    if x.ndim < 2 or x.shape[-2:] != (len(CANONICAL_JOINTS), 3):
        raise MomuError(f"expected canonical joints [..., {len(CANONICAL_JOINTS)}, 3], got {x.shape}; map with to_canonical first")
    if not np.isfinite(x).all():
        raise MomuError("joints contain NaN/inf; fill gaps first")
    return x


def split_root(joints) -> tuple[np.ndarray, np.ndarray]:
    """joints (..., J, 3) -> (local (..., J, 3) with the pelvis at 0, root (..., 3))."""
    x = _check(joints)
    root = x[..., ROOT, :].copy()  # (..., 3)
    return x - root[..., None, :], root


def join_root(local, root) -> np.ndarray:
    """Inverse of ``split_root``: local (..., J, 3) + root (..., 3)."""
    return (np.asarray(local, np.float32) + np.asarray(root, np.float32)[..., None, :]).astype(np.float32)


def root_velocity(root) -> tuple[np.ndarray, np.ndarray]:
    """root (T, 3) -> (traj (T, 3) = [dx, y, dz] with dx/dz the displacement from the previous frame
    (0 at frame 0) and y the absolute height, start (3,) the first root position)."""
    r = np.asarray(root, dtype=np.float64)  # float64: integrating float32 steps over 10^5 frames drifts
    traj = np.zeros_like(r)
    traj[1:, [0, 2]] = np.diff(r[:, [0, 2]], axis=0)
    traj[:, 1] = r[:, 1]
    return traj, r[0].copy()


def integrate_root(traj, start) -> np.ndarray:
    """Inverse of ``root_velocity``: (T, 3) root positions (float64 cumulative sum)."""
    t = np.asarray(traj, dtype=np.float64)
    out = np.empty_like(t)
    out[:, [0, 2]] = np.asarray(start, np.float64)[[0, 2]] + np.cumsum(t[:, [0, 2]], axis=0)
    out[:, 1] = t[:, 1]
    return out


def body_scale(joints, method: str = "bones") -> float:
    """One scale of a body (metres).

    ``bones``: mean over the 17 bones of each bone's median length over frames.
    ``height``: median over frames of head-pelvis + mean leg length (pelvis-hip-knee-ankle), the
    standing height minus the foot and the head above its centre.
    """
    x = _check(joints).reshape(-1, len(CANONICAL_JOINTS), 3)  # (N, J, 3)
    if method == "bones":
        return float(np.median(bone_lengths(x), axis=0).mean())
    if method == "height":
        def seg(a, b):
            return np.linalg.norm(x[:, _J[a]] - x[:, _J[b]], axis=-1)

        leg = 0.5 * sum(seg(f"{c}_hip", f"{c}_knee") + seg(f"{c}_knee", f"{c}_ankle") + seg("pelvis", f"{c}_hip") for c in "lr")
        up = seg("pelvis", "spine") + seg("spine", "neck") + seg("neck", "head")
        return float(np.median(leg + up))
    raise MomuError(f"body_scale method must be 'bones' or 'height', got {method!r}")


def facing_yaw(joints) -> np.ndarray:
    """Yaw (radians, (...,)) of the body's forward direction about +y, 0 = facing +z."""
    f = facing_direction(_check(joints))  # (..., 3)
    return np.arctan2(f[..., 0], f[..., 2])


def rotate_y(x, yaw) -> np.ndarray:
    """Rotate points (..., 3) about +y by ``yaw`` (radians; scalar or broadcastable to x[..., 0])."""
    x = np.asarray(x, dtype=np.float32)
    c, s = np.cos(yaw), np.sin(yaw)
    out = x.copy()
    out[..., 0] = c * x[..., 0] + s * x[..., 2]
    out[..., 2] = -s * x[..., 0] + c * x[..., 2]
    return out.astype(np.float32)


@dataclass(frozen=True)
class NormState:
    """What ``normalize`` removed, so ``denormalize`` can put it back."""

    root: np.ndarray  # (3,) root position of frame 0 (metres, world)
    scale: float  # metres per normalised unit
    yaw: float  # radians removed about +y (0 if facing normalisation is off)


def normalize(joints, scale: str | float | None = "bones", facing: bool = False) -> tuple[np.ndarray, np.ndarray, NormState]:
    """joints (T, J, 3) -> (local (T, J, 3), traj (T, 3), state).

    local: root-relative, turned so frame 0 faces +z (``facing``), divided by ``scale`` (a
    ``body_scale`` method, a number, or None for 1).  traj: ``root_velocity`` of the root in the same
    turned, scaled frame.  ``denormalize(local, traj, state)`` gives the joints back.
    """
    x = _check(joints)
    if x.ndim != 3:
        raise MomuError(f"normalize expects one motion [T, J, 3], got {x.shape}")
    s = body_scale(x, scale) if isinstance(scale, str) else float(scale or 1.0)
    if not (np.isfinite(s) and s > 0):
        raise MomuError(f"body scale must be positive, got {s}")
    local, root = split_root(x)
    yaw = float(facing_yaw(x[0])) if facing else 0.0
    local = rotate_y(local, -yaw) / s
    r = rotate_y(root - root[:1], -yaw) / s  # (T, 3) relative to the first frame's root
    r[:, 1] = root[:, 1] / s  # height stays absolute
    traj, _ = root_velocity(r)
    return local.astype(np.float32), traj.astype(np.float32), NormState(root[0].copy(), s, yaw)


def denormalize(local, traj, state: NormState) -> np.ndarray:
    """Inverse of ``normalize``: (T, J, 3) joints in metres, world frame."""
    r = integrate_root(traj, np.zeros(3)) * state.scale  # (T, 3) turned frame, origin at frame 0
    r = rotate_y(r, state.yaw)
    r[:, [0, 2]] += state.root[[0, 2]]
    local = rotate_y(np.asarray(local, np.float32) * state.scale, state.yaw)
    return join_root(local, r)


__all__ = [
    "split_root", "join_root", "root_velocity", "integrate_root", "body_scale", "facing_yaw", "rotate_y",
    "normalize", "denormalize", "NormState", "BONES",
]
