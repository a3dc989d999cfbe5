"""Virtual pinhole cameras: project 3-D canonical motion to 2-D image coordinates like MediaPipe's.

So 3-D data (DwM, AIST++, BVH) can train the 2-D path: ``project`` gives normalised image
coordinates (x right, y down, [0, 1] across the frame, as MediaPipe's ``pose_landmarks``), and
``random_cameras`` samples yaw / elevation / distance / focal length per clip.

Camera model (world: metres, y up, right-handed): the camera sits at
``target + distance * (sin(yaw) cos(el), sin(el), cos(yaw) cos(el))`` looking at ``target``;
yaw 0 / elevation 0 is a camera on +z looking towards -z (a dancer facing +z faces it).  A point
with camera coordinates (X right, Y up, Z forward, Z > 0) lands at
``u = 0.5 + fx * X / Z``, ``v = 0.5 - fx * aspect * Y / Z``, with ``fx`` the focal length in frame
widths and ``aspect = width / height`` (pixels square).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from momu_live import MomuError


@dataclass(frozen=True)
class VirtualCamera:
    yaw: float = 0.0  # radians about +y; 0 = camera on +z
    elevation: float = 0.0  # radians above the target's horizon
    distance: float = 4.0  # metres from target
    focal: float = 1.2  # focal length in frame widths (1.2 ~ 45 deg horizontal field of view)
    aspect: float = 16 / 9  # width / height
    target: tuple[float, float, float] = (0.0, 1.0, 0.0)  # look-at point (metres)
    roll: float = 0.0  # radians about the viewing axis

    @property
    def position(self) -> np.ndarray:
        ce = np.cos(self.elevation)
        d = np.array([np.sin(self.yaw) * ce, np.sin(self.elevation), np.cos(self.yaw) * ce])
        return np.asarray(self.target, np.float64) + self.distance * d

    def rotation(self) -> np.ndarray:
        """World -> camera rotation (3, 3): rows are the camera's right, up, forward axes in world."""
        fwd = np.asarray(self.target, np.float64) - self.position
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 1.0, 0.0])
        if np.linalg.norm(right) < 1e-8:
            raise MomuError("camera looks straight up/down; use |elevation| < 90 deg")
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        c, s = np.cos(self.roll), np.sin(self.roll)
        right, up = c * right + s * up, -s * right + c * up
        return np.stack([right, up, fwd])


def project(joints, cam: VirtualCamera, min_depth: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """joints (..., 3) world metres -> (uv (..., 2) normalised image coords, depth (...,) metres).

    Raises MomuError if any point is closer than ``min_depth`` to (or behind) the camera.
    """
    x = np.asarray(joints, np.float64)
    cam_xyz = (x - cam.position) @ cam.rotation().T  # (..., 3) X right, Y up, Z forward
    z = cam_xyz[..., 2]
    if (z < min_depth).any():
        raise MomuError(f"points within {min_depth} m of / behind the virtual camera; increase its distance")
    u = 0.5 + cam.focal * cam_xyz[..., 0] / z
    v = 0.5 - cam.focal * cam.aspect * cam_xyz[..., 1] / z
    return np.stack([u, v], axis=-1).astype(np.float32), z.astype(np.float32)


def unproject(uv, depth, cam: VirtualCamera) -> np.ndarray:
    """Inverse of ``project``: uv (..., 2) and depth (...,) -> world points (..., 3)."""
    uv = np.asarray(uv, np.float64)
    z = np.asarray(depth, np.float64)
    X = (uv[..., 0] - 0.5) * z / cam.focal
    Y = -(uv[..., 1] - 0.5) * z / (cam.focal * cam.aspect)
    cam_xyz = np.stack([X, Y, z], axis=-1)
    return (cam_xyz @ cam.rotation() + cam.position).astype(np.float32)


def random_cameras(
    n: int,
    rng: np.random.Generator,
    target=(0.0, 1.0, 0.0),
    yaw_deg=(-180.0, 180.0),
    elevation_deg=(-5.0, 25.0),
    distance=(3.0, 7.0),
    focal=(0.9, 1.8),
    aspect=(16 / 9, 4 / 3, 1.0, 9 / 16),
    roll_deg: float = 3.0,
) -> list[VirtualCamera]:
    """``n`` cameras with uniform yaw, elevation, log-uniform distance and focal, random aspect, small roll."""
    out = []
    for _ in range(n):
        out.append(VirtualCamera(
            yaw=float(np.deg2rad(rng.uniform(*yaw_deg))),
            elevation=float(np.deg2rad(rng.uniform(*elevation_deg))),
            distance=float(np.exp(rng.uniform(np.log(distance[0]), np.log(distance[1])))),
            focal=float(np.exp(rng.uniform(np.log(focal[0]), np.log(focal[1])))),
            aspect=float(aspect[rng.integers(len(aspect))]),
            target=tuple(float(t) for t in target),
            roll=float(np.deg2rad(rng.normal(0.0, roll_deg))),
        ))
    return out


def camera_for_motion(joints, cam: VirtualCamera, margin: float = 0.5) -> VirtualCamera:
    """``cam`` aimed at the motion's mean pelvis, pushed back until every joint is in front of it
    and inside the frame (fits the whole clip, like a fixed camera operator would)."""
    x = np.asarray(joints, np.float64).reshape(-1, 3)  # (N, 3)
    centre = x.mean(axis=0)
    cam = replace(cam, target=tuple(float(c) for c in centre))
    for _ in range(40):
        try:
            uv, _ = project(x, cam)
            if (uv > 0.02).all() and (uv < 0.98).all():
                return cam
        except MomuError:
            pass
        cam = replace(cam, distance=cam.distance * 1.25 + margin)
    return cam


def project_motion(motion, cam: VirtualCamera, fit: bool = True):
    """A copy of ``motion`` with ``joints2d`` from ``cam`` (fit to the clip first when ``fit``)."""
    if fit:
        cam = camera_for_motion(motion.joints, cam)
    uv, _ = project(motion.joints, cam)  # (T, J, 2)
    return replace(motion, joints2d=uv, meta={**motion.meta, "camera": {k: (list(v) if isinstance(v, tuple) else v)
                                                                    for k, v in cam.__dict__.items()}})
