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
