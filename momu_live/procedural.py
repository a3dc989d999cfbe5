"""A procedural, beat-locked dancer on the canonical skeleton (licence-clean demo and test motion).

Not a learned model: a parametric stepping dance whose feet land exactly on the beats of a given
tempo, with a pelvis dip on every beat (deeper on the downbeat), weight shift across a two-beat
cycle, counter-swinging arms, a slow turn and a circular floor path.  Legs are solved with two-bone
IK, so bone lengths stay constant.  It gives `momu demo` a dance that may be shipped, and tests a
motion whose rhythm is known exactly.
"""
from __future__ import annotations

import numpy as np

from momu_live.models.motion import Motion
from momu_live.models.skeleton import CANONICAL_JOINTS, JOINT_INDEX as J

THIGH, SHIN = 0.43, 0.42  # metres
HIP_HALF = 0.10
PELVIS_HEIGHT = 0.93


def _two_bone_ik(hip: np.ndarray, ankle: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Knee positions (N, 3) for hip/ankle targets (N, 3), knee bending towards ``forward``."""
    d = ankle - hip  # (N, 3)
    dist = np.linalg.norm(d, axis=-1, keepdims=True).clip(1e-6, THIGH + SHIN - 1e-4)  # (N, 1)
    u = d / np.linalg.norm(d, axis=-1, keepdims=True).clip(1e-6)
    a = (THIGH**2 - SHIN**2 + dist**2) / (2 * dist)  # distance from hip along u
    h = np.sqrt(np.clip(THIGH**2 - a**2, 0, None))
    f = forward - (forward * u).sum(-1, keepdims=True) * u
    f = f / np.linalg.norm(f, axis=-1, keepdims=True).clip(1e-6)
    return hip + a * u + h * f


def procedural_dance(bpm: float = 120.0, seconds: float = 20.0, fps: float = 25.0, meter: int = 4,
                     seed: int = 0, phase_s: float = 0.0) -> Motion:
    """Canonical-skeleton dance whose steps land on beats at ``phase_s + k * 60 / bpm`` seconds.

    Returns a ``Motion`` (T = floor(seconds * fps)) with ``meta['beat_times']``.
    """
    if bpm <= 0 or seconds <= 0 or fps <= 0:
        raise ValueError("bpm, seconds and fps must be positive")
    rng = np.random.default_rng(seed)
    T = max(1, int(np.floor(seconds * fps)))
    t = np.arange(T) / fps  # (T,)
    beat = (t - phase_s) * bpm / 60.0  # beat phase, integer at beats
    n = np.floor(beat)
    frac = beat - n
    down = (np.mod(n, meter) == 0).astype(np.float64)

    # pelvis: dip centred on each beat (lowest on the beat), deeper on downbeats
    dip = (0.03 + 0.02 * down) * (0.5 + 0.5 * np.cos(2 * np.pi * frac))  # (T,)
    sway = 0.05 * np.sin(np.pi * beat)  # two-beat weight shift (x)
    turn = 0.35 * np.sin(2 * np.pi * t / 16.0 + rng.uniform(0, 2 * np.pi))  # body yaw (rad)
    path_phase = 2 * np.pi * t / 24.0
    root = np.stack([0.25 * np.sin(path_phase) + sway, PELVIS_HEIGHT - dip, 0.2 * np.sin(2 * path_phase)], -1)  # (T, 3)

    joints = np.zeros((T, len(CANONICAL_JOINTS), 3))

    def place(name, local):  # local (T, 3) in body frame (x left, y up, z forward) -> world
        c, s = np.cos(turn), np.sin(turn)
        x, y, z = local[:, 0], local[:, 1], local[:, 2]
        joints[:, J[name]] = root + np.stack([c * x + s * z, y, -s * x + c * z], -1)

    ones = np.ones(T)
    lean = 0.02 * np.sin(2 * np.pi * beat)
    place("pelvis", np.zeros((T, 3)))
    place("spine", np.stack([0.0 * ones, 0.26 * ones, lean], -1))
    place("neck", np.stack([0.0 * ones, 0.52 * ones, 2 * lean], -1))
    place("head", np.stack([0.0 * ones, 0.70 * ones, 2 * lean + 0.03], -1))
    swing = 0.25 * np.sin(np.pi * beat)  # arms counter-swing over two beats
    for side, sgn in (("l", 1.0), ("r", -1.0)):
        sh = np.stack([sgn * 0.18 * ones, 0.50 * ones, 2 * lean], -1)
        a = sgn * swing  # swing angle about x (forward/back)
        raise_ = 0.5 + 0.3 * down * (0.5 + 0.5 * np.cos(2 * np.pi * frac))  # arms lift on the downbeat
        el = sh + np.stack([sgn * 0.05 * ones, -0.28 * np.cos(a) * np.cos(raise_ - 0.5), 0.28 * np.sin(a)], -1)
        wr = el + np.stack([sgn * 0.03 * ones, -0.25 * np.cos(raise_), 0.25 * np.sin(raise_) + 0.1 * np.sin(a)], -1)
        place(f"{side}_shoulder", sh)
        place(f"{side}_elbow", el)
        place(f"{side}_wrist", wr)

    # legs: foot (n % 2) steps during beat n and lands on beat n + 1
    for side, sgn, which in (("l", 1.0, 0), ("r", -1.0, 1)):
        moving = (np.mod(n, 2) == which).astype(np.float64)
        lift = moving * 0.09 * np.sin(np.pi * frac) ** 2
        steps_done = np.floor((n - which + 1) / 2)  # this foot's completed steps before beat n
        ease = 0.5 - 0.5 * np.cos(np.pi * frac)  # foot speed peaks mid-step, zero on the beat
        stride = 0.2 * np.sin(np.pi * (steps_done + moving * ease) / 2.0)  # held while standing
        hip_l = np.stack([sgn * HIP_HALF * ones, -0.02 * ones, 0 * ones], -1)
        ankle_world_y = 0.08 + lift
        ankle_l = np.stack([sgn * (HIP_HALF + 0.02) * ones - sway, ankle_world_y - root[:, 1], stride], -1)
        fwd = np.stack([0 * ones, 0 * ones, ones], -1)
        knee_l = _two_bone_ik(hip_l, ankle_l, fwd)
        toe_l = ankle_l + np.stack([0 * ones, -0.06 + 0.05 * moving * np.sin(np.pi * frac), 0.14 * ones], -1)
        place(f"{side}_hip", hip_l)
        place(f"{side}_knee", knee_l)
        place(f"{side}_ankle", ankle_l)
        place(f"{side}_toe", toe_l)

    beats = phase_s + np.arange(np.ceil(-phase_s * bpm / 60), np.floor((seconds - phase_s) * bpm / 60) + 1) * 60.0 / bpm
    beats = beats[(beats >= 0) & (beats < seconds)]
    return Motion(joints=joints.astype(np.float32), fps=fps,
                  meta={"source": "procedural", "bpm": bpm, "meter": meter, "beat_times": beats.tolist()})
