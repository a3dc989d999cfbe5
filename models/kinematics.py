"""Rhythm signals and kinematic beats of canonical motion (numpy; no librosa, no torch).

Everything here takes canonical joints ``(T, 18, 3)`` (metres, y up; models/skeleton.py) and the
motion's frame rate, and returns per-frame signals or beat times in **seconds**, so callers never
mix frame rates (models/timebase.py for conversions).

- ``directogram`` / ``kinematic_amplitude``: MoMu-Diffusion Sec. 3.1, Eq. 1-2 (after Davis &
  Agrawala 2018, "Visual Rhythm and Beat"): joint velocities in the frontal (x, y) plane binned by
  direction, D(t, k) = sum_j |v_j(t)| 1[angle(v_j(t)) in bin k]; kinematic amplitude = half-wave
  rectified directogram flux Q(t) = sum_k max(0, D(t, k) - D(t-1, k)).  Same definition as the
  torch version in models/rhythm.py (training loss); this one is numpy for evaluation.
  ``flux_beats``: peaks of Q (the paper's "kinematic beats").
- ``speed_minima_beats``: Bailando (Siyao et al. CVPR 2022, ``utils/metrics_new.py`` ``calc_db``):
  mean joint speed per frame, gaussian-smoothed (sigma 5 frames at 60 fps), local minima
  (``argrelextrema(np.less)``) are the motion beats.
- ``feet_speed`` / ``pelvis_height``: the motion rhythm signals of the beat-grid coherence
  (../shared/data/dwm/README.md: feet speed against the beat phase, pelvis height against the bar
  phase for waltz).
"""
from __future__ import annotations

import math

import numpy as np

from momu_live import MomuError

# Bailando computes motion beats on AIST++ at 60 fps with gaussian sigma 5 frames
BAILANDO_FPS = 60.0
BAILANDO_SMOOTH_FRAMES = 5.0


def check_joints(joints: np.ndarray, fps: float, min_frames: int = 3) -> np.ndarray:
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[-1] != 3:
        raise MomuError(f"joints must be [T, J, 3], got shape {j.shape}")
    if j.shape[0] < min_frames:
        raise MomuError(f"motion too short for rhythm analysis: {j.shape[0]} frames < {min_frames}")
    if not np.isfinite(j).all():
        raise MomuError("joints contain NaN/inf; fill gaps first (momu pose interpolates short gaps)")
    if not (math.isfinite(fps) and fps > 0):
        raise MomuError(f"fps must be positive, got {fps}")
    return j


def velocities(joints: np.ndarray, fps: float) -> np.ndarray:
    """Backward-difference joint velocities (T, J, 3) in m/s; v(0) = 0."""
    j = check_joints(joints, fps, 2)
    v = np.zeros_like(j)  # (T, J, 3)
    v[1:] = (j[1:] - j[:-1]) * fps
    return v


def directogram(joints: np.ndarray, fps: float, n_bins: int = 8) -> np.ndarray:
    """MoMu-Diffusion Eq. 1: directogram (T, n_bins) of frontal-plane (x, y) joint velocities (m/s).

    Bin k covers directions [2 pi k / K, 2 pi (k + 1) / K) of atan2(v_y, v_x); each joint adds its
    speed to the bin of its direction.  Row 0 is zero (no previous frame).
    """
    v = velocities(joints, fps)[..., :2]  # (T, J, 2)
    speed = np.linalg.norm(v, axis=-1)  # (T, J)
    ang = np.mod(np.arctan2(v[..., 1], v[..., 0]), 2 * np.pi)  # (T, J)
    k = np.minimum((ang / (2 * np.pi) * n_bins).astype(np.int64), n_bins - 1)  # (T, J)
    d = np.zeros((v.shape[0], n_bins))  # (T, K)
    np.add.at(d, (np.repeat(np.arange(v.shape[0]), v.shape[1]), k.ravel()), speed.ravel())
    return d


def kinematic_amplitude(joints: np.ndarray, fps: float, n_bins: int = 8) -> np.ndarray:
    """MoMu-Diffusion Eq. 2: Q(t) = sum_k max(0, D(t, k) - D(t-1, k)), (T,), Q(0) = Q(1) = 0."""
    d = directogram(joints, fps, n_bins)  # (T, K)
    q = np.zeros(d.shape[0])  # (T,)
    q[2:] = np.maximum(d[2:] - d[1:-1], 0.0).sum(-1)  # D(1) is the first real velocity: no flux before it
    return q


def pick_peaks(x: np.ndarray, fps: float, min_interval_s: float = 0.2, rel_height: float = 1.0) -> np.ndarray:
    """Frame indices of peaks of ``x``: local maxima at least ``min_interval_s`` apart and above
    ``rel_height`` x the local mean of a 1-s window (an onset-detector style adaptive threshold)."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import find_peaks

    x = np.asarray(x, dtype=np.float64)
    if x.size < 3 or not np.any(x > 0):
        return np.zeros(0, dtype=np.int64)
    local = uniform_filter1d(x, size=max(1, int(round(fps))), mode="nearest")  # (T,)
    peaks, _ = find_peaks(x, distance=max(1, int(round(min_interval_s * fps))))
    return peaks[x[peaks] > rel_height * local[peaks]].astype(np.int64)


def flux_beats(joints: np.ndarray, fps: float, n_bins: int = 8, min_interval_s: float = 0.2) -> np.ndarray:
    """Kinematic beats (s) of MoMu-Diffusion: peaks of the kinematic amplitude Q (Eq. 2).

    Q is lightly smoothed (gaussian, sigma 1 frame at 25-30 fps ~ 40 ms) before peak picking so single
    -frame jitter of marker data does not create beats; peaks >= ``min_interval_s`` apart, above the 1-s
    local mean of Q.
    """
    from scipy.ndimage import gaussian_filter1d

    q = kinematic_amplitude(joints, fps, n_bins)  # (T,)
    q = gaussian_filter1d(q, sigma=max(0.5, 0.04 * fps), mode="nearest")
    return pick_peaks(q, fps, min_interval_s) / fps


def mean_joint_speed(joints: np.ndarray, fps: float) -> np.ndarray:
    """Mean joint speed (T - 1,) in m/s between consecutive frames (Bailando's kinetic velocity)."""
    j = check_joints(joints, fps, 2)
    return np.linalg.norm(j[1:] - j[:-1], axis=-1).mean(-1) * fps  # (T - 1,)


def speed_minima_beats(joints: np.ndarray, fps: float, smooth_s: float = BAILANDO_SMOOTH_FRAMES / BAILANDO_FPS) -> np.ndarray:
    """Bailando motion beats (s): local minima of the gaussian-smoothed mean joint speed.

    Bailando (``calc_db``): ``kinetic_vel = mean_j |p_j(t+1) - p_j(t)|``, ``G(kinetic_vel, 5)``,
    ``argrelextrema(kinetic_vel, np.less)`` at 60 fps.  The smoothing is kept in seconds
    (5 / 60 s) so any fps gives the same filter.  Speed sample i lies between frames i and i + 1;
    like Bailando we report it at frame i (time i / fps, half a frame early).
    """
    from scipy.ndimage import gaussian_filter
    from scipy.signal import argrelextrema

    v = mean_joint_speed(joints, fps)  # (T - 1,)
    v = gaussian_filter(v, sigma=smooth_s * fps)
    idx = argrelextrema(v, np.less)[0]
    return idx / fps


def feet_speed(joints: np.ndarray, fps: float) -> np.ndarray:
    """Mean speed (T,) of the canonical feet joints (ankles and toes), m/s; frame 0 copies frame 1."""
    from momu_live.models.skeleton import FEET

    j = check_joints(joints, fps, 2)
    if j.shape[1] <= max(FEET):
        raise MomuError(f"feet speed needs canonical joints (18), got {j.shape[1]}; map with skeleton.to_canonical")
    s = np.linalg.norm(j[1:, list(FEET)] - j[:-1, list(FEET)], axis=-1).mean(-1) * fps  # (T - 1,)
    return np.concatenate([s[:1], s])


def pelvis_height(joints: np.ndarray, fps: float, highpass_s: float = 2.0) -> np.ndarray:
    """Pelvis height (T,) in metres with slow drift removed (minus its ``highpass_s`` moving average)."""
    from scipy.ndimage import uniform_filter1d

    from momu_live.models.skeleton import ROOT

    j = check_joints(joints, fps, 2)
    y = j[:, ROOT, 1]  # (T,)
    return y - uniform_filter1d(y, size=max(1, int(round(highpass_s * fps))), mode="nearest")


RHYTHM_SIGNALS = {"feet_speed": feet_speed, "pelvis_height": pelvis_height}


# ------------------------------------------------------------------------------------------------
# Realism statistics of a motion (outside any training loss or guidance objective): smoothness, rigidity,
# contact with the floor, travel, and per-window feature sets for Frechet distances.  Canonical joints,
# metres, y up, the floor at y = 0 (the DwM data and the motion VAE's absolute pelvis height share it).


def acceleration_mean(joints: np.ndarray, fps: float) -> float:
    """Mean joint acceleration magnitude in **m/s^2** (second finite difference x fps^2, all joints and frames)."""
    j = check_joints(joints, fps, 3)
    return float(np.linalg.norm(np.diff(j, 2, axis=0), axis=-1).mean() * fps ** 2)


def jitter(joints: np.ndarray, fps: float) -> float:
    """Jitter: mean joint **jerk** magnitude in **m/s^3** (third finite difference x fps^3, all joints and frames).

    Finite differences grow with the frame rate for noisy motion, so compare motions at one rate (the
    evaluation resamples every motion to the model rate, 21.53 fps, first).  0 for a frozen pose.
    """
    j = check_joints(joints, fps, 4)
    return float(np.linalg.norm(np.diff(j, 3, axis=0), axis=-1).mean() * fps ** 3)


def bone_length_sd(joints: np.ndarray) -> float:
    """Mean over the 17 canonical bones of the standard deviation over frames of its length (m); 0 for a rigid body."""
    from momu_live.models.skeleton import bone_lengths

    j = check_joints(joints, 1.0, 2)
    return float(bone_lengths(j).std(axis=0).mean())


def foot_contact(joints: np.ndarray, fps: float, contact_height: float = 0.05) -> dict:
    """Foot skating and ground penetration against the floor y = 0.

    Per foot the lowest of its ankle and toe joints; the foot is in contact while that point is below
    ``contact_height`` (m).  ``skating`` (m/s): mean horizontal speed (central differences) of the contact
    point over the frames in contact (NaN when a motion never touches the floor: see ``contact_fraction``).
    ``penetration`` (m): mean over frames of how far the lowest joint of the body is below the floor (0 when
    above); ``penetration_fraction``: frames with any joint more than 1 cm below the floor.
    """
    from momu_live.models.skeleton import JOINT_INDEX

    j = check_joints(joints, fps, 3)
    speeds, n_contact, n_total = [], 0, 0
    for side in ("l", "r"):
        pts = j[:, [JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_toe"]]]  # (T, 2, 3)
        low = np.argmin(pts[..., 1], axis=1)  # (T,)
        p = pts[np.arange(len(pts)), low]  # (T, 3) the lowest foot point
        h = np.gradient(p[:, [0, 2]], axis=0) * fps  # (T, 2) horizontal velocity
        c = p[:, 1] < contact_height
        speeds.append(np.linalg.norm(h, axis=1)[c])
        n_contact += int(c.sum())
        n_total += len(c)
    sp = np.concatenate(speeds)
    lowest = j[..., 1].min(axis=1)  # (T,)
    return {"skating": float(sp.mean()) if sp.size else float("nan"), "contact_fraction": n_contact / max(n_total, 1),
            "penetration": float(np.maximum(0.0, -lowest).mean()),
            "penetration_fraction": float((lowest < -0.01).mean()), "contact_height": contact_height}


def root_travel(joints: np.ndarray, fps: float, step_s: float = 0.5) -> dict:
    """Horizontal travel of the pelvis: ``path`` (m), the length of its floor track sampled every ``step_s``
    (so frame-to-frame jitter does not add up), and ``net`` (m), first to last position."""
    from momu_live.models.skeleton import ROOT

    j = check_joints(joints, fps, 2)
    xz = j[:, ROOT][:, [0, 2]]  # (T, 2)
    k = max(1, int(round(step_s * fps)))
    s = xz[::k]
    if (len(xz) - 1) % k:
        s = np.concatenate([s, xz[-1:]])
    return {"path": float(np.linalg.norm(np.diff(s, axis=0), axis=1).sum()), "net": float(np.linalg.norm(xz[-1] - xz[0])),
            "step_s": step_s}


GEOMETRIC_FEATURES = (
    "l_wrist_above_head", "r_wrist_above_head", "l_wrist_above_neck", "r_wrist_above_neck",
    "l_wrist_in_front", "r_wrist_in_front", "l_wrist_out_sideways", "r_wrist_out_sideways",
    "l_elbow_bent", "r_elbow_bent", "l_knee_bent", "r_knee_bent",
    "l_foot_raised", "r_foot_raised", "l_foot_in_front", "r_foot_in_front",
    "feet_apart", "hands_apart", "l_wrist_fast", "r_wrist_fast", "l_ankle_fast", "r_ankle_fast",
    "root_fast", "torso_leaning", "crouching", "hands_crossed",
)


def geometric_features(joints: np.ndarray, fps: float) -> np.ndarray:
    """Boolean relational pose features per frame (T, 26) as 0/1 floats, names in ``GEOMETRIC_FEATURES``.

    In the spirit of Mueller et al. 2005 ("Efficient content-based retrieval of motion capture data"), the
    family AIST++ uses for its geometric features; this set of 26 is ours, not AIST++'s 33.  Distances are in
    units of the body's own torso length (median pelvis-neck distance), so a smaller generated body is judged
    by the same rules; directions are in the body frame (left = pelvis-level l_hip - r_hip, forward = left x up).
    """
    from momu_live.models.skeleton import JOINT_INDEX as I

    j = check_joints(joints, fps, 2)
    up = np.array([0.0, 1.0, 0.0])
    u = float(np.median(np.linalg.norm(j[:, I["neck"]] - j[:, I["pelvis"]], axis=-1))) or 1.0
    left = j[:, I["l_hip"]] - j[:, I["r_hip"]]
    left[:, 1] = 0.0
    left /= np.linalg.norm(left, axis=-1, keepdims=True) + 1e-9  # (T, 3)
    fwd = np.cross(left, up)  # (T, 3)
    y = j[..., 1]
    spine = j[:, I["spine"]]

    def ang(a, b, c):  # angle at b (degrees)
        v1, v2 = j[:, I[a]] - j[:, I[b]], j[:, I[c]] - j[:, I[b]]
        cos = (v1 * v2).sum(-1) / (np.linalg.norm(v1, axis=-1) * np.linalg.norm(v2, axis=-1) + 1e-9)
        return np.degrees(np.arccos(np.clip(cos, -1, 1)))

    def speed(name):
        v = np.gradient(j[:, I[name]], axis=0) * fps
        return np.linalg.norm(v, axis=-1)

    def dot(v, d):
        return (v * d).sum(-1)

    ankle_floor = np.percentile(y[:, [I["l_ankle"], I["r_ankle"]]], 5)
    pelvis_over_feet = y[:, I["pelvis"]] - y[:, [I["l_ankle"], I["r_ankle"]]].min(1)
    torso = j[:, I["neck"]] - j[:, I["pelvis"]]
    lean = np.degrees(np.arccos(np.clip(torso[:, 1] / (np.linalg.norm(torso, axis=-1) + 1e-9), -1, 1)))
    root_v = np.gradient(j[:, I["pelvis"]][:, [0, 2]], axis=0) * fps
    la, ra = j[:, I["l_ankle"]], j[:, I["r_ankle"]]
    lw, rw = j[:, I["l_wrist"]], j[:, I["r_wrist"]]
    feet_h = la - ra
    feet_h[:, 1] = 0.0
    f = [
        y[:, I["l_wrist"]] > y[:, I["head"]], y[:, I["r_wrist"]] > y[:, I["head"]],
        y[:, I["l_wrist"]] > y[:, I["neck"]], y[:, I["r_wrist"]] > y[:, I["neck"]],
        dot(lw - spine, fwd) > 0.3 * u, dot(rw - spine, fwd) > 0.3 * u,
        dot(lw - spine, left) > 0.7 * u, dot(rw - spine, -left) > 0.7 * u,
        ang("l_shoulder", "l_elbow", "l_wrist") < 120, ang("r_shoulder", "r_elbow", "r_wrist") < 120,
        ang("l_hip", "l_knee", "l_ankle") < 150, ang("r_hip", "r_knee", "r_ankle") < 150,
        la[:, 1] - ankle_floor > 0.1 * u, ra[:, 1] - ankle_floor > 0.1 * u,
        dot(la - ra, fwd) > 0.3 * u, dot(ra - la, fwd) > 0.3 * u,
        np.linalg.norm(feet_h, axis=-1) > 0.8 * u, np.linalg.norm(lw - rw, axis=-1) > 1.6 * u,
        speed("l_wrist") > 2 * u, speed("r_wrist") > 2 * u, speed("l_ankle") > 1.6 * u, speed("r_ankle") > 1.6 * u,
        np.linalg.norm(root_v, axis=-1) > 1.0 * u, lean > 20.0,
        pelvis_over_feet < 0.85 * np.median(pelvis_over_feet),
        dot(lw - spine, left) < dot(rw - spine, left),
    ]
    return np.stack(f, axis=1).astype(np.float64)  # (T, 26)


def window_starts_s(seconds: float, window_s: float, hop_s: float) -> np.ndarray:
    """Start times (s) of the windows of ``window_s`` every ``hop_s`` that fit in ``seconds`` (at least one)."""
    n = int(np.floor((seconds - window_s) / hop_s + 1e-9)) + 1
    return np.arange(max(n, 1)) * hop_s


def windowed_kinetic_features(joints: np.ndarray, fps: float, window_s: float = 5.0, hop_s: float = 1.0) -> np.ndarray:
    """AIST++ kinetic features (models/metrics.kinetic_features, 60 fps) of every window: (W, 54)."""
    from momu_live.models.metrics import KINETIC_FPS, _resample_joints, kinetic_features

    j = check_joints(joints, fps, 3)
    j60 = _resample_joints(j, fps, KINETIC_FPS)
    win = int(round(window_s * KINETIC_FPS))
    starts = window_starts_s(len(j) / fps, window_s, hop_s)
    return np.stack([kinetic_features(j60[int(round(s * KINETIC_FPS)): int(round(s * KINETIC_FPS)) + win],
                                      KINETIC_FPS, resample_to=None) for s in starts])


def windowed_geometric_features(joints: np.ndarray, fps: float, window_s: float = 5.0, hop_s: float = 1.0) -> np.ndarray:
    """Fraction of each window's frames where each ``geometric_features`` relation holds: (W, 26)."""
    g = geometric_features(joints, fps)  # (T, 26)
    win = max(1, int(round(window_s * fps)))
    starts = window_starts_s(len(g) / fps, window_s, hop_s)
    return np.stack([g[int(round(s * fps)): int(round(s * fps)) + win].mean(0) for s in starts])
