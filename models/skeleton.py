"""The canonical body skeleton of momu-live and mappings from other skeletons.

Canonical skeleton: 18 joints, metres, y up, right-handed, +z towards the (virtual) camera.
Every model, metric and bridge works on it; other skeletons are mapped in with the functions below.
"""
from __future__ import annotations

CANONICAL_JOINTS: tuple[str, ...] = (
    "pelvis",       # 0  root: midpoint of the hips
    "spine",        # 1  midpoint pelvis -> neck
    "neck",         # 2  midpoint of the shoulders
    "head",         # 3  head centre
    "l_shoulder",   # 4
    "l_elbow",      # 5
    "l_wrist",      # 6
    "r_shoulder",   # 7
    "r_elbow",      # 8
    "r_wrist",      # 9
    "l_hip",        # 10
    "l_knee",       # 11
    "l_ankle",      # 12
    "l_toe",        # 13
    "r_hip",        # 14
    "r_knee",       # 15
    "r_ankle",      # 16
    "r_toe",        # 17
)
CANONICAL_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 2, 4, 5, 2, 7, 8, 0, 10, 11, 12, 0, 14, 15, 16)
JOINT_INDEX = {n: i for i, n in enumerate(CANONICAL_JOINTS)}
FEET = (JOINT_INDEX["l_ankle"], JOINT_INDEX["l_toe"], JOINT_INDEX["r_ankle"], JOINT_INDEX["r_toe"])
ROOT = 0
# left <-> right permutation (for mirroring augmentation)
MIRROR_PERM: tuple[int, ...] = tuple(
    JOINT_INDEX[n.replace("l_", "@").replace("r_", "l_").replace("@", "r_")] if n[:2] in ("l_", "r_") else i
    for i, n in enumerate(CANONICAL_JOINTS)
)
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(CANONICAL_PARENTS) if p >= 0)
