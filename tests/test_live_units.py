"""Live engine parts on synthetic signals: One-Euro smoothing, tempo/beat tracking, buffers, pass-through back-ends.

Every streaming part is checked chunked == whole.
"""
from __future__ import annotations

import numpy as np
import pytest

from momu_live.live.backend import ClickBackend, JointPassthrough, LiveWindow, ProceduralDancerBackend, make_backend
from momu_live.live.buffer import AudioRing, DropQueue, PoseRing
from momu_live.live.smoothing import MEDIAPIPE_WORLD, OneEuroState, one_euro_filter
from momu_live.live.tempo import (AudioOnsetState, TempoConfig, TempoState, TempoTracker, audio_onset_step,
                                  tempo_step)
from momu_live.procedural import procedural_dance


# ---------------------------------------------------------------------------------------------- smoothing

def test_one_euro_chunked_equals_whole_and_reduces_jitter():
    rng = np.random.default_rng(0)
    fps = 30.0
    t = np.arange(300) / fps + rng.uniform(0, 0.004, 300)  # jittered timestamps
    clean = np.stack([np.sin(2 * np.pi * 0.5 * t), np.where(t > 5, 0.3, 0.0), 0.1 * t], -1)[:, None, :]  # (T, 1, 3)
    x = clean + rng.normal(0, 0.01, clean.shape)
    whole, _ = one_euro_filter(x, t)
    parts, st = [], OneEuroState()
    for a, b in ((0, 7), (7, 8), (8, 150), (150, 300)):
        y, st = one_euro_filter(x[a:b], t[a:b], st)
        parts.append(y)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # jitter: the frame-to-frame noise shrinks a lot on the slow, steady parts
    steady = (t > 1) & (t < 4.9)
    raw_jit = np.std(np.diff(x[steady, 0, 2]))
    filt_jit = np.std(np.diff(whole[steady, 0, 2]))
    assert filt_jit < 0.6 * raw_jit  # MediaPipe world defaults filter lightly (beta 40)
    # latency on the 0.3 m step stays small (beta adapts the cutoff): within 0.03 m after 0.2 s
    after = (t > 5.2) & (t < 6)
    assert np.abs(whole[after, 0, 1] - 0.3).max() < 0.03
    assert MEDIAPIPE_WORLD.min_cutoff == 0.1 and MEDIAPIPE_WORLD.beta == 40.0


def test_one_euro_passes_nan_without_poisoning():
    t = np.arange(20) / 30.0
    x = np.ones((20, 2, 3))
    x[5:8, 1] = np.nan  # a joint goes missing for three frames
    y, _ = one_euro_filter(x, t)
    assert np.isnan(y[5:8, 1]).all()
    assert np.isfinite(y[8:]).all() and np.allclose(y[8:], 1.0)


# ---------------------------------------------------------------------------------------------- tempo

@pytest.mark.parametrize("fps", [30.0, 25.0])
def test_tempo_tracker_finds_120_bpm_on_periodic_motion(fps):
    # the procedural dancer: steps, dips, sways and arm swings at 120 BPM on a circular path
    m = procedural_dance(bpm=120.0, seconds=14.0, fps=fps, phase_s=0.21)
    tr = TempoTracker()
    beats = []
    for i, j in enumerate(m.joints):
        beats += tr.add_pose(j, i / fps)
    assert abs(tr.bpm - 120.0) < 1.5, tr.bpm
    late = [b for b in beats if b.time > 6.0]
    assert len(late) >= 14 and all(abs(b.bpm - 120.0) < 4 for b in late)  # settles within 3 %
    assert np.allclose(np.diff([b.time for b in late]), 0.5, atol=0.06)


@pytest.mark.parametrize("bpm", [90.0, 120.0, 140.0])
def test_tempo_tracker_locks_phase_on_the_stops(bpm):
    # arms swinging back and forth, turning (speed 0) exactly on the beats at 0.13 + k * 60 / bpm
    fps = 30.0
    t = np.arange(int(16 * fps)) / fps
    ph = (t - 0.13) * bpm / 60.0
    joints = np.zeros((len(t), 18, 3))
    joints[:, 6, 0] = 0.3 * np.cos(np.pi * ph)
    joints[:, 9, 1] = 0.2 * np.cos(np.pi * ph)
    tr = TempoTracker()
    beats = []
    for i in range(len(t)):
        beats += tr.add_pose(joints[i], t[i])
    assert abs(tr.bpm - bpm) / bpm < 0.01, tr.bpm
    late = np.array([b.time for b in beats if b.time > 8.0])
    gt = 0.13 + np.arange(40) * 60.0 / bpm
    err = np.array([np.min(np.abs(gt - x)) for x in late])
    assert len(late) >= 8 and err.max() < 0.03, err
    assert [b.downbeat for b in beats[:8]] == [b.index % 4 == 0 for b in beats[:8]]


def test_tempo_tracker_pure_pulse_motion_other_tempi():
    # a hand that snaps to a stop every beat (sawtooth position): kinematic beats at the stops
    for bpm in (96.0, 140.0):
        fps = 30.0
        t = np.arange(int(14 * fps)) / fps
        ph = (t * bpm / 60.0) % 1.0
        joints = np.zeros((len(t), 18, 3))
        joints[:, 6, 0] = 0.4 * np.sqrt(ph)  # fast start, decelerating into the beat
        tr = TempoTracker()
        for i in range(len(t)):
            tr.add_pose(joints[i], t[i])
        assert abs(tr.bpm - bpm) / bpm < 0.02, (bpm, tr.bpm)


def test_tempo_step_chunked_equals_whole():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 12, 400))
    v = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 8 + 0.05 * rng.random(400)
    b_whole, s_whole = tempo_step(t, v, TempoState())
    st, b_parts = TempoState(), []
    for a, b in ((0, 1), (1, 50), (50, 51), (51, 399), (399, 400)):
        bb, st = tempo_step(t[a:b], v[a:b], st)
        b_parts += bb
    assert b_parts == b_whole
    assert st.period == s_whole.period and st.next_beat == s_whole.next_beat
    assert abs(60 * TempoConfig().rate / st.period - 120.0) < 2.0


def test_audio_onset_tempo_120_and_chunking():
    sr = 22050
    n = 12 * sr
    y = np.zeros(n, np.float32)
    for k in range(24):
        i = int(round((0.13 + 0.5 * k) * sr))
        L = int(0.03 * sr)
        y[i:i + L] += np.sin(2 * np.pi * 1000 * np.arange(L) / sr) * np.exp(-np.arange(L) / (0.01 * sr))
    t1, f1, _ = audio_onset_step(y, 0.0, sr, AudioOnsetState())
    st, ts, fs = AudioOnsetState(), [], []
    for a in range(0, n, 777):
        tt, ff, st = audio_onset_step(y[a:a + 777], a / sr, sr, st)
        ts.append(tt)
        fs.append(ff)
    np.testing.assert_allclose(np.concatenate(ts), t1)
    np.testing.assert_allclose(np.concatenate(fs), f1, rtol=1e-5, atol=1e-6)
    tr = TempoTracker()
    beats = []
    for a in range(0, n, 512):
        beats += tr.add_audio(y[a:a + 512], a / sr, sr)
    assert abs(tr.bpm - 120.0) < 1.5
    late = np.array([b.time for b in beats if b.time > 6])
    clicks = 0.13 + 0.5 * np.arange(24)
    err = np.array([np.min(np.abs(clicks - x)) for x in late])
    assert np.median(err) < 0.04, err


def test_tempo_silence_emits_no_beats():
    tr = TempoTracker()
    beats = []
    for i in range(300):
        beats += tr.add_pose(np.zeros((18, 3)), i / 30.0)  # a statue
    assert beats == [] and tr.bpm == 0.0
    for i in range(300, 360):
        beats += tr.add_pose(None, i / 30.0)  # nobody there
    assert beats == []


# ---------------------------------------------------------------------------------------------- buffers

def test_drop_queue_drops_oldest_and_counts():
    q = DropQueue(3)
    for i in range(10):
        q.put(i)
    assert q.dropped == 7 and len(q) == 3
    assert [q.get(0), q.get(0), q.get(0), q.get(0.01)] == [7, 8, 9, None]


def test_pose_ring_holds_gaps_and_nan():
    r = PoseRing(8)
    good = np.ones((18, 3), np.float32)
    r.append(0.0, good)
    part = good * 2
    part[3] = np.nan
    r.append(0.1, part)
    r.append(0.2, None)
    r.append(0.3, np.full((18, 3), np.nan))
    r.append(0.25, good)  # out of order: ignored
    w = r.window(0.0, 1.0)
    assert np.isfinite(w.joints).all()
    assert w.valid.tolist() == [True, True, False, False]
    assert w.joints[1, 3].tolist() == [1, 1, 1]  # missing joint held from the last good pose
    assert w.confidence[1, 3] == 0 and w.confidence[2].max() == 0
    for i in range(20):  # wraps around
        r.append(1 + i * 0.1, good * i)
    w = r.window(0, 100)
    assert len(w.times) == 8 and np.all(np.diff(w.times) > 0)


def test_audio_ring_exact_clock():
    r = AudioRing(1.0, 1000)
    x = np.arange(2500, dtype=np.float32)
    for a in range(0, 2500, 300):
        r.append(x[a:a + 300], 10.0 if a == 0 else None)
    assert r.latest_time == pytest.approx(12.5)
    np.testing.assert_array_equal(r.read(12.0, 12.5), x[2000:2500])
    assert r.read(10.0, 10.1).tolist() == [0.0] * 100  # overwritten: zeros


# ---------------------------------------------------------------------------------------------- back-ends

def _window(i, t_end, hop, bpm, beat_time, poses=None):
    T = 0 if poses is None else len(poses)
    return LiveWindow(index=i, t_start=t_end - 2.0, t_end=t_end, hop_start=t_end - hop, pose_times=np.linspace(t_end - 2, t_end, T, endpoint=False), poses=poses if poses is not None else np.zeros((0, 18, 3), np.float32), pose_confidence=np.ones((T, 18), np.float32), pose_valid=np.ones(T, bool), audio=np.zeros(0, np.float32), sample_rate=22050, bpm=bpm, beat_time=beat_time, beat_index=0)


def test_click_backend_is_gapless_and_clicks_on_the_tracked_beats():
    be = ClickBackend("beats", hum=False)
    assert be.info.passthrough and "no model" in be.info.label
    st = be.init_state()
    chunks, times, beats = [], [], []
    for i, hop in enumerate([0.5, 0.3, 0.7, 0.5, 0.5, 0.5, 0.4, 0.6] * 2):
        t_end = 1.0 + sum(([0.5, 0.3, 0.7, 0.5, 0.5, 0.5, 0.4, 0.6] * 2)[:i + 1])
        out, st = be.step(_window(i, t_end, hop, 120.0, 0.25), st)
        times.append(out.audio_time)
        chunks.append(out.audio)
        beats += out.beats
    y = np.concatenate(chunks)
    # contiguous: each block starts where the previous ended
    ends = np.array(times[:-1]) + np.array([len(c) for c in chunks[:-1]]) / 22050
    np.testing.assert_allclose(times[1:], ends, atol=1 / 22050)
    # clicks every 0.5 s on the tracked grid (0.25 + k/2)
    bt = np.array([b[1] for b in beats])
    np.testing.assert_allclose(np.diff(bt), 0.5, atol=2e-3)
    assert np.allclose((bt - 0.25) % 0.5, 0, atol=3e-3) or np.allclose((bt - 0.25) % 0.5, 0.5, atol=3e-3)
    onsets = np.flatnonzero((np.abs(y[1:]) > 0.05) & (np.abs(y[:-1]) <= 0.05))
    assert len(onsets) >= len(bt) - 1


def test_procedural_dancer_continuous_and_beat_locked():
    be = ProceduralDancerBackend()
    st = be.init_state()
    ts, ps = [], []
    t_end = 1.0
    for i in range(12):
        t_end += 0.5
        out, st = be.step(_window(i, t_end, 0.5, 100.0, 0.1), st)
        ts.append(out.pose_times)
        ps.append(out.poses)
    t, p = np.concatenate(ts), np.concatenate(ps)
    assert np.allclose(np.diff(t), 1 / be.info.pose_rate, atol=1e-9)  # gapless on the pose clock
    assert np.isfinite(p).all() and p.shape[1:] == (18, 3)
    step = np.linalg.norm(np.diff(p, axis=0), axis=-1).max(-1)  # (K-1,) largest joint move per frame
    seams = np.cumsum([len(x) for x in ts])[:-1] - 1  # frame pairs across window boundaries
    inner = np.delete(step, seams)
    assert step.max() < 0.15 and step[seams].max() <= 1.2 * inner.max()  # no jumps at the seams
    # the pelvis dips once per beat: its height's dominant period is the beat period
    h = p[:, 0, 1] - p[:, 0, 1].mean()
    spec = np.abs(np.fft.rfft(h * np.hanning(len(h))))
    f = np.fft.rfftfreq(len(h), 1 / be.info.pose_rate)
    assert abs(f[np.argmax(spec[1:]) + 1] - 100 / 60) < 0.2


def test_joint_passthrough_and_make_backend():
    be = make_backend("joint", "passthrough")
    assert isinstance(be, JointPassthrough) and be.info.passthrough
    st = be.init_state()
    out, st = be.step(_window(0, 2.5, 0.5, 0.0, None), st)  # no tempo: free-runs at 120
    assert len(out.audio) == int(0.5 * 22050) and len(out.poses) > 0
    assert make_backend("motion2music", "passthrough").info.label.startswith("pass-through")
    from momu_live import MomuError

    with pytest.raises(MomuError):
        make_backend("dance-off")


def test_recorder_keeps_the_stream_clock_and_survives_nan(tmp_path):
    import json

    import soundfile as sf

    from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Status
    from momu_live.live.recorder import Recorder

    rec = Recorder(tmp_path, 1000)
    rec.emit(AudioBlock(np.ones(100, np.float32) * 0.5, 1000, 2.0))
    rec.emit(AudioBlock(np.ones(100, np.float32) * 0.25, 1000, 2.3))  # 0.2 s gap (a skipped window)
    rec.emit(AudioBlock(np.ones(100, np.float32), 1000, 2.35))  # overlaps the previous block by 50 samples
    rec.emit(Status(1.0, "beats", {"pose": float("nan")}, 0, 30.0, 120.0, "x"))
    rec.emit(Beat(0, 2.0, 120.0))
    rec.emit(PoseFrame(0, 7, 2.0, np.ones((18, 3), np.float32)))
    rec.close({"stop_reason": "test"})
    rec.close()  # idempotent
    y, sr = sf.read(tmp_path / "generated.wav")
    assert sr == 1000 and len(y) == 450
    assert np.allclose(y[:100], 0.5, atol=1e-3) and np.allclose(y[100:300], 0) and np.allclose(y[300:400], 0.25, atol=1e-3)
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["status", "beat", "poseframe"] and lines[0]["latency_ms"]["pose"] is None
    z = np.load(tmp_path / "poses.npz")
    assert z["capture_joints"].shape == (1, 18, 3) and z["capture_frames"].tolist() == [7]
    assert json.loads((tmp_path / "session.json").read_text())["stop_reason"] == "test"


def test_recorder_refuses_to_overwrite_a_recording_without_force(tmp_path):
    import soundfile as sf

    from momu_live import MomuError
    from momu_live.bridge.events import AudioBlock
    from momu_live.live.recorder import Recorder

    rec = Recorder(tmp_path, 1000)
    rec.emit(AudioBlock(np.full(100, 0.5, np.float32), 1000, 0.0))
    rec.close()
    with pytest.raises(MomuError, match="--force"):
        Recorder(tmp_path, 1000)
    assert len(sf.read(tmp_path / "generated.wav")[0]) == 100  # the refused run lost nothing
    Recorder(tmp_path, 1000, overwrite=True).close()
    assert len(sf.read(tmp_path / "generated.wav")[0]) == 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(MomuError, match="is a file"):
        Recorder(tmp_path / "file", 1000)


def test_soft_limiter_keeps_headroom_and_leaves_quiet_audio_alone():
    from momu_live.bridge.audio_io import soft_limit

    x = np.linspace(-4.0, 4.0, 8001, dtype=np.float32)
    y = soft_limit(x)
    assert np.abs(y).max() <= 0.891 + 1e-6  # at most the -1 dBFS ceiling, never full scale
    quiet = np.abs(x) <= 0.708
    assert np.array_equal(y[quiet], x[quiet])  # identity below the knee
    assert np.all(np.diff(y) >= 0)  # monotonic: no fold-over distortion
    assert np.array_equal(np.concatenate([soft_limit(x[:3000]), soft_limit(x[3000:])]), y)  # chunked == whole
    assert soft_limit(np.array([np.nan, np.inf], np.float32)).tolist() == [0.0, 0.0]


def test_every_event_consumer_is_a_sink():
    """One declared interface (bridge.events.Sink) for everything events go to."""
    from momu_live.bridge.audio_io import AudioOutput, WavRecorder
    from momu_live.bridge.events import Sink
    from momu_live.bridge.router import OscTarget, Router
    from momu_live.commands.live import _StatusPrinter
    from momu_live.live.recorder import Recorder

    for cls in (AudioOutput, WavRecorder, OscTarget, Router, _StatusPrinter, Recorder):
        assert callable(getattr(cls, "emit", None)) and callable(getattr(cls, "close", None)), cls
    r = Router.from_preset("generic", {"osc_port": 9, "listen": False}, sinks=[_StatusPrinter()])
    try:
        assert isinstance(r, Sink) and all(isinstance(s, Sink) for s in (*r.targets, *r.extra))
    finally:
        r.close()
