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


# ---------------------------------------------------------------------------------------------
# Mappings into the canonical skeleton.  Each source skeleton is a dict canonical joint -> recipe,
# a recipe being a tuple of source joint names whose mean gives the canonical joint.

DWM23_TO_CANONICAL: dict[str, tuple[str, ...]] = {
    # Dance-with-Melody 23 joints (../shared/data/dwm/skeleton.json).  Its frame is mirrored
    # (left-handed): we negate x, which makes the inferred left/right names anatomically right.
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "head": ("head_left", "head_right"),
    "l_shoulder": ("left_shoulder",), "l_elbow": ("left_elbow",), "l_wrist": ("left_wrist",),
    "r_shoulder": ("right_shoulder",), "r_elbow": ("right_elbow",), "r_wrist": ("right_wrist",),
    "l_hip": ("left_hip",), "l_knee": ("left_knee",), "l_ankle": ("left_ankle",), "l_toe": ("left_toe",),
    "r_hip": ("right_hip",), "r_knee": ("right_knee",), "r_ankle": ("right_ankle",), "r_toe": ("right_toe",),
}

SKELETON_MAPS: dict[str, dict[str, tuple[str, ...]]] = {"dwm23": DWM23_TO_CANONICAL}
# source skeletons whose frames need x negated to become right-handed
MIRRORED_SOURCES = {"dwm23"}


def detect_skeleton(joint_names: tuple[str, ...]) -> str:
    """Name of the known skeleton whose joint names these are ('canonical', 'dwm23', ...)."""
    names = tuple(joint_names)
    if names == CANONICAL_JOINTS:
        return "canonical"
    for key, mapping in SKELETON_MAPS.items():
        needed = {s for recipe in mapping.values() for s in recipe}
        if needed <= set(names):
            return key
    from momu_live import MomuError

    raise MomuError(
        f"unknown skeleton with {len(names)} joints (first: {list(names[:4])}); "
        f"known: canonical, {', '.join(SKELETON_MAPS)}"
    )


def map_joints(joints, joint_names, source: str | None = None):
    """Map (T, J, 3) joints of a known skeleton to canonical (T, 18, 3) (float32)."""
    import numpy as np

    source = source or detect_skeleton(tuple(joint_names))
    if source == "canonical":
        return np.asarray(joints, dtype=np.float32)
    mapping = SKELETON_MAPS[source]
    idx = {n: i for i, n in enumerate(joint_names)}
    src = np.asarray(joints, dtype=np.float32)
    out = np.zeros(src.shape[:-2] + (len(CANONICAL_JOINTS), src.shape[-1]), dtype=np.float32)
    for j, name in enumerate(CANONICAL_JOINTS):
        if name in mapping:
            out[..., j, :] = src[..., [idx[s] for s in mapping[name]], :].mean(axis=-2)
    # derived joints
    out[..., JOINT_INDEX["spine"], :] = 0.5 * (out[..., JOINT_INDEX["pelvis"], :] + out[..., JOINT_INDEX["neck"], :])
    if source in MIRRORED_SOURCES and src.shape[-1] == 3:
        out[..., 0] *= -1.0
    return out


def to_canonical(motion):
    """A ``Motion`` of a known skeleton, mapped to the canonical skeleton."""
    from dataclasses import replace

    source = detect_skeleton(motion.joint_names)
    if source == "canonical":
        return motion
    conf = None
    if motion.confidence is not None:
        conf = map_joints(motion.confidence[..., None].repeat(3, -1), motion.joint_names, source)[..., 0]
    j2d = None
    if motion.joints2d is not None:
        j2d = map_joints(motion.joints2d, motion.joint_names, source)
    return replace(
        motion, joints=map_joints(motion.joints, motion.joint_names, source), joint_names=CANONICAL_JOINTS,
        joints2d=j2d, confidence=conf, meta={**motion.meta, "mapped_from": source},
    )
