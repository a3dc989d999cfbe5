"""Skeleton mappings into the canonical 18 joints: MediaPipe-33, COCO-17, DwM-23 (mirrored), mirroring."""
from __future__ import annotations

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.models.motion import Motion, synthetic_dance
from momu_live.models.skeleton import (
    BONES, CANONICAL_JOINTS, CANONICAL_PARENTS, COCO17_JOINTS, FEET, JOINT_INDEX as J, MEDIAPIPE33_JOINTS,
    MIRROR_PERM, bone_lengths, chirality_score, detect_skeleton, facing_direction, map_joints,
    map_joints_with_confidence, mirror, to_canonical,
)


@pytest.fixture(scope="module")
def dance():
    return synthetic_dance(seconds=4.0, fps=30.0, seed=3)


def _head_points(j):
    """Synthetic nose/ears/eyes around the canonical head centre, facing +z-ish via the body's facing."""
    f = facing_direction(j)  # (T, 3)
    left = np.cross([0.0, 1.0, 0.0], f)
    h = j[:, J["head"]]
    return {
        "nose": h + 0.1 * f, "left_ear": h + 0.07 * left - 0.05 * f, "right_ear": h - 0.07 * left - 0.05 * f,
        "left_eye": h + 0.03 * left + 0.08 * f + [0, 0.03, 0], "right_eye": h - 0.03 * left + 0.08 * f + [0, 0.03, 0],
    }


def _to_source(j, names):
    """Fill a source skeleton's arrays from canonical joints (anatomical equivalents)."""
    pts = _head_points(j)
    for c, s in (("l", "left"), ("r", "right")):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
            pts[f"{s}_{part}"] = j[:, J[f"{c}_{part}"]]
        pts[f"{s}_foot_index"] = j[:, J[f"{c}_toe"]]
        pts[f"{s}_heel"] = j[:, J[f"{c}_ankle"]] - [0, 0.05, 0]
        for k in ("pinky", "index", "thumb"):
            pts[f"{s}_{k}"] = j[:, J[f"{c}_wrist"]] * 1.01
        for k in ("eye_inner", "eye_outer"):
            pts[f"{s}_{k}"] = pts[f"{s}_eye"]
    pts["mouth_left"] = pts["mouth_right"] = pts["nose"] - [0, 0.04, 0]
    return np.stack([pts[n] for n in names], axis=1).astype(np.float32)


def test_canonical_tables_consistent():
    assert len(CANONICAL_JOINTS) == len(CANONICAL_PARENTS) == 18
    assert len(BONES) == 17
    assert sorted(MIRROR_PERM) == list(range(18))
    assert CANONICAL_JOINTS[MIRROR_PERM[J["l_wrist"]]] == "r_wrist"
    assert set(FEET) == {J["l_ankle"], J["l_toe"], J["r_ankle"], J["r_toe"]}


def test_detect_skeleton():
    assert detect_skeleton(CANONICAL_JOINTS) == "canonical"
    assert detect_skeleton(MEDIAPIPE33_JOINTS) == "mediapipe33"
    assert detect_skeleton(COCO17_JOINTS) == "coco17"
    assert detect_skeleton(tuple(n.upper() for n in COCO17_JOINTS)) == "coco17"
    with pytest.raises(MomuError, match="unknown skeleton"):
        detect_skeleton(("a", "b", "c"))


def test_mediapipe33_mapping(dance):
    j = dance.joints
    src = _to_source(j, MEDIAPIPE33_JOINTS)
    out, conf = map_joints_with_confidence(src, MEDIAPIPE33_JOINTS)
    for name in ("pelvis", "neck", "l_wrist", "r_knee", "l_toe", "r_ankle"):
        np.testing.assert_allclose(out[:, J[name]], j[:, J[name]], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(out[:, J["spine"]], 0.5 * (j[:, J["pelvis"]] + j[:, J["neck"]]), atol=1e-5)
    # head = mean(nose, ears): 0.1 f + 2 * (-0.05 f) = 0 -> exactly the head centre here
    np.testing.assert_allclose(out[:, J["head"]], j[:, J["head"]], atol=1e-5)
    assert (conf == 1).all()
    assert (bone_lengths(out) > 0).all()
    assert chirality_score(out) > 0.9


def test_coco17_mapping_derives_toes(dance):
    j = dance.joints
    src = _to_source(j, COCO17_JOINTS)
    conf_in = np.full(src.shape[:2], 0.8, np.float32)
    out, conf = map_joints_with_confidence(src, COCO17_JOINTS, confidence=conf_in)
    np.testing.assert_allclose(out[:, J["l_knee"]], j[:, J["l_knee"]], atol=1e-5)
    assert (conf[:, [J["l_toe"], J["r_toe"]]] == 0).all()
    np.testing.assert_allclose(conf[:, J["l_knee"]], 0.8)
    # derived toes: ahead of the ankle along the facing, below it, a foot length away
    for c in "lr":
        d = out[:, J[f"{c}_toe"]] - out[:, J[f"{c}_ankle"]]
        assert (np.sum(d * facing_direction(out), -1) > 0.1).all()
        assert (d[:, 1] < 0).all()
        assert 0.12 < np.linalg.norm(d, axis=-1).mean() < 0.25
    # 2-D COCO (AIST++/LORIS keypoints): toes sit on the ankles, confidence 0
    out2, conf2 = map_joints_with_confidence(src[..., :2], COCO17_JOINTS)
    np.testing.assert_array_equal(out2[:, J["l_toe"]], out2[:, J["l_ankle"]])
    assert out2.shape == (len(j), 18, 2) and (conf2[:, J["r_toe"]] == 0).all()


def test_dwm23_is_mirrored_back(dance):
    """DwM frames are left-handed: a mirrored dancer with DwM names comes back right-handed."""
    names = ("head_left", "head_right", "spine", "left_shoulder", "left_elbow", "left_forearm", "left_wrist",
             "left_hip", "left_knee", "left_ankle", "left_heel", "left_toe", "right_shoulder", "right_elbow",
             "right_wrist", "right_hand", "right_hip", "right_knee", "right_ankle", "right_heel", "right_toe",
             "right_wrist_2", "left_wrist_2")
    j = dance.joints
    pts = {}
    for c, s in (("l", "left"), ("r", "right")):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "toe"):
            pts[f"{s}_{part}"] = j[:, J[f"{c}_{part}"]]
        pts[f"{s}_heel"] = j[:, J[f"{c}_ankle"]] - [0, 0.05, 0.05]
    left = np.cross([0.0, 1.0, 0.0], facing_direction(j))
    pts["head_left"], pts["head_right"] = j[:, J["head"]] + 0.05 * left, j[:, J["head"]] - 0.05 * left
    pts["spine"] = j[:, J["spine"]]
    pts["left_forearm"] = pts["left_wrist"]
    pts["right_hand"] = pts["right_wrist_2"] = pts["left_wrist_2"] = pts["right_wrist"]
    src = np.stack([pts[n] for n in names], 1)
    src[..., 0] *= -1  # the recording's mirror frame
    m = to_canonical(Motion(joints=src, fps=30.0, joint_names=names))
    assert m.meta["mapped_from"] == "dwm23" and m.confidence is None
    np.testing.assert_allclose(m.joints[:, J["l_hip"]], j[:, J["l_hip"]], atol=1e-5)
    np.testing.assert_allclose(m.joints[:, J["head"]], j[:, J["head"]], atol=1e-5)
    assert chirality_score(m.joints) > 0.9


def test_left_right_sides_after_mapping(dance):
    """At frame 0 the dancer faces +z: every left joint has larger x than its right twin."""
    out = map_joints(_to_source(dance.joints[:1], MEDIAPIPE33_JOINTS), MEDIAPIPE33_JOINTS)
    for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "toe"):
        assert out[0, J[f"l_{part}"], 0] > out[0, J[f"r_{part}"], 0], part
    assert out[0, J["head"], 1] > out[0, J["neck"], 1] > out[0, J["pelvis"], 1] > out[0, J["l_ankle"], 1]


def test_mirror_flips_chirality(dance):
    m = mirror(dance.joints)
    np.testing.assert_allclose(bone_lengths(m), bone_lengths(dance.joints), atol=1e-6)
    assert chirality_score(dance.joints) > 0.9 and chirality_score(m) > 0.9  # mirror + swap stays anatomical
    swapped_only = dance.joints[:, list(MIRROR_PERM)]
    assert chirality_score(swapped_only) < 0.1  # swapping sides alone is the mirrored-frame error
    np.testing.assert_allclose(mirror(m), dance.joints, atol=1e-6)


def test_bad_shapes():
    with pytest.raises(MomuError, match="joints must be"):
        map_joints(np.zeros((5, 17, 4)), COCO17_JOINTS)
    with pytest.raises(MomuError, match="joints must be"):
        map_joints(np.zeros((5, 16, 3)), COCO17_JOINTS)
    with pytest.raises(MomuError, match="confidence"):
        map_joints_with_confidence(np.zeros((5, 17, 3)), COCO17_JOINTS, confidence=np.ones((5, 18)))
