"""The rig representation (models/rig.py): 6-D rotations, FK, features, IK fit on real data, BVH and quaternions out."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from _rigdata import BONES_M, random_rig
from momu_live import MomuError
from momu_live.models import rig as R
from momu_live.models.bvh import export_rig_bvh, load_bvh
from momu_live.models.skeleton import BONES, CANONICAL_JOINTS, JOINT_INDEX as J, LEAF_JOINTS

FPS = 25.0


def mpjpe_mm(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1).mean() * 1000)


# ------------------------------------------------------------------------------------------------ rotations, FK


def test_rot6d_round_trip_and_gram_schmidt():
    mats = Rotation.random(50, random_state=1).as_matrix()  # (50, 3, 3)
    six = R.matrix_to_rot6d(torch.from_numpy(mats))
    np.testing.assert_allclose(R.rot6d_to_matrix(six).numpy(), mats, atol=1e-12)
    np.testing.assert_allclose(R.rot6d_to_matrix_np(R.matrix_to_rot6d_np(mats)), mats, atol=1e-12)
    raw = torch.randn(50, 6, dtype=torch.float64)  # any network output is a rotation after Gram-Schmidt
    M = R.rot6d_to_matrix(raw)
    np.testing.assert_allclose((M.transpose(-1, -2) @ M).numpy(), np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.det(M).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(R.rot6d_to_matrix_np(raw.numpy()), M.numpy(), atol=1e-12)


def test_rest_pose_is_the_t_pose():
    rest = np.tile(np.array(R._IDENTITY6), (1, 18, 1))
    pos = R.fk_np(rest, np.array([[0.0, 1.0, 0.0]]), R.rest_offsets(BONES_M))[0]  # (J, 3)
    assert pos[J["l_wrist"], 0] > 0.5 and pos[J["r_wrist"], 0] < -0.5  # left on +x
    assert pos[J["head"], 1] > pos[J["neck"], 1] > pos[J["pelvis"], 1] > pos[J["l_ankle"], 1]
    assert pos[J["l_toe"], 2] > pos[J["l_ankle"], 2]  # feet point forward (+z)


def test_torch_fk_matches_numpy_batched_and_differentiable():
    rigs = [random_rig(20, seed=s) for s in (0, 1)]
    r6 = torch.tensor(np.stack([r.rot6d for r in rigs]), requires_grad=True)  # (2, 20, J, 6)
    root = torch.tensor(np.stack([r.root for r in rigs]))  # (2, 20, 3)
    bones = torch.tensor(np.stack([BONES_M, BONES_M * 1.1]), requires_grad=True)  # (2, 17)
    pos = R.fk(r6, root, R.rest_offsets_torch(bones))  # (2, 20, J, 3)
    assert pos.shape == (2, 20, 18, 3)
    np.testing.assert_allclose(pos[0].detach().numpy(), rigs[0].positions(), atol=1e-12)
    np.testing.assert_allclose(pos[1].detach().numpy(), R.fk_np(rigs[1].rot6d, rigs[1].root, R.rest_offsets(BONES_M * 1.1)), atol=1e-12)
    pos.square().sum().backward()
    assert torch.isfinite(r6.grad).all() and r6.grad.abs().sum() > 0 and torch.isfinite(bones.grad).all()
    # offsets (J, 3) broadcast over the batch as well
    np.testing.assert_allclose(R.fk(r6, root, torch.tensor(R.rest_offsets(BONES_M)))[0].detach().numpy(), pos[0].detach().numpy(), atol=1e-12)


def test_bone_lengths_exact_by_construction():
    rig = random_rig(40)
    raw = torch.randn(1, 40, 18, 6, dtype=torch.float64) * 3  # arbitrary (non-orthonormal) 6-D, as a network gives
    pos = R.fk(raw, torch.tensor(rig.root)[None], torch.tensor(rig.offsets))[0].numpy()
    bl = R.bone_lengths_of(pos)  # (T, 17)
    np.testing.assert_allclose(bl, np.broadcast_to(BONES_M, bl.shape), atol=1e-12)


# ------------------------------------------------------------------------------------------------ features


def test_feature_layout():
    assert R.N_FEATURES == 86
    lay = R.FEATURE_LAYOUT
    assert [lay[k].stop - lay[k].start for k in ("root_vel_xz", "root_height", "heading_vel", "rot6d", "contacts")] == [2, 1, 1, 78, 4]
    assert len(R.ROTATED_JOINTS) == 13 and not set(R.ROTATED_JOINTS) & set(LEAF_JOINTS)


def test_features_exact_inverse():
    rig = random_rig(80, seed=3)
    rig.contacts = R.foot_contacts(rig.positions(), rig.fps)
    f = R.to_features(rig)
    assert f.shape == (80, R.N_FEATURES) and f.dtype == np.float32
    back = R.from_features(f, rig.bones, fps=rig.fps, start=R.rig_start(rig))
    np.testing.assert_allclose(back.positions(), rig.positions(), atol=2e-5)
    np.testing.assert_allclose(back.root, rig.root, atol=2e-5)
    np.testing.assert_allclose(back.rot6d[:, list(R.ROTATED_JOINTS)], rig.rot6d[:, list(R.ROTATED_JOINTS)], atol=1e-5)
    np.testing.assert_array_equal(back.contacts, rig.contacts)
    np.testing.assert_allclose(R.to_features(back), f, atol=1e-5)  # features -> rig -> features
    # float64 features invert to machine precision
    f64 = R.encode_features(torch.tensor(rig.rot6d)[None], torch.tensor(rig.root)[None], None, rig.fps)
    st = torch.tensor([R.rig_start(rig)], dtype=torch.float64)
    r6, root, _ = R.decode_features(f64, rig.fps, st)
    np.testing.assert_allclose(root[0].numpy(), rig.root, atol=1e-10)
    np.testing.assert_allclose(R.fk_np(r6[0].numpy(), root[0].numpy(), rig.offsets), rig.positions(), atol=1e-10)


def test_features_are_in_the_facing_frame():
    """Walking forward gives +z root velocity whatever the heading; turning left gives + angular velocity."""
    T = 30
    theta = 0.7 + 0.5 * np.arange(T) / FPS  # turning at 0.5 rad/s
    mats = np.broadcast_to(np.eye(3), (T, 18, 3, 3)).copy()
    mats[:, 0] = Rotation.from_rotvec(np.outer(theta, [0, 1, 0])).as_matrix()
    fwd = np.stack([np.sin(theta), np.zeros(T), np.cos(theta)], -1)
    root = np.cumsum(fwd * 1.2 / FPS, axis=0) + [0, 0.9, 0]  # 1.2 m/s forward
    rig = R.RigMotion(rot6d=R.matrix_to_rot6d_np(mats), root=root, bones=BONES_M, fps=FPS)
    f = R.to_features(rig)
    np.testing.assert_allclose(f[1:, 0], 0.0, atol=0.02)
    np.testing.assert_allclose(f[1:, 1], 1.2, atol=0.02)
    np.testing.assert_allclose(f[:, 2], 0.9, atol=1e-6)
    np.testing.assert_allclose(f[:, 3], 0.5, atol=1e-4)
    np.testing.assert_allclose(f[:, 4:10], np.tile(R._IDENTITY6, (T, 1)), atol=1e-6)  # heading removed from the root
    # same dance, other start heading and place: identical features
    turn = Rotation.from_rotvec([0, 2.0, 0]).as_matrix()
    mats2 = mats.copy()
    mats2[:, 0] = turn @ mats[:, 0]
    rig2 = R.RigMotion(rot6d=R.matrix_to_rot6d_np(mats2), root=root @ turn.T + [3, 0, -1], bones=BONES_M, fps=FPS)
    np.testing.assert_allclose(R.to_features(rig2), f, atol=1e-5)


def test_foot_contacts_height_and_speed():
    rig = random_rig(100, seed=5)
    pos = rig.positions()
    pos[:, :, 1] += 0.3  # all feet off the floor ...
    pos[:50, J["l_toe"]] = [0.1, 0.0, 0.2]  # ... but the left toe planted for 2 s
    pos[50:, J["l_toe"], 1] = 0.0  # then on the floor height but sliding fast
    pos[50:, J["l_toe"], 0] = np.linspace(0, 3, 50)
    c = R.foot_contacts(pos, FPS)
    assert c.shape == (100, 4)
    assert c[2:48, 1].all() and not c[52:, 1].any()


def test_normalisation_round_trip():
    feats = [R.to_features(random_rig(50, seed=s)) for s in range(3)]
    st = R.RigStats.fit(feats)
    z = st.normalize(feats[0])
    np.testing.assert_allclose(st.denormalize(z), feats[0], atol=1e-5)
    con = R.FEATURE_LAYOUT["contacts"]
    np.testing.assert_array_equal(z[:, con], feats[0][:, con])
    assert abs(np.concatenate([st.normalize(f) for f in feats])[:, :4].mean()) < 1e-4
    zt = st.normalize(torch.tensor(feats[0]))
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-6)
    st2 = R.RigStats.from_dict(json.loads(json.dumps(st.to_dict())))
    np.testing.assert_array_equal(st2.std, st.std)


def test_features_to_positions_differentiable():
    rig = random_rig(30)
    f = torch.tensor(R.to_features(rig), dtype=torch.float64)[None].requires_grad_(True)
    pos = R.features_to_positions(f, torch.tensor(rig.offsets)[None], rig.fps, torch.tensor([R.rig_start(rig)], dtype=torch.float64))
    np.testing.assert_allclose(pos[0].detach().numpy(), rig.positions(), atol=2e-5)
    pos.sum().backward()
    assert torch.isfinite(f.grad).all()


# ------------------------------------------------------------------------------------------------ IK


def test_analytic_ik_is_exact_on_rig_motion():
    rig = random_rig(60, seed=7)
    X = rig.positions()
    fit = R.fit_rig(X, FPS, ik=R.IkConfig(iters=0))
    assert fit.meta["fit"]["refined"]["mpjpe_mm"] < 1e-6
    np.testing.assert_allclose(fit.bones, BONES_M, atol=1e-12)
    np.testing.assert_allclose(fit.positions(), X, atol=1e-9)
    # the pelvis and neck orientations are fully determined by the positions: recovered exactly
    G, G_fit = rig.global_matrices(), fit.global_matrices()
    np.testing.assert_allclose(G_fit[:, [J["pelvis"], J["neck"]]], G[:, [J["pelvis"], J["neck"]]], atol=1e-9)


def test_refined_ik_reduces_error_keeps_bones_constant():
    rig = random_rig(60, seed=8)
    rng = np.random.default_rng(0)
    X = rig.positions() * (1 + 0.03 * rng.standard_normal((60, 18, 1)))  # bones breathing +-3 %
    X += 0.004 * rng.standard_normal(X.shape)
    fit = R.fit_rig(X, FPS, ik=R.IkConfig(iters=60))
    rep = fit.meta["fit"]
    assert rep["refined"]["mpjpe_mm"] < rep["analytic"]["mpjpe_mm"]
    bl = R.bone_lengths_of(fit.positions())
    assert bl.std(axis=0).max() < 1e-9
    np.testing.assert_allclose(bl[0], fit.bones, atol=1e-9)


def test_fit_rig_rejects_bad_input():
    with pytest.raises(MomuError, match="canonical joints"):
        R.fit_rig(np.zeros((5, 17, 3)), FPS)
    bad = random_rig(5).positions()
    bad[2, 3, 0] = np.nan
    with pytest.raises(MomuError, match="NaN"):
        R.fit_rig(bad, FPS)
    with pytest.raises(MomuError, match="86"):
        R.from_features(np.zeros((4, 80)), BONES_M)


# ------------------------------------------------------------------------------------------------ rotations out


def test_bvh_from_rig_loads_back_to_the_same_joints(tmp_path):
    rig = random_rig(40, seed=9)
    for units in ("m", "cm"):
        path = export_rig_bvh(rig, tmp_path / f"rig_{units}.bvh", units=units)
        m = load_bvh(path)
        assert m.joint_names == CANONICAL_JOINTS and m.fps == pytest.approx(FPS)
        assert np.abs(m.joints - rig.positions()).max() < 1e-3  # within 1 mm (measured ~1e-6 m)
    text = path.read_text()
    assert "CHANNELS 3 Zrotation Xrotation Yrotation" in text and text.count("Xposition") == 1  # rotations only


def test_quaternions_wxyz_unit_and_continuous():
    rig = random_rig(80, seed=10)
    q = R.rig_quaternions(rig)
    assert q.shape == (80, 18, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-9)
    assert (np.sum(q[1:] * q[:-1], axis=-1) > 0).all()  # no sign flips between frames
    assert (q[0, :, 0] >= 0).all()
    back = Rotation.from_quat(q.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(80, 18, 3, 3)
    np.testing.assert_allclose(back, rig.local_matrices(), atol=1e-9)
    # a 90 deg turn about y is (cos 45, 0, sin 45, 0)
    mats = np.broadcast_to(np.eye(3), (1, 18, 3, 3)).copy()
    mats[0, 0] = Rotation.from_rotvec([0, np.pi / 2, 0]).as_matrix()
    turn = R.RigMotion(rot6d=R.matrix_to_rot6d_np(mats), root=np.zeros((1, 3)), bones=BONES_M, fps=FPS)
    np.testing.assert_allclose(R.rig_quaternions(turn)[0, 0], [np.sqrt(0.5), 0, np.sqrt(0.5), 0], atol=1e-12)
    g = R.rig_quaternions(rig, space="global")
    back = Rotation.from_quat(g.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(80, 18, 3, 3)
    np.testing.assert_allclose(back, rig.global_matrices(), atol=1e-9)


def _quat_matrices(q):
    """(..., 4) w x y z -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q)
    return Rotation.from_quat(q.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(q.shape[:-1] + (3, 3))


def _stretchy_rig_frames(T=40, seed=12):
    """Rig poses whose bone lengths change every frame (+-15 %): each frame a rig of its own."""
    rig = random_rig(T, seed=seed)
    scale = 1 + 0.15 * np.sin(np.arange(T)[:, None] * 0.7 + np.arange(17))  # (T, 17)
    X = np.stack([R.fk_np(rig.rot6d[t:t + 1], rig.root[t:t + 1], R.rest_offsets(BONES_M * scale[t]))[0]
                  for t in range(T)])  # (T, J, 3)
    return X


def test_frame_quaternions_rebuild_each_frame_by_fk():
    """Per-frame quaternions (no state, no fit over time): FK with the rest offsets of the frame's own bone
    lengths rebuilds the frame (analytic IK is exact on poses a rig can make), unit, leaves the identity."""
    X = _stretchy_rig_frames()
    q = R.frame_quaternions(X)  # (T, J, 4) batched
    assert q.shape == (40, 18, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(q[:, list(LEAF_JOINTS)], np.broadcast_to([1.0, 0, 0, 0], (40, len(LEAF_JOINTS), 4)),
                               atol=1e-12)
    assert (np.sum(q[1:] * q[:-1], axis=-1) > 0).all() and (q[0, :, 0] >= 0).all()  # sign-continuous
    for t in (0, 17, 39):
        one = R.frame_quaternions(X[t])  # (1, J, 4): one frame alone, as a stream sends it
        np.testing.assert_allclose(np.abs(np.sum(one[0] * q[t], -1)), 1.0, atol=1e-12)  # same rotations
        r6 = R.matrix_to_rot6d_np(_quat_matrices(one))  # (1, J, 6)
        pos = R.fk_np(r6, X[t:t + 1, 0], R.rest_offsets(R.bone_lengths_of(X[t:t + 1])[0]))[0]  # (J, 3)
        np.testing.assert_allclose(pos, X[t], atol=1e-9)
    # every bone direction of every frame (FK with any positive lengths: the rotations carry directions)
    P = R.fk_np(R.matrix_to_rot6d_np(_quat_matrices(q)), X[:, 0], R.rest_offsets(BONES_M))  # (T, J, 3)
    for p, c in BONES:
        d_in = (X[:, c] - X[:, p]) / np.linalg.norm(X[:, c] - X[:, p], axis=-1, keepdims=True)
        d_fk = (P[:, c] - P[:, p]) / np.linalg.norm(P[:, c] - P[:, p], axis=-1, keepdims=True)
        np.testing.assert_allclose(d_fk, d_in, atol=1e-9)


def test_frame_quaternions_yaw_composes_with_the_root_only():
    X = _stretchy_rig_frames(10, seed=13)
    yaw = Rotation.from_rotvec([0.0, 0.8, 0.0])
    Xr = X @ yaw.as_matrix().T + [1.0, 0.0, -2.0]  # the same dance turned 0.8 rad about y and moved
    q, qr = R.frame_quaternions(X), R.frame_quaternions(Xr)
    expect = (yaw * Rotation.from_quat(q[:, 0][:, [1, 2, 3, 0]])).as_quat()[:, [3, 0, 1, 2]]  # (T, 4) yaw (x) q_root
    np.testing.assert_allclose(np.abs(np.sum(qr[:, 0] * expect, -1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(qr[:, 1:] * q[:, 1:], -1)), 1.0, atol=1e-12)  # local: unchanged


def test_frame_quaternions_prev_signs_bad_input_and_degenerate_frames():
    X = _stretchy_rig_frames(5, seed=14)
    q = R.frame_quaternions(X)
    flipped = R.frame_quaternions(X[3], prev=-q[2])  # a stream whose last frame went out with the other sign
    assert (np.sum(flipped[0] * -q[2], -1) > 0).all()
    np.testing.assert_allclose(flipped[0], -q[3], atol=1e-12)
    np.testing.assert_allclose(R.frame_quaternions(np.zeros((18, 3)))[0], np.tile([1.0, 0, 0, 0], (18, 1)))
    with pytest.raises(MomuError, match="canonical joints"):
        R.frame_quaternions(np.zeros((17, 3)))
    bad = X[0].copy()
    bad[4, 1] = np.nan
    with pytest.raises(MomuError, match="NaN"):
        R.frame_quaternions(bad)
    with pytest.raises(MomuError, match="bones"):
        R.frame_quaternions(X[0], bones=np.zeros(17))


def test_save_load(tmp_path):
    rig = random_rig(30, seed=11)
    rig.meta = {"id": "x"}
    rig.save(tmp_path / "r.npz")
    back = R.load_rig(tmp_path / "r.npz")
    np.testing.assert_allclose(back.positions(), rig.positions(), atol=1e-4)
    assert back.meta == {"id": "x"} and back.fps == FPS
    with pytest.raises(MomuError, match="not found"):
        R.load_rig(tmp_path / "missing.npz")


def test_rig_imports_without_librosa_or_mediapipe():
    code = ("import sys\nfor m in ('librosa', 'mediapipe', 'pythonosc', 'mido'): sys.modules[m] = None\n"
            "import momu_live.models.rig, momu_live.models.bvh\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ real data


DWM_FRAMES = 240  # ~11 s of each validation dance at the model rate


@pytest.fixture(scope="module")
def dwm_val_joints(dwm_shared):
    """First DWM_FRAMES model-rate frames of each DwM validation dance (canonical joints)."""
    from momu_live.models.datasets import DWM_VALIDATION
    from momu_live.models.motion import Motion
    from momu_live.models.skeleton import to_canonical

    names = json.loads((dwm_shared / "skeleton.json").read_text())["joint_names"]
    out = {}
    for did in DWM_VALIDATION:
        fps = json.loads((dwm_shared / did / "meta.json").read_text())["fps"]
        m = Motion(joints=np.load(dwm_shared / did / "motion.npy"), fps=fps, joint_names=tuple(names))
        m = to_canonical(m).resample(float(R.RigConfig().fps))
        out[did] = m.joints[:DWM_FRAMES]
    return out


def test_dwm_validation_round_trip(dwm_val_joints):
    """positions -> IK -> rig -> features (float32) -> rig -> FK -> positions, on the 5 DwM validation dances."""
    errs = {}
    for did, X in dwm_val_joints.items():
        rig = R.fit_rig(X, float(R.RigConfig().fps))
        back = R.from_features(R.to_features(rig), rig.bones, fps=rig.fps, start=R.rig_start(rig))
        pos = back.positions()
        errs[did] = mpjpe_mm(pos, X)
        assert abs(errs[did] - rig.meta["fit"]["refined"]["mpjpe_mm"]) < 0.1  # the features lose nothing
        bl = R.bone_lengths_of(pos)
        assert bl.std(axis=0).max() < 1e-6  # exactly constant (float32 features)
        assert rig.meta["fit"]["refined"]["mpjpe_mm"] < rig.meta["fit"]["analytic"]["mpjpe_mm"]
    print("DwM validation MPJPE (mm):", {k: round(v, 1) for k, v in errs.items()})
    # DANCE_R_9 / C_6: their own bone lengths vary (thighs jump 0.44 <-> 0.56 m); a rigid rig cannot follow
    assert max(errs.values()) < 18.0, errs
    assert np.mean(list(errs.values())) < 10.0, errs


def test_mediapipe_video_excerpt(dancer_video, tmp_path, momu_cli):
    from momu_live.models.motion import load_motion

    out = tmp_path / "dancer.npz"
    r = momu_cli("pose", "--video", str(dancer_video), "--out", str(out), "--seconds", "3", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    m = load_motion(out)
    rig = R.rig_from_motion(m, resample=False)
    rep = rig.meta["fit"]["refined"]
    print(f"video excerpt ({m.n_frames} frames): MPJPE {rep['mpjpe_mm']:.1f} mm (analytic {rig.meta['fit']['analytic']['mpjpe_mm']:.1f})")
    assert rep["mpjpe_mm"] < 12.0, rep
    assert R.bone_lengths_of(rig.positions()).std(axis=0).max() < 1e-9
    # thighs and shins of a real adult
    assert 0.3 < rig.bones[BONES.index((J["l_hip"], J["l_knee"]))] < 0.55


def test_data_rig_command(tmp_path, momu_cli):
    """`momu data rig` on a tiny DwM-format folder made from rig motion (fit at the model rate, files + index)."""
    from momu_live.models.skeleton import DWM23_TO_CANONICAL

    names = ["head_left", "head_right", "spine", "left_shoulder", "left_elbow", "left_forearm", "left_wrist", "left_hip",
             "left_knee", "left_ankle", "left_heel", "left_toe", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
             "right_hip", "right_knee", "right_ankle", "right_heel", "right_toe", "right_wrist_2", "left_wrist_2"]
    data = tmp_path / "dwm"
    data.mkdir()
    (data / "skeleton.json").write_text(json.dumps({"joint_names": names}))
    (data / "index.csv").write_text("dance_id,genre\nDANCE_W_7,waltz\nDANCE_X_1,waltz\n")
    for k, did in enumerate(("DANCE_W_7", "DANCE_X_1")):
        X = random_rig(75, seed=20 + k, straight_spine=True).positions()  # canonical (T, 18, 3)
        X[..., 0] *= -1  # DwM frames are mirrored
        src = np.zeros((75, 23, 3))
        for cj, recipe in DWM23_TO_CANONICAL.items():
            for s in recipe:
                src[:, names.index(s)] = X[:, J[cj]]
        (data / did).mkdir()
        np.save(data / did / "motion.npy", src.astype(np.float32))
        (data / did / "meta.json").write_text(json.dumps({"fps": 25, "genre": "waltz"}))
    out = tmp_path / "rig"
    r = momu_cli("data", "rig", "--data", str(data), "--out", str(out), "--iters", "20", "--no-progress",
                 "--plot", str(tmp_path / "fit.png"))
    assert r.returncode == 0, r.stderr[-2000:]
    index = json.loads((out / "index.json").read_text())
    assert [d["split"] for d in index["dances"]] == ["val", "train"] and len(index["stats"]["mean"]) == R.N_FEATURES
    rig = R.load_rig(out / "DANCE_X_1.npz")
    assert rig.fps == pytest.approx(float(R.RigConfig().fps)) and rig.n_frames == 64
    assert all(d["mpjpe_mm"] < 5 for d in index["dances"])
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    # --mirror: the training dance's mirror image too (left <-> right), the validation dance left alone
    r = momu_cli("data", "rig", "--data", str(data), "--out", str(tmp_path / "rig_m"), "--iters", "20", "--mirror",
                 "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    index = json.loads((tmp_path / "rig_m" / "index.json").read_text())
    assert [d["id"] for d in index["dances"]] == ["DANCE_W_7", "DANCE_X_1", "DANCE_X_1_mirror"]
    assert index["dances"][2]["mirror_of"] == "DANCE_X_1" and index["dances"][2]["split"] == "train"
    from momu_live.models.skeleton import mirror

    m = R.load_rig(tmp_path / "rig_m" / "DANCE_X_1_mirror.npz").positions()
    assert np.abs(m - mirror(rig.positions())).max() < 0.01  # the fit of the mirror image is the mirror of the fit
