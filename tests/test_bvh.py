"""BVH: parser + forward kinematics on hand-checked files, name-based rig mapping, export round trip."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from momu_live import MomuError
from momu_live.models.bvh import export_bvh, load_bvh, parse_bvh, read_bvh, rig_mapping
from momu_live.models.motion import Motion
from momu_live.models.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS, JOINT_INDEX as J, bone_lengths

TINY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 2 0 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 2 3 0 0 0 0 0 0
0 0 0 90 0 0 0 0 90
"""


def test_forward_kinematics_by_hand():
    bvh = parse_bvh(TINY)
    assert bvh.names == ("Hips", "Arm", "Arm_End")
    assert bvh.fps == 30.0
    pos = bvh.positions()  # (2, 3, 3)
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [2, 2, 3], [4, 2, 3]], atol=1e-9)
    # frame 1: root turned 90 deg about z (x -> y); Arm turned a further 90 deg about its y
    np.testing.assert_allclose(pos[1, 1], [0, 1, 0], atol=1e-9)
    expected_end = np.array([0, 1, 0]) + Rotation.from_euler("Z", 90, degrees=True).apply(
        Rotation.from_euler("Y", 90, degrees=True).apply([2, 0, 0]))
    np.testing.assert_allclose(pos[1, 2], expected_end, atol=1e-9)


@pytest.mark.parametrize("bad, msg", [
    ("", "HIERARCHY"),
    (TINY.replace("Frames: 2", "Frames: 3"), "need"),
    (TINY.replace("Zrotation Xrotation Yrotation\n    End", "Zrotation Xrotation Wrotation\n    End"), "unknown channel"),
    (TINY.replace("MOTION", "MOTON"), "MOTION"),
    (TINY.replace("0 0 0 90 0 0 0 0 90", "0 0 0 90 0 0 0 0 nan"), "NaN"),
])
def test_malformed_bvh_is_a_clear_error(bad, msg):
    with pytest.raises(MomuError, match=msg):
        parse_bvh(bad)


def test_missing_file(tmp_path):
    with pytest.raises(MomuError, match="not found"):
        read_bvh(tmp_path / "none.bvh")


# -- a CMU/Mixamo-style rig, written in cm and z-up, must come in as canonical metres y-up ----------

def _rig_text(names: dict, unit: float, zup: bool, frames: np.ndarray) -> str:
    """A small human rig (T-pose offsets in metres, facing +z, y up) with the given names."""
    def v(x, y, z):
        p = np.array([x, y, z]) * unit
        if zup:  # y up -> z up: (x, y, z) -> (x, -z, y)
            p = np.array([p[0], -p[2], p[1]])
        return " ".join(f"{c:.6f}" for c in p)

    leg = lambda s, sx: f"""  JOINT {names[s + 'hip']}
  {{
    OFFSET {v(sx * 0.1, -0.05, 0)}
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT {names[s + 'knee']}
    {{
      OFFSET {v(0, -0.45, 0)}
      CHANNELS 3 Zrotation Xrotation Yrotation
      JOINT {names[s + 'ankle']}
      {{
        OFFSET {v(0, -0.42, 0)}
        CHANNELS 3 Zrotation Xrotation Yrotation
        JOINT {names[s + 'toe']}
        {{
          OFFSET {v(0, -0.05, 0.14)}
          CHANNELS 3 Zrotation Xrotation Yrotation
          End Site
          {{
            OFFSET {v(0, 0, 0.03)}
          }}
        }}
      }}
    }}
  }}
"""
    arm = lambda s, sx: f"""      JOINT {names[s + 'clav']}
      {{
        OFFSET {v(sx * 0.03, 0.02, 0)}
        CHANNELS 3 Zrotation Xrotation Yrotation
        JOINT {names[s + 'shoulder']}
        {{
          OFFSET {v(sx * 0.14, 0, 0)}
          CHANNELS 3 Zrotation Xrotation Yrotation
          JOINT {names[s + 'elbow']}
          {{
            OFFSET {v(sx * 0.28, 0, 0)}
            CHANNELS 3 Zrotation Xrotation Yrotation
            JOINT {names[s + 'wrist']}
            {{
              OFFSET {v(sx * 0.25, 0, 0)}
              CHANNELS 3 Zrotation Xrotation Yrotation
              End Site
              {{
                OFFSET {v(sx * 0.08, 0, 0)}
              }}
            }}
          }}
        }}
      }}
"""
    text = f"""HIERARCHY
ROOT {names['hips']}
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
{leg('l', 1)}{leg('r', -1)}  JOINT {names['spine']}
  {{
    OFFSET {v(0, 0.25, 0)}
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT {names['chest']}
    {{
      OFFSET {v(0, 0.25, 0)}
      CHANNELS 3 Zrotation Xrotation Yrotation
{arm('l', 1)}{arm('r', -1)}      JOINT {names['head']}
      {{
        OFFSET {v(0, 0.2, 0)}
        CHANNELS 3 Zrotation Xrotation Yrotation
        End Site
        {{
          OFFSET {v(0, 0.15, 0)}
        }}
      }}
    }}
  }}
}}
MOTION
Frames: {len(frames)}
Frame Time: 0.0083333
"""
    return text + "\n".join(" ".join(f"{x:.6f}" for x in row) for row in frames) + "\n"


CMU = {"hips": "Hips", "spine": "LowerBack", "chest": "Spine1", "head": "Head",
       **{f"{s}{p}": f"{side}{n}" for s, side in (("l", "Left"), ("r", "Right")) for p, n in (
           ("hip", "UpLeg"), ("knee", "Leg"), ("ankle", "Foot"), ("toe", "ToeBase"), ("clav", "Shoulder"),
           ("shoulder", "Arm"), ("elbow", "ForeArm"), ("wrist", "Hand"))}}
MIXAMO = {k: f"mixamorig:{v}" for k, v in CMU.items()}
SMPL = {"hips": "Pelvis", "spine": "Spine1", "chest": "Spine3", "head": "Head",
        **{f"{s}{p}": f"{side}_{n}" for s, side in (("l", "L"), ("r", "R")) for p, n in (
            ("hip", "Hip"), ("knee", "Knee"), ("ankle", "Ankle"), ("toe", "Foot"), ("clav", "Collar"),
            ("shoulder", "Shoulder"), ("elbow", "Elbow"), ("wrist", "Wrist"))}}


def _channels_frames(T=40, seed=0):
    rng = np.random.default_rng(seed)
    n_joints = 1 + 2 * 4 + 2 + 2 * 4 + 1  # hips, legs, spine, chest, arms (with clavicle), head
    t = np.linspace(0, 2 * np.pi, T)[:, None]
    rot = 15 * np.sin(t * rng.uniform(0.5, 2, (1, n_joints * 3)) + rng.uniform(0, 6, (1, n_joints * 3)))
    root = np.concatenate([0.3 * np.sin(t), 0.95 + 0.02 * np.cos(3 * t), 0.2 * t], axis=1)
    return root, rot


@pytest.mark.parametrize("names, unit, zup, scale", [(CMU, 100.0, False, "auto"), (MIXAMO, 100.0, True, "auto"),
                                                     (SMPL, 1.0, False, "auto"), (CMU, 1 / 0.0254, False, "inch")])
def test_named_rigs_map_to_canonical(tmp_path, names, unit, zup, scale):
    root, rot = _channels_frames()
    r = root * unit
    if zup:
        r = np.stack([r[:, 0], -r[:, 2], r[:, 1]], axis=1)
    path = tmp_path / "rig.bvh"
    path.write_text(_rig_text(names, unit, zup, np.concatenate([r, rot], axis=1)))
    m = load_bvh(path, scale=scale)
    assert m.joint_names == CANONICAL_JOINTS and m.fps == 120.0
    assert m.meta["up"] == ("z" if zup else "y")
    lengths = bone_lengths(m.joints)
    assert (lengths > 0.02).all()
    # metres: shin 0.42 m and thigh 0.45 m of the rig, every frame
    np.testing.assert_allclose(lengths[:, J["l_ankle"] - 1], 0.42, atol=1e-4)
    np.testing.assert_allclose(lengths[:, J["r_knee"] - 1], 0.45, atol=1e-4)
    # the rig faces +z with its left on +x; rotations are small, so that stays true
    assert (m.joints[:, J["l_hip"], 0] > m.joints[:, J["r_hip"], 0]).all()
    assert (m.joints[:, J["l_wrist"], 0] > m.joints[:, J["r_wrist"], 0]).all()
    assert (m.joints[:, J["head"], 1] > m.joints[:, J["neck"], 1]).all()
    assert (m.joints[:, J["l_toe"], 2] > m.joints[:, J["l_ankle"], 2] - 0.05).all()
    # the root channel is the trajectory (plus the fixed offset from the hips joint to mid-hips)
    np.testing.assert_allclose(np.diff(m.joints[:, J["pelvis"], 2]).sum(), root[-1, 2] - root[0, 2], atol=0.05)


def test_unknown_rig_is_a_clear_error():
    with pytest.raises(MomuError, match="not recognised"):
        rig_mapping(("Bone", "Bone.001", "Bone.002"))


# -- export -> import round trip ----------------------------------------------------------------

def _rigid_canonical_motion(T=120, fps=30.0, seed=1) -> Motion:
    """Canonical positions from forward kinematics of a rigid 18-joint rig with random smooth rotations."""
    rng = np.random.default_rng(seed)
    offsets = {
        "spine": (0, 0.25, 0.02), "neck": (0, 0.26, 0), "head": (0, 0.18, 0.03),
        "l_shoulder": (0.17, 0, 0), "r_shoulder": (-0.17, 0, 0), "l_elbow": (0.28, 0, 0), "r_elbow": (-0.28, 0, 0),
        "l_wrist": (0.25, 0, 0), "r_wrist": (-0.25, 0, 0), "l_hip": (0.1, 0, 0), "r_hip": (-0.1, 0, 0),
        "l_knee": (0, -0.45, 0), "r_knee": (0, -0.45, 0), "l_ankle": (0, -0.42, 0), "r_ankle": (0, -0.42, 0),
        "l_toe": (0, -0.05, 0.15), "r_toe": (0, -0.05, 0.15),
    }
    t = np.linspace(0, 4 * np.pi, T)[:, None]
    joints = np.zeros((T, 18, 3))
    G = np.zeros((T, 18, 3, 3))
    for j, p in enumerate(CANONICAL_PARENTS):
        eul = 40 * np.sin(t * rng.uniform(0.3, 1.5, (1, 3)) + rng.uniform(0, 6, (1, 3)))  # (T, 3) degrees
        R = Rotation.from_euler("YXZ", eul, degrees=True).as_matrix()
        if p < 0:
            G[:, j] = R
            joints[:, j] = np.concatenate([np.sin(t), 1.0 + 0.05 * np.cos(2 * t), 0.3 * t], axis=1)
        else:
            G[:, j] = G[:, p] @ R
            joints[:, j] = joints[:, p] + np.einsum("tij,j->ti", G[:, p], offsets[CANONICAL_JOINTS[j]])
    return Motion(joints=joints, fps=fps)


@pytest.mark.parametrize("units", ["m", "cm"])
def test_export_import_round_trip_rigid(tmp_path, units):
    m = _rigid_canonical_motion()
    path = export_bvh(m, tmp_path / "rt.bvh", units=units)
    back = load_bvh(path)
    assert back.n_frames == m.n_frames and back.fps == pytest.approx(m.fps)
    assert back.meta["metres_per_unit"] == (1.0 if units == "m" else 0.01)
    err = np.linalg.norm(back.joints - m.joints, axis=-1)
    assert err.max() < 2e-5, err.max()  # 20 um (measured ~1 um): only the 6-decimal text rounds


def test_export_stretchy_capture(tmp_path):
    """Capture with varying bone lengths: the rigid rig stays within cm, exact=True comes back exactly."""
    m = _rigid_canonical_motion(seed=2)
    rng = np.random.default_rng(3)
    noisy = Motion(joints=m.joints + rng.normal(0, 0.01, m.joints.shape), fps=m.fps)  # 1 cm marker noise
    rigid = load_bvh(export_bvh(noisy, tmp_path / "rigid.bvh"))
    err = np.linalg.norm(rigid.joints - noisy.joints, axis=-1)
    assert np.median(err) < 0.03 and err.max() < 0.12
    exact = load_bvh(export_bvh(noisy, tmp_path / "exact.bvh", exact=True))
    assert np.abs(exact.joints - noisy.joints).max() < 1e-4


def test_export_text_is_a_rig(tmp_path):
    text = export_bvh(_rigid_canonical_motion(T=3), tmp_path / "r.bvh").read_text()
    bvh = parse_bvh(text)
    assert [j.name for j in bvh.joints if not j.end_site] == list(CANONICAL_JOINTS)
    assert sum(j.end_site for j in bvh.joints) == 5  # head, wrists, toes
    assert bvh.joints[0].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert all(len(j.channels) == 3 for j in bvh.joints[1:] if not j.end_site)
