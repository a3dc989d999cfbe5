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
# a recipe being a tuple of source joint names whose mean gives the canonical joint.  Canonical
# joints a source lacks are *derived* (see ``_derive``) and get confidence 0.
#
# | canonical  | mediapipe33                       | coco17                     | dwm23 (x negated)        |
# |------------|-----------------------------------|----------------------------|--------------------------|
# | pelvis     | mean(left_hip, right_hip)         | mean(left_hip, right_hip)  | mean(left_hip, right_hip)|
# | spine      | mean(pelvis, neck) (derived)      | derived                    | derived                  |
# | neck       | mean(left/right_shoulder)         | mean(left/right_shoulder)  | mean(left/right_shoulder)|
# | head       | mean(nose, left_ear, right_ear)   | mean(nose, ears)           | mean(head_left/right)    |
# | l/r_toe    | left/right_foot_index             | derived, confidence 0      | left/right_toe           |

MEDIAPIPE33_JOINTS: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
COCO17_JOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)


def _limbs(ankle: str = "ankle", toe: str | None = "toe") -> dict[str, tuple[str, ...]]:
    out = {}
    for c, s in (("l", "left"), ("r", "right")):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee"):
            out[f"{c}_{part}"] = (f"{s}_{part}",)
        out[f"{c}_ankle"] = (f"{s}_{ankle}",)
        if toe is not None:
            out[f"{c}_toe"] = (f"{s}_{toe}",)
    return out


DWM23_TO_CANONICAL: dict[str, tuple[str, ...]] = {
    # Dance-with-Melody 23 joints (../shared/data/dwm/skeleton.json).  Its frame is mirrored
    # (left-handed): we negate x, which makes the inferred left/right names anatomically right
    # (checked on the data: after negation l_hip - r_hip = up x forward, forward = ankle -> toe,
    # in 100% of frames of DANCE_W_1).
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "head": ("head_left", "head_right"),
    **_limbs(),
}
MEDIAPIPE33_TO_CANONICAL: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "head": ("nose", "left_ear", "right_ear"),
    **_limbs(toe="foot_index"),
}
COCO17_TO_CANONICAL: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "head": ("nose", "left_ear", "right_ear"),
    **_limbs(toe=None),  # no toes: derived from the ankle and the facing, confidence 0
}

# detection order matters: MediaPipe-33 names are a superset of COCO-17's
SKELETON_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "dwm23": DWM23_TO_CANONICAL,
    "mediapipe33": MEDIAPIPE33_TO_CANONICAL,
    "coco17": COCO17_TO_CANONICAL,
}
SKELETON_JOINTS: dict[str, tuple[str, ...]] = {"mediapipe33": MEDIAPIPE33_JOINTS, "coco17": COCO17_JOINTS}
# source skeletons whose frames need x negated to become right-handed
MIRRORED_SOURCES = {"dwm23"}
# canonical joints every mapping derives itself (never read from the source)
DERIVED_ALWAYS = ("spine",)
# a derived toe sits this fraction of the shin length ahead of the ankle (adult foot ~0.45 shin)
TOE_SHIN_RATIO = 0.45


def _err(msg: str):
    from momu_live import MomuError

    return MomuError(msg)


def detect_skeleton(joint_names: tuple[str, ...]) -> str:
    """Name of the known skeleton whose joint names these are ('canonical', 'dwm23', 'mediapipe33', 'coco17')."""
    names = tuple(str(n).lower() for n in joint_names)
    if names == CANONICAL_JOINTS:
        return "canonical"
    for key, ref in SKELETON_JOINTS.items():  # exact layouts first
        if names == ref:
            return key
    for key, mapping in SKELETON_MAPS.items():
        needed = {s for recipe in mapping.values() for s in recipe}
        if needed <= set(names):
            return key
    raise _err(
        f"unknown skeleton with {len(names)} joints (first: {list(names[:4])}); "
        f"known: canonical, {', '.join(SKELETON_MAPS)}; BVH files: momu_live.models.bvh.load_bvh"
    )


def _unit(v, eps: float = 1e-8):
    import numpy as np

    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, eps)


def facing_direction(joints):
    """Horizontal unit forward vector (..., 3) of canonical joints (..., 18, 3).

    forward = left x up, left = (l_hip - r_hip) + (l_shoulder - r_shoulder) (right-handed, y up).
    """
    import numpy as np

    J = JOINT_INDEX
    left = (joints[..., J["l_hip"], :] - joints[..., J["r_hip"], :]) + (
        joints[..., J["l_shoulder"], :] - joints[..., J["r_shoulder"], :]
    )  # (..., 3)
    fwd = np.cross(left, np.array([0.0, 1.0, 0.0], dtype=left.dtype))  # (..., 3)
    fwd[..., 1] = 0.0
    return _unit(fwd)


def _derive(out, present: set[str]) -> None:
    """Fill canonical joints a source lacks (in place): the spine (pelvis-neck midpoint) and toes."""
    import numpy as np

    J = JOINT_INDEX
    if "spine" not in present:
        out[..., J["spine"], :] = 0.5 * (out[..., J["pelvis"], :] + out[..., J["neck"], :])
    for c in ("l", "r"):
        if f"{c}_toe" in present:
            continue
        ankle = out[..., J[f"{c}_ankle"], :]
        if out.shape[-1] == 3:
            shin = np.linalg.norm(ankle - out[..., J[f"{c}_knee"], :], axis=-1, keepdims=True)  # (..., 1)
            down = np.array([0.0, -1.0, 0.0], dtype=out.dtype)
            d = _unit(0.9 * facing_direction(out) + 0.35 * down)  # (..., 3)
            out[..., J[f"{c}_toe"], :] = ankle + TOE_SHIN_RATIO * shin * d
        else:  # 2-D: no depth to point along; the toe sits on the ankle (confidence 0 says so)
            out[..., J[f"{c}_toe"], :] = ankle


def map_joints_with_confidence(joints, joint_names, source: str | None = None, confidence=None):
    """Map (..., J, C) joints (C = 2 or 3) of a known skeleton to canonical (..., 18, C) float32.

    Returns (joints, confidence (..., 18)): a canonical joint's confidence is the mean of its
    recipe's source confidences (1 when none is given); spine takes min(pelvis, neck); joints the
    source lacks (COCO toes) are derived and get confidence 0.
    """
    import numpy as np

    names = tuple(str(n).lower() for n in joint_names)
    source = source or detect_skeleton(names)
    src = np.asarray(joints, dtype=np.float32)
    if src.ndim < 2 or src.shape[-2] != len(names) or src.shape[-1] not in (2, 3):
        raise _err(f"joints must be [..., J={len(names)}, 2|3] for {len(names)} joint names, got {src.shape}")
    if confidence is None:
        conf_src = np.ones(src.shape[:-1], dtype=np.float32)
    else:
        conf_src = np.asarray(confidence, dtype=np.float32)
        if conf_src.shape != src.shape[:-1]:
            raise _err(f"confidence must be {src.shape[:-1]}, got {conf_src.shape}")
    if source == "canonical":
        return src.copy(), conf_src.copy()
    if source not in SKELETON_MAPS:
        raise _err(f"unknown skeleton '{source}'; known: canonical, {', '.join(SKELETON_MAPS)}")
    mapping = SKELETON_MAPS[source]
    idx = {n: i for i, n in enumerate(names)}
    missing = sorted({s for r in mapping.values() for s in r} - set(idx))
    if missing:
        raise _err(f"joints named as '{source}' lack {missing}")
    out = np.zeros(src.shape[:-2] + (len(CANONICAL_JOINTS), src.shape[-1]), dtype=np.float32)
    conf = np.zeros(src.shape[:-2] + (len(CANONICAL_JOINTS),), dtype=np.float32)
    for j, name in enumerate(CANONICAL_JOINTS):
        if name in mapping and name not in DERIVED_ALWAYS:
            sel = [idx[s] for s in mapping[name]]
            out[..., j, :] = src[..., sel, :].mean(axis=-2)
            conf[..., j] = conf_src[..., sel].mean(axis=-1)
    _derive(out, set(mapping))
    J = JOINT_INDEX
    conf[..., J["spine"]] = np.minimum(conf[..., J["pelvis"]], conf[..., J["neck"]])
    if source in MIRRORED_SOURCES and src.shape[-1] == 3:
        out[..., 0] *= -1.0
    return out, conf


def map_joints(joints, joint_names, source: str | None = None):
    """Map (T, J, C) joints of a known skeleton to canonical (T, 18, C) (float32)."""
    return map_joints_with_confidence(joints, joint_names, source)[0]


def to_canonical(motion):
    """A ``Motion`` of a known skeleton, mapped to the canonical skeleton.

    Confidence: mapped from the source's (or 1), 0 for joints the source lacks; joints2d (image
    coordinates) are mapped without the 3-D mirror.
    """
    from dataclasses import replace

    source = detect_skeleton(motion.joint_names)
    if source == "canonical":
        return motion
    joints, conf = map_joints_with_confidence(motion.joints, motion.joint_names, source, motion.confidence)
    j2d = None
    if motion.joints2d is not None:
        j2d = map_joints_with_confidence(motion.joints2d, motion.joint_names, source)[0]
    keep_conf = motion.confidence is not None or bool((conf < 1).any())
    return replace(
        motion, joints=joints, joint_names=CANONICAL_JOINTS,
        joints2d=j2d, confidence=conf if keep_conf else None, meta={**motion.meta, "mapped_from": source},
    )


def bone_lengths(joints):
    """Bone lengths (..., 17) of canonical joints (..., 18, 3), in the order of ``BONES``."""
    import numpy as np

    p = np.array([b[0] for b in BONES])
    c = np.array([b[1] for b in BONES])
    return np.linalg.norm(joints[..., c, :] - joints[..., p, :], axis=-1)


def mirror(joints):
    """Mirror canonical joints (..., 18, 3) left <-> right (negate x and swap sides)."""
    import numpy as np

    out = np.asarray(joints)[..., list(MIRROR_PERM), :].copy()
    out[..., 0] *= -1.0
    return out


def chirality_score(joints) -> float:
    """Fraction of frames (with a bent knee) where left = up x forward, forward = knee bend direction.

    For canonical joints (T, 18, 3) in a right-handed y-up frame with correct left/right labels this
    is high (0.64-1.0 on the 35 DwM dances, knees bend forwards); near 0 means a mirrored frame or
    swapped sides.  Works without toes (COCO-17 sources).  Returns 0.5 when no knee is bent.
    """
    import numpy as np

    J = JOINT_INDEX
    j = np.asarray(joints, dtype=np.float64)
    fwd = np.zeros(j.shape[:-2] + (3,))
    for c in ("l", "r"):
        f = j[..., J[f"{c}_knee"], :] - 0.5 * (j[..., J[f"{c}_hip"], :] + j[..., J[f"{c}_ankle"], :])
        f[..., 1] = 0.0
        fwd += f
    left = j[..., J["l_hip"], :] - j[..., J["r_hip"], :]
    s = np.sum(np.cross([0.0, 1.0, 0.0], fwd) * left, axis=-1)
    bent = np.linalg.norm(fwd, axis=-1) > 0.03 * max(float(np.median(np.linalg.norm(left, axis=-1))) / 0.2, 1e-6)
    if not bent.any():
        return 0.5
    return float((s[bent] > 0).mean())


# ---------------------------------------------------------------------------------------------
# Rest pose (T-pose) of the canonical rig (models/rig.py, BVH export of a rig): unit direction of
# each joint's offset from its parent, in the rest frame (y up, the dancer faces +z, left on +x).
# Arms along +-x, legs and the spine vertical, feet forward and a little down.  The hips lie exactly
# on the pelvis' x axis and the shoulders on the neck's (the canonical pelvis and neck are the
# mid-points of those pairs).  The root (pelvis) has no offset.
REST_DIRECTIONS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),      # pelvis (root)
    (0.0, 1.0, 0.0),      # spine
    (0.0, 1.0, 0.0),      # neck
    (0.0, 1.0, 0.0),      # head
    (1.0, 0.0, 0.0),      # l_shoulder
    (1.0, 0.0, 0.0),      # l_elbow
    (1.0, 0.0, 0.0),      # l_wrist
    (-1.0, 0.0, 0.0),     # r_shoulder
    (-1.0, 0.0, 0.0),     # r_elbow
    (-1.0, 0.0, 0.0),     # r_wrist
    (1.0, 0.0, 0.0),      # l_hip
    (0.0, -1.0, 0.0),     # l_knee
    (0.0, -1.0, 0.0),     # l_ankle
    (0.0, -0.287348, 0.957826),  # l_toe  (unit (0, -0.3, 1))
    (-1.0, 0.0, 0.0),     # r_hip
    (0.0, -1.0, 0.0),     # r_knee
    (0.0, -1.0, 0.0),     # r_ankle
    (0.0, -0.287348, 0.957826),  # r_toe
)
# joints without children (their rotation moves no joint): head, wrists, toes
LEAF_JOINTS: tuple[int, ...] = tuple(j for j in range(len(CANONICAL_JOINTS)) if j not in CANONICAL_PARENTS)
