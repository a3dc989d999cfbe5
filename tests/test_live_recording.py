"""``momu live --record``: recorded poses in the motion format ``momu generate`` reads, and a WAV that survives
SIGKILL (real files, the real CLI in a subprocess, real ``soundfile``)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from momu_live.bridge.events import PoseFrame
from momu_live.live.recorder import Recorder, motion_from_frames, stream_fps
from momu_live.models.motion import load_motion, synthetic_dance
from momu_live.models.skeleton import CANONICAL_JOINTS
from momu_live.models.timebase import DEFAULT_TIMEBASE as TB

REPO = Path(__file__).resolve().parents[1]
MOMU = [sys.executable, "-m", "momu_live.cli"]


# ------------------------------------------------------------------------------------------------ motion files
def test_motion_from_frames_uniform_grid_and_held_gaps():
    fps = 25.0
    k = np.array([0, 1, 2, 3, 4, 9, 10, 11])  # frames 5-8 dropped (a gap of 4 frames)
    times = 10.0 + k / fps + np.array([0, 0.003, -0.004, 0.002, 0, 0.001, -0.002, 0])  # capture jitter
    joints = np.repeat(k[:, None, None].astype(np.float32), 18, axis=1).repeat(3, axis=2)  # (8, 18, 3) = frame no.
    joints[6, 5] = np.nan  # one non-finite joint in frame 10
    conf = np.full((8, 18), 0.9, np.float32)
    m = motion_from_frames(times, joints, conf)
    assert m.fps == fps and m.n_frames == 12 and m.joint_names == CANONICAL_JOINTS
    assert m.meta["t0"] == pytest.approx(10.0) and m.meta["frames_held"] == 4
    assert np.isfinite(m.joints).all()
    # recorded frames sit on the grid (interpolated through the jitter), with their confidence
    for i in (0, 1, 2, 3, 4, 9, 11):
        assert np.allclose(m.joints[i, 0], i, atol=0.15) and m.confidence[i, 0] == pytest.approx(0.9)
    # the gap holds the last value with confidence 0
    assert np.allclose(m.joints[5:9, 0], 4.0) and (m.confidence[5:9] == 0).all()
    # the non-finite joint: the neighbours are 2 periods apart -> held, confidence 0; the other joints are fine
    assert np.allclose(m.joints[10, 5], 9.0) and m.confidence[10, 5] == 0.0
    assert np.allclose(m.joints[10, 0], 10.0, atol=0.1) and m.confidence[10, 0] == pytest.approx(0.9)
    # rates: measured, snapped to the common ones (the model's motion rate included)
    assert stream_fps(np.arange(50) / 30.0 + 1e-4 * np.sin(np.arange(50))) == 30.0
    assert stream_fps(np.arange(50) / float(TB.motion_rate)) == float(TB.motion_rate)
    assert stream_fps([3.0]) == 30.0


def test_recorder_writes_motion_files_on_flush_and_close(tmp_path):
    rec = Recorder(tmp_path, 22050, {"mode": "motion2music", "source": "video:x.avi"}, flush_s=0.5)
    dance = synthetic_dance(4.0, fps=30.0).joints  # (120, 18, 3)
    for k, j in enumerate(dance):
        if 60 <= k < 75:  # no person for half a second: frames with NaN joints
            j = np.full_like(j, np.nan)
        rec.emit(PoseFrame(0, k, 0.5 + k / 30.0, j))
        if k % 2 == 0:
            rec.emit(PoseFrame(1, k, 0.5 + k / 30.0, j + 5.0))  # a second, less seen dancer
        if k == 59:
            time.sleep(0.6)  # the next frame flushes
    # written by the flush, before close (atomically: it loads)
    mid = load_motion(tmp_path / "capture_motion.npz")
    assert mid.fps == 30.0 and mid.n_frames == 61 and not (tmp_path / "generated_motion.npz").exists()
    model_fps = float(TB.motion_rate)
    gen = synthetic_dance(2.0, fps=model_fps).joints
    for k, j in enumerate(gen):
        rec.emit(PoseFrame(0, k, 1.0 + k / model_fps, j, source="generated"))
    rec.close({"stop_reason": "test"})
    assert not list(tmp_path.glob("*.tmp.npz"))
    m = load_motion(tmp_path / "capture_motion.npz")
    assert m.fps == 30.0 and m.n_frames == 120 and m.joints.shape == (120, 18, 3)
    assert np.allclose(m.joints[:60], dance[:60], atol=1e-5) and np.allclose(m.joints[75:], dance[75:], atol=1e-5)
    assert (m.confidence[60:75] == 0).all() and np.allclose(m.joints[60:75], dance[59], atol=1e-5)  # held
    assert (m.confidence[:60] == 1).all() and (m.confidence[75:] == 1).all()
    assert m.meta["person"] == 0 and m.meta["persons"] == [0, 1] and m.meta["t0"] == pytest.approx(0.5)
    assert m.meta["stream"] == "capture" and m.meta["mode"] == "motion2music"
    g = load_motion(tmp_path / "generated_motion.npz")
    assert g.fps == model_fps and g.n_frames == len(gen) and np.allclose(g.joints, gen, atol=1e-5)
    # --force: the old session's motion files never pass for the new one's
    Recorder(tmp_path, 22050, overwrite=True).close()
    assert not (tmp_path / "capture_motion.npz").exists() and not (tmp_path / "generated_motion.npz").exists()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Debug models saved as a ``--weights`` folder (as tests/test_generate.py does)."""
    import torch

    from momu_live.models.builders import debug_dit, debug_vae
    from momu_live.models.checkpoint import save_checkpoint
    from momu_live.models.vae import SIZES as VAE_SIZES

    d = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    stats = {m: {"mean": [0.0] * 4, "std": [1.0] * 4} for m in ("music", "motion")}
    save_checkpoint(d / "vae", debug_vae(), VAE_SIZES["debug"], "vae", {"latent_stats": stats})
    dit = debug_dit(4)
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_checkpoint(d / "dit", dit.eval(), dit.cfg, "dit", {})
    return d


def test_momu_generate_reads_a_recorded_session(tmp_path, weights, momu_cli):
    rec = Recorder(tmp_path / "rec", 22050, {"mode": "beats"})
    dance = synthetic_dance(3.0, fps=25.0).joints
    for k, j in enumerate(dance):
        if k not in (30, 31, 32):  # three dropped frames
            rec.emit(PoseFrame(0, k, 2.0 + k / 25.0 + 0.002 * np.sin(k), j))
    rec.close()
    r = momu_cli("generate", "motion2music", "--motion", tmp_path / "rec" / "capture_motion.npz", "--out",
                 tmp_path / "music.wav", "--weights", weights, "--steps", 1, "--no-progress", "--threads", 1,
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    y, sr = sf.read(tmp_path / "music.wav")
    assert sr == TB.sample_rate and abs(len(y) / sr - 3.0) < 0.5 and np.isfinite(y).all()


# ------------------------------------------------------------------------------------------------ SIGKILL
def _click_track(path: Path, seconds: float = 30.0, bpm: float = 120.0, sr: int = 22050) -> None:
    y = np.zeros(int(seconds * sr), np.float32)
    L = int(0.03 * sr)
    click = (np.sin(2 * np.pi * 900 * np.arange(L) / sr) * np.exp(-np.arange(L) / (0.01 * sr))).astype(np.float32)
    for t in np.arange(0.1, seconds - 0.1, 60.0 / bpm):
        y[int(t * sr):int(t * sr) + L] += click
    sf.write(path, y, sr)


def _events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by the kill
            pass
    return out


def test_sigkill_mid_run_leaves_a_playable_wav_with_at_most_a_second_lost(tmp_path):
    """SIGKILL gives no chance to close anything: the WAV header, rewritten on every write, must already be right."""
    track = tmp_path / "clicks.wav"
    _click_track(track)
    rec = tmp_path / "rec"
    proc = subprocess.Popen(MOMU + ["live", "--source", f"file:{track}", "--mode", "beats", "--osc-port", "9",
                                    "--control-port", "0", "--record", str(rec), "--heartbeat-hz", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # the stream is running: first status line
            if (rec / "events.jsonl").exists() and any(e["type"] == "status" for e in _events(rec / "events.jsonl")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(4.0)  # real-time pace: ~4 s of stream
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (rec / "session.json").exists()  # nothing was closed: a real hard kill
    info = sf.info(str(rec / "generated.wav"))
    wav, sr = sf.read(rec / "generated.wav", dtype="float32")  # plays: header valid
    assert sr == 22050 and len(wav) == info.frames
    size = (rec / "generated.wav").stat().st_size
    assert 0 <= size - (44 + 2 * info.frames) < 2 * 22050  # the header covers all but at most the last block
    events = _events(rec / "events.jsonl")  # line-buffered: it tells how far the stream got
    status = [e for e in events if e["type"] == "status"]
    stream_s = max(e["time"] for e in events)  # stream time of the last event before the kill
    assert len(status) >= 2 * 3.0 and stream_s > 3.0  # 2 Hz heartbeat for ~4 s
    seconds = len(wav) / sr
    assert stream_s - 1.0 <= seconds <= stream_s + 1.0, (seconds, stream_s, len(status))
    np.load(rec / "poses.npz")  # written atomically: never half a file
