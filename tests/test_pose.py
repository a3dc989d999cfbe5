"""MediaPipe pose extraction on a real video, gap filling, and bad input through the real CLI."""
from __future__ import annotations

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.models.motion import load_motion
from momu_live.models.skeleton import CANONICAL_JOINTS, JOINT_INDEX as J, bone_lengths, BONES
from momu_live.pose import PoseEstimator, fill_gaps, landmarks_to_canonical, video_info

SECONDS = 12.0  # >= 10 s of the real dancer video (~300 frames, ~8 s on 2 cores)


@pytest.fixture(scope="module")
def dancer_motion(dancer_video, tmp_path_factory, momu_cli):
    out = tmp_path_factory.mktemp("pose") / "dancer.npz"
    png = out.with_suffix(".png")
    r = momu_cli("pose", "--video", str(dancer_video), "--out", str(out), "--seconds", str(SECONDS), "--no-progress",
              "--plot", str(png))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "detected in" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    return load_motion(out)


def test_video_info(dancer_video):
    info = video_info(dancer_video)
    assert info.fps == pytest.approx(25.0)
    assert info.width > 0 and info.height > 0 and info.seconds > SECONDS


def test_cli_extracts_real_dancer(dancer_motion):
    m = dancer_motion
    assert m.joint_names == CANONICAL_JOINTS
    assert m.fps == pytest.approx(25.0)
    assert m.n_frames == int(SECONDS * 25)
    assert m.meta["source"] == "mediapipe"
    assert m.meta["detected_fraction"] >= 0.95
    assert np.isfinite(m.joints).all() and np.isfinite(m.joints2d).all()
    assert ((m.confidence >= 0) & (m.confidence <= 1)).all()
    # image coordinates are MediaPipe-normalised: the body is inside the frame
    inside = ((m.joints2d > -0.05) & (m.joints2d < 1.05)).all(axis=-1).mean()
    assert inside > 0.95


def test_real_dancer_bones_are_human(dancer_motion):
    lengths = bone_lengths(dancer_motion.joints)  # (T, 17)
    child = {c: i for i, (_, c) in enumerate(BONES)}
    for name in ("l_knee", "r_knee", "l_ankle", "r_ankle"):  # thighs and shins
        x = lengths[:, child[J[name]]]
        assert 0.3 < np.median(x) < 0.6, (name, np.median(x))
        assert x.std() < 0.05, (name, x.std())
    assert (lengths > 0.01).all()


def test_real_dancer_left_is_left(dancer_motion):
    """y up, and left = up x forward with forward taken from the feet (ankle -> toe), not from the hips."""
    j = dancer_motion.joints
    assert (j[:, J["head"], 1] > j[:, J["pelvis"], 1]).mean() > 0.95
    assert (j[:, J["pelvis"], 1] > j[:, J["l_ankle"], 1]).mean() > 0.95
    fwd = (j[:, J["l_toe"]] - j[:, J["l_ankle"]]) + (j[:, J["r_toe"]] - j[:, J["r_ankle"]])
    left = j[:, J["l_hip"]] - j[:, J["r_hip"]]
    assert (np.sum(np.cross([0.0, 1.0, 0.0], fwd) * left, axis=-1) > 0).mean() > 0.9


def test_landmark_axes_flip_is_a_rotation():
    rng = np.random.default_rng(0)
    world = rng.normal(size=(33, 3)).astype(np.float32)
    world[:, 1] = -np.abs(world[:, 1])  # MediaPipe y is down: these points are above the hips
    res = landmarks_to_canonical(world, rng.uniform(size=(33, 2)), np.ones(33))
    assert res.joints.shape == (18, 3) and res.joints2d.shape == (18, 2) and res.confidence.shape == (18,)
    assert (res.joints[[J["l_shoulder"], J["r_shoulder"]], 1] > 0).all()


def test_fill_gaps_short_interpolated_long_held():
    T, fps = 100, 25.0
    t = np.arange(T, dtype=np.float32)
    joints = np.zeros((T, 18, 3), np.float32)
    joints[..., 0] = t[:, None] * 0.01  # linear in time: interpolation must be exact
    j2d = joints[..., :2].copy()
    conf = np.ones((T, 18), np.float32)
    det = np.ones(T, bool)
    det[10:15] = False  # 0.2 s: interpolated
    det[40:70] = False  # 1.2 s: held
    det[95:] = False  # trailing: held
    truth = joints.copy()
    joints[~det] = 0.0
    gaps = fill_gaps(joints, j2d, conf, det, fps, max_gap_s=0.5)
    assert [(g.start, g.end, g.filled) for g in gaps] == [(10, 15, "interpolated"), (40, 70, "held"), (95, 100, "held")]
    np.testing.assert_allclose(joints[10:15], truth[10:15], atol=1e-6)
    np.testing.assert_array_equal(joints[40:70], np.broadcast_to(truth[39], (30, 18, 3)))
    assert (conf[40:70] == 0).all() and (conf[95:] == 0).all() and (conf[10:15] > 0).all()
    assert np.isfinite(joints).all()
    with pytest.raises(MomuError, match="no person"):
        fill_gaps(joints, j2d, conf, np.zeros(T, bool), fps)


def test_estimator_survives_empty_frames_rejects_bad_shapes():
    with PoseEstimator() as est:
        res = est.process(None, 0.0)
        assert res.joints is None and (res.confidence == 0).all()
        res = est.process(np.zeros((64, 64, 3), np.uint8), 0.04)  # no person in a black frame
        assert res.joints is None
        with pytest.raises(MomuError, match="BGR"):
            est.process(np.zeros((4, 4, 3, 2), np.uint8), 0.08)


def test_cli_bad_input(tmp_path, momu_cli):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    r = momu_cli("pose", "--video", str(bad), "--out", str(tmp_path / "o.npz"))
    assert r.returncode == 2 and "cannot open video" in r.stderr
    r = momu_cli("pose", "--video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o.npz"))
    assert r.returncode == 2 and "not found" in r.stderr
    r = momu_cli("pose", "--video", str(bad), "--out", str(tmp_path / "o.txt"))
    assert r.returncode == 2 and ".npz" in r.stderr
    r = momu_cli("pose", "--video", str(bad), "--out", str(tmp_path / "o.npz"), "--max-gap", "-1")
    assert r.returncode == 2 and "--max-gap" in r.stderr
    assert not (tmp_path / "o.npz").exists()


def test_task_file_errors(tmp_path, dancer_video, momu_cli):
    with pytest.raises(MomuError, match="not found"):
        PoseEstimator(task_file=tmp_path / "none.task")
    bogus = tmp_path / "bogus.task"
    bogus.write_bytes(np.random.default_rng(1).bytes(2048))
    r = momu_cli("pose", "--video", str(dancer_video), "--out", str(tmp_path / "o.npz"), "--task-file", str(bogus))
    assert r.returncode == 2 and "cannot load MediaPipe task file" in r.stderr


def test_cli_black_video_reports_no_person(tmp_path, momu_cli):
    import cv2

    path = tmp_path / "black.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 64))
    for _ in range(10):
        w.write(np.zeros((64, 64, 3), np.uint8))
    w.release()
    r = momu_cli("pose", "--video", str(path), "--out", str(tmp_path / "o.npz"), "--no-progress")
    assert r.returncode == 2 and "no person detected" in r.stderr
