"""Motion format, resampling bookkeeping, normalisation inverses and virtual-camera projection."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.models.motion import Motion, load_motion, synthetic_dance
from momu_live.models.normalize import (
    body_scale, denormalize, facing_yaw, integrate_root, join_root, normalize, root_velocity, rotate_y, split_root,
)
from momu_live.models.projection import VirtualCamera, camera_for_motion, project, project_motion, random_cameras, unproject
from momu_live.models.skeleton import CANONICAL_JOINTS, JOINT_INDEX as J, bone_lengths
from momu_live.models.timebase import DEFAULT_TIMEBASE


@pytest.fixture(scope="module")
def dance():
    return synthetic_dance(seconds=6.0, fps=30.0, seed=1)


# -- file format ---------------------------------------------------------------------------------

def test_save_load_round_trip_with_meta(tmp_path, dance):
    m = Motion(joints=dance.joints, fps=30.0, joints2d=dance.joints[..., :2] * 0.1 + 0.5,
               confidence=np.ones(dance.joints.shape[:2]), meta={"gaps": [{"start_frame": 3}], "fps_in": np.float32(25)})
    path = m.save(tmp_path / "m.npz")
    back = load_motion(path)
    np.testing.assert_array_equal(back.joints, m.joints)
    np.testing.assert_array_equal(back.joints2d, m.joints2d)
    assert back.joint_names == CANONICAL_JOINTS and back.fps == 30.0
    assert back.meta == {"gaps": [{"start_frame": 3}], "fps_in": 25.0}
    with np.load(path, allow_pickle=False) as z:  # readable without pickle
        assert set(z.files) == {"joints", "fps", "joint_names", "joints2d", "confidence", "meta"}
    with pytest.raises(MomuError, match="exists"):
        m.save(path, force=False)


def test_bad_motion_input(tmp_path):
    nan = np.zeros((4, 18, 3), np.float32)
    nan[2, 5, 1] = np.nan
    with pytest.raises(MomuError, match="NaN"):
        Motion(joints=nan, fps=25)
    with pytest.raises(MomuError, match=r"\[T, J, 3\]"):
        Motion(joints=np.zeros((4, 18, 2)), fps=25)
    with pytest.raises(MomuError, match="fps"):
        Motion(joints=np.zeros((4, 18, 3)), fps=0)
    with pytest.raises(MomuError, match="confidence"):
        Motion(joints=np.zeros((4, 18, 3)), fps=25, confidence=np.ones((4, 17)))
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(MomuError, match="cannot read"):
        load_motion(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", pose=np.zeros(3))
    with pytest.raises(MomuError, match="needs arrays"):
        load_motion(tmp_path / "y.npz")
    with pytest.raises(MomuError, match="not found"):
        load_motion(tmp_path / "none.npz")


def test_synthetic_dance_is_rigid_and_on_the_floor(dance):
    assert dance.n_frames == 180
    assert bone_lengths(dance.joints).std(axis=0).max() < 1e-5
    assert abs(dance.joints[..., 1].min()) < 1e-6
    pel = dance.joints[:, J["pelvis"], 1]
    beats = np.arange(0, 6.0, 0.5)  # 120 BPM, lowest pelvis on the beat
    for b in beats[1:-1]:
        k = int(round(b * 30))
        assert pel[k] <= pel[k - 3: k + 4].min() + 1e-6


# -- resampling --------------------------------------------------------------------------------

@pytest.mark.parametrize("fps_in, fps_out", [(25.0, float(DEFAULT_TIMEBASE.motion_rate)), (30000 / 1001, 25.0), (60.0, 21.533203125)])
def test_resample_ten_minutes_no_drift(fps_in, fps_out):
    n_in = int(600 * fps_in)
    t_in = np.arange(n_in, dtype=np.float64) / fps_in
    joints = np.zeros((n_in, 18, 3), np.float32)
    joints[:, :, 0] = t_in[:, None]  # x = time in seconds: resampled frame k must read k / fps_out
    out = Motion(joints=joints, fps=fps_in).resample(fps_out)
    expected_n = int(Fraction(n_in) / Fraction(fps_in).limit_denominator(10**6) * Fraction(fps_out).limit_denominator(10**6))
    assert abs(out.n_frames - expected_n) <= 1 and out.n_frames == int(np.floor(n_in * fps_out / fps_in + 1e-9))
    k = np.arange(out.n_frames)
    err = np.abs(out.joints[:, 0, 0] - k / fps_out)
    assert err.max() < 1e-4  # float32 of 600 s is ~3e-5: no accumulated drift over 10 minutes
    assert out.seconds <= 600.0 + 1e-9


def test_resample_keeps_optional_arrays(dance):
    m = Motion(joints=dance.joints, fps=30.0, confidence=np.ones(dance.joints.shape[:2]))
    r = m.resample(21.533203125)
    assert r.confidence.shape == r.joints.shape[:2] and r.n_frames == int(180 * 21.533203125 / 30)


# -- normalisation -------------------------------------------------------------------------------

def test_split_join_root(dance):
    local, root = split_root(dance.joints)
    assert np.abs(local[:, J["pelvis"]]).max() == 0
    np.testing.assert_allclose(join_root(local, root), dance.joints, atol=1e-6)
    traj, start = root_velocity(root)
    np.testing.assert_allclose(integrate_root(traj, start), root, atol=1e-6)


def test_root_velocity_no_drift_long():
    T = 200_000  # over two hours at 25 fps
    rng = np.random.default_rng(0)
    root = np.cumsum(rng.normal(0, 0.01, (T, 3)), axis=0).astype(np.float32)
    traj, start = root_velocity(root)
    assert np.abs(integrate_root(traj.astype(np.float32), start) - root).max() < 1e-3


def test_normalize_inverse_and_invariance(dance):
    local, traj, state = normalize(dance.joints, scale="bones", facing=True)
    np.testing.assert_allclose(denormalize(local, traj, state), dance.joints, atol=1e-5)
    assert abs(facing_yaw(local[0] * state.scale)) < 1e-5  # faces +z after normalisation
    # a bigger dancer, turned and moved elsewhere, normalises to the same features
    big = rotate_y(dance.joints * 1.3, 1.1) + np.array([2.0, 0.0, -1.0], np.float32)
    big[..., 1] = dance.joints[..., 1] * 1.3
    l2, t2, s2 = normalize(big, scale="bones", facing=True)
    assert s2.scale == pytest.approx(1.3 * state.scale, rel=1e-5)
    np.testing.assert_allclose(l2, local, atol=1e-4)
    np.testing.assert_allclose(t2, traj, atol=1e-4)


def test_body_scale(dance):
    h = body_scale(dance.joints, "height")
    assert 1.2 < h < 1.8
    assert body_scale(dance.joints * 2, "height") == pytest.approx(2 * h, rel=1e-5)
    assert body_scale(dance.joints, "bones") == pytest.approx(np.median(bone_lengths(dance.joints), 0).mean(), rel=1e-5)
    with pytest.raises(MomuError):
        body_scale(dance.joints, "armspan")
    with pytest.raises(MomuError, match="canonical"):
        normalize(np.zeros((3, 23, 3)))


# -- projection ----------------------------------------------------------------------------------

def test_project_like_mediapipe(dance):
    cam = VirtualCamera(yaw=0.0, elevation=0.0, distance=4.0, focal=1.2, aspect=1.0)
    cam = camera_for_motion(dance.joints[:1], cam)
    uv, depth = project(dance.joints[0], cam)  # the dancer faces +z = faces this camera
    assert ((uv > 0) & (uv < 1)).all()
    assert uv[J["l_shoulder"], 0] > uv[J["r_shoulder"], 0]  # their left on the image right (x right)
    assert uv[J["head"], 1] < uv[J["pelvis"], 1] < uv[J["l_ankle"], 1]  # y down
    assert (depth > 0).all()
    np.testing.assert_allclose(unproject(uv, depth, cam), dance.joints[0], atol=1e-4)


def test_projection_geometry_pinhole():
    cam = VirtualCamera(yaw=0.0, elevation=0.0, distance=5.0, focal=1.0, aspect=2.0, target=(0, 0, 0))
    uv, z = project(np.array([[1.0, 0.5, 0.0], [0, 0, 0]]), cam)
    np.testing.assert_allclose(z, [5.0, 5.0])
    np.testing.assert_allclose(uv, [[0.5 + 1 / 5, 0.5 - 2 * 0.5 / 5], [0.5, 0.5]], atol=1e-6)
    with pytest.raises(MomuError, match="behind"):
        project(np.array([[0, 0, 6.0]]), cam)


def test_random_cameras_frame_the_dancer(dance):
    rng = np.random.default_rng(0)
    for cam in random_cameras(20, rng):
        m = project_motion(dance, cam)
        assert m.joints2d.shape == (dance.n_frames, 18, 2)
        assert ((m.joints2d > 0) & (m.joints2d < 1)).all()
        assert "camera" in m.meta
    yaws = [c.yaw for c in random_cameras(200, np.random.default_rng(1))]
    assert min(yaws) < -2.5 and max(yaws) > 2.5
