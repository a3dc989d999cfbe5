"""The live engine end to end with real peers: real video + MediaPipe, real UDP OSC sockets, real subprocesses.

- video-file source on ../shared/fixtures/dancer.avi -> OSC receiver (pose frames, >= 1 Hz status, beats)
- ``momu live --duration`` exits 0 and writes recordings; SIGINT mid-run flushes them
- a malformed/unknown OSC flood at the control port does not stop the stream or grow memory
- NaN poses and no-person frames from an OSC tracker are handled
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
from dataclasses import replace
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _cli import run_momu
from momu_live.live.backend import make_backend
from momu_live.live.control import ControlInput
from momu_live.bridge.grammar import beat_fields, pose_frame_fields, status_fields
from momu_live.live.engine import EngineConfig, LiveEngine
from momu_live.live.latency import rss_mb
from momu_live.live.monitor import OscMonitor, free_udp_port, osc_message
from momu_live.live.sinks import make_output
from momu_live.live.sources import CameraSource, OscPoseSource
from momu_live.procedural import procedural_dance

REPO = Path(__file__).resolve().parents[1]
MOMU = [sys.executable, "-m", "momu_live.cli"]


def _status_rate_ok(stamps: list[float], min_hz: float = 1.0) -> None:
    assert len(stamps) >= 2
    gaps = np.diff(stamps)
    assert gaps.max() <= 1.0 / min_hz + 0.35, gaps  # never silent for more than a heartbeat (+ scheduling slack)


def test_video_source_end_to_end_to_a_real_osc_receiver(dancer_video):
    mon = OscMonitor()
    source = CameraSource(path=dancer_video, realtime=True)
    engine = LiveEngine(EngineConfig(mode="beats", heartbeat_hz=2.0), source, make_backend("beats"),
                        make_output(None, "127.0.0.1", mon.port))
    try:
        t0 = time.monotonic()
        engine.run(duration=8.0)
        time.sleep(0.3)
    finally:
        mon.close()
    frames = mon.of("/momu/pose/frame")
    assert len(frames) >= 0.8 * 25 * 8, len(frames)  # 25 fps video, MediaPipe finds the dancer ~99 %
    for _, args in frames[::10]:
        assert len(args) == 4 + 18 * 3  # i person, i frame, i time_s, f time_frac, 18 x (x y z)
        assert all(isinstance(v, int) for v in args[:3])
        assert all(isinstance(v, float) and math.isfinite(v) for v in args[3:])
    idx = [a[1] for _, a in frames]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)  # video frame index, in order
    # poses are real: metres, a body of plausible size (head above pelvis)
    j = pose_frame_fields(frames[-1][1])["joints"]  # (18, 3)
    assert 0.3 < j[3, 1] - j[0, 1] < 1.2
    status = [t for t, _ in mon.of("/momu/status")]
    assert len(status) >= 8 * 1.0 - 1
    assert status[0] - t0 < 10.0  # MediaPipe starts before the engine clock does
    _status_rate_ok(status)
    beats = mon.of("/momu/beat")
    assert beats, "beats mode emitted no /momu/beat in 8 s"
    bpm = beat_fields(beats[-1][1])["bpm"]
    assert 40 <= bpm <= 240
    assert engine.windows >= 10 and engine.stats.summary()["e2e"]["median"] < 200


def _wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_cli_duration_exits_zero_and_records(dancer_video, tmp_path):
    mon = OscMonitor()
    rec = tmp_path / "rec"
    try:  # in-process: the same entry point, exit status and output without the start-up of a new interpreter
        proc = run_momu("live", "--source", f"video:{dancer_video}", "--mode", "motion2music", "--osc-port", mon.port,
                        "--control-port", free_udp_port(), "--duration", "5", "--record", rec, "--model", "passthrough")
    finally:
        time.sleep(0.2)
        mon.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    wav, sr = sf.read(rec / "generated.wav")
    assert sr == 22050 and len(wav) > 2.5 * sr and np.abs(wav).max() > 0.01  # the hum follows the dancer
    z = np.load(rec / "poses.npz")
    assert z["capture_joints"].shape[1:] == (18, 3) and len(z["capture_joints"]) > 60
    assert np.isfinite(z["capture_joints"]).all()
    events = [json.loads(line) for line in (rec / "events.jsonl").read_text().splitlines()]
    kinds = {e["type"] for e in events}
    assert {"poseframe", "status"} <= kinds
    session = json.loads((rec / "session.json").read_text())
    assert session["stop_reason"].startswith("duration") and "pass-through" in session["backend"]
    assert len(mon.of("/momu/pose/frame")) > 60


def _click_track(path: Path, seconds: float = 30.0, bpm: float = 120.0, sr: int = 22050) -> None:
    y = np.zeros(int(seconds * sr), np.float32)
    L = int(0.03 * sr)
    click = (np.sin(2 * np.pi * 900 * np.arange(L) / sr) * np.exp(-np.arange(L) / (0.01 * sr))).astype(np.float32)
    for t in np.arange(0.1, seconds - 0.1, 60.0 / bpm):
        i = int(t * sr)
        y[i:i + L] += click
    sf.write(path, y, sr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_flushes_recordings(tmp_path, sig):
    track = tmp_path / "clicks.wav"
    _click_track(track)
    mon = OscMonitor()
    rec = tmp_path / "rec"
    proc = subprocess.Popen(MOMU + ["live", "--source", f"file:{track}", "--mode", "beats", "--osc-port", str(mon.port),
                                    "--control-port", str(free_udp_port()), "--record", str(rec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert _wait_for(lambda: len(mon.of("/momu/beat")) >= 5, 25), "no beats before the signal"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        mon.close()
    assert proc.returncode == 0, err[-2000:]
    wav, sr = sf.read(rec / "generated.wav")  # header valid, content there
    assert len(wav) > sr and np.abs(wav).max() > 0.1  # the click track of the tracked beats
    events = [json.loads(line) for line in (rec / "events.jsonl").read_text().splitlines()]
    beats = [e for e in events if e["type"] == "beat"]
    assert len(beats) >= 3 and abs(beats[-1]["bpm"] - 120) < 3  # music tempo tracked from the audio
    session = json.loads((rec / "session.json").read_text())
    assert session["stop_reason"] == sig.name
    np.load(rec / "poses.npz")  # readable


def _dance_sender(port: int, stop: threading.Event, nan_from: float | None = None, nan_to: float | None = None,
                  seconds: float = 30.0):
    import socket

    m = procedural_dance(bpm=120.0, seconds=seconds, fps=30.0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    for k, j in enumerate(m.joints):
        if stop.is_set():
            break
        t = k / 30.0
        j = j.astype(np.float32).copy()
        if nan_from is not None and nan_from <= t < nan_to:
            j[:] = np.nan if k % 2 else j
            j[5] = np.nan  # a missing elbow on every frame
        s.sendto(osc_message("/momu/pose/frame", [0, k, t, *map(float, j.reshape(-1))]), ("127.0.0.1", port))
        delay = t0 + (k + 1) / 30.0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    s.close()


def test_malformed_osc_flood_does_not_stop_the_stream():
    import socket

    mon = OscMonitor()
    control = ControlInput("127.0.0.1", 0)
    engine = LiveEngine(EngineConfig(mode="beats", heartbeat_hz=2.0), OscPoseSource(), make_backend("beats"),
                        make_output(None, "127.0.0.1", mon.port), control=control)
    stop = threading.Event()
    runner = threading.Thread(target=engine.run, kwargs={"duration": 12.0})
    sender = threading.Thread(target=_dance_sender, args=(control.port, stop))
    runner.start()
    sender.start()
    rng = np.random.default_rng(0)
    junk = [rng.bytes(int(n)) for n in rng.integers(0, 200, 64)]
    junk += [b"", b"/", b"#bundle\x00", b"/momu/pose/frame\x00\x00\x00\x00,fff\x00\x00\x00\x00\x01", b"\xff" * 1472]
    unknown = [osc_message("/momu/nothing/here", [1, 2.0, "x"]), osc_message("/momu/engine/set/hop", ["not a number"]),
               osc_message("/momu/pose/frame", [1, 2]), osc_message("/momu/tempo/set/bpm", [1e9])]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert _wait_for(lambda: len(mon.of("/momu/pose/frame")) > 30, 10)
        rss0 = rss_mb()
        flood_t0 = time.monotonic()
        for i in range(10_000):  # 10k malformed / unknown packets, as fast as they go, in bursts
            s.sendto(junk[i % len(junk)] if i % 3 else unknown[i % len(unknown)], ("127.0.0.1", control.port))
            if i % 200 == 199:
                time.sleep(0.002)
        t_end = time.monotonic() + 2.0  # then 2 s of a 5k msg/s flood of unknown messages
        k = 0
        while time.monotonic() < t_end:
            for _ in range(50):
                s.sendto(unknown[k % 4], ("127.0.0.1", control.port))
                k += 1
            time.sleep(0.01)
        flood_end = time.monotonic()
        time.sleep(2.5)
        rss1 = rss_mb()
    finally:
        stop.set()
        s.close()
        sender.join(5)
        runner.join(20)
        mon.close()
    c = control.counters()
    assert c["malformed"] + c["unknown"] + c["invalid"] + c["errors"] + c["dropped"] >= 5000, c  # the garbage reached the server
    assert c["malformed"] >= 2000 and c["unknown"] >= 1000
    after = mon.of("/momu/pose/frame", since=flood_end)
    assert len(after) >= 30, "pose stream stopped after the flood"
    during = mon.of("/momu/pose/frame", since=flood_t0)
    assert len(during) - len(after) > 0
    status = [t for t, _ in mon.of("/momu/status", since=flood_t0)]
    _status_rate_ok([flood_t0] + status)
    assert mon.of("/momu/beat", since=flood_end), "beats stopped after the flood"
    assert rss1 - rss0 < 30.0, (rss0, rss1)
    assert engine.hop_s == 0.5  # the bad control messages changed nothing


def test_nan_and_no_person_frames_are_handled():
    mon = OscMonitor()
    control = ControlInput("127.0.0.1", 0)
    engine = LiveEngine(EngineConfig(mode="motion2music", heartbeat_hz=4.0), OscPoseSource(),
                        make_backend("motion2music", "passthrough"), make_output(None, "127.0.0.1", mon.port),
                        control=control)
    stop = threading.Event()
    runner = threading.Thread(target=engine.run, kwargs={"duration": 7.0})
    sender = threading.Thread(target=_dance_sender, args=(control.port, stop, 2.0, 4.0, 6.5))
    runner.start()
    sender.start()
    sender.join(15)
    runner.join(20)
    mon.close()
    frames = mon.of("/momu/pose/frame")
    assert len(frames) > 100
    for _, a in frames:
        assert len(a) == 58 and all(math.isfinite(v) for v in a[3:])  # NaN never leaves the engine
    msgs = [status_fields(a)["message"] for _, a in mon.of("/momu/status")]
    assert any("no person" in m for m in msgs)  # the all-NaN frames were reported as nobody there
    assert any("pass-through" in m for m in msgs)  # and the mode says it is not a model
    assert engine.windows >= 8 and engine.ingest_errors == 0


def test_missing_camera_is_reported_and_retried_without_crashing():
    mon = OscMonitor()
    source = CameraSource(index=57, retry_s=(0.2, 0.4))  # no such camera: OpenCV really fails to open it
    engine = LiveEngine(EngineConfig(mode="beats", heartbeat_hz=2.0), source, make_backend("beats"),
                        make_output(None, "127.0.0.1", mon.port))
    assert engine.run(duration=3.0).startswith("duration")
    mon.close()
    assert source.stats.reopens >= 3 and source.stats.errors >= 3
    msgs = [status_fields(a)["message"] for _, a in mon.of("/momu/status")]
    assert len(msgs) >= 5 and any("cannot open camera 57" in m and "retrying" in m for m in msgs)


def test_control_messages_change_the_running_engine():
    mon = OscMonitor()
    control = ControlInput("127.0.0.1", 0)
    engine = LiveEngine(EngineConfig(mode="joint", heartbeat_hz=2.0), make_source_none(), make_backend("joint", "passthrough"),
                        make_output(None, "127.0.0.1", mon.port), control=control)
    runner = threading.Thread(target=engine.run, kwargs={"duration": 30.0})
    runner.start()
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert _wait_for(lambda: engine.windows >= 2, 10)
        s.sendto(osc_message("/momu/engine/set/hop", [0.25]), ("127.0.0.1", control.port))
        s.sendto(osc_message("/momu/tempo/set/bpm", [100.0]), ("127.0.0.1", control.port))
        assert _wait_for(lambda: engine.hop_s == 0.25 and abs(engine.tracker.bpm - 100) < 1e-6, 5)
        s.sendto(osc_message("/momu/engine/set/mode", ["beats"]), ("127.0.0.1", control.port))
        s.sendto(osc_message("/momu/engine/set/steps", [4]), ("127.0.0.1", control.port))
        assert _wait_for(lambda: engine.cfg.mode == "beats" and engine.backend.info.mode == "beats", 5)
        assert engine.controls["/momu/engine/set/steps"] == 4
        s.sendto(osc_message("/momu/engine/stop", []), ("127.0.0.1", control.port))
        runner.join(10)
        assert not runner.is_alive() and engine.stop_reason == "control message"
    finally:
        s.close()
        engine.stop()
        runner.join(5)
        mon.close()
    # joint idle mode free-runs: generated poses and beats went out
    assert mon.of("/momu/gen/pose/frame") and mon.of("/momu/beat")


def make_source_none():
    from momu_live.live.sources import make_source

    return make_source("none")


class _SlowBackend:
    """A real back-end (the metronome) that takes 0.7 s a window: slower than the 0.25 s hop."""

    def __init__(self):
        from momu_live.live.backend import ClickBackend

        self.inner = ClickBackend("joint", hum=False, free_run=True)
        self.info = self.inner.info
        self.steps: list[tuple[float, float]] = []  # (window end, engine clock when it ran)

    def init_state(self):
        return self.inner.init_state()

    def step(self, window, state):
        time.sleep(0.7)
        self.steps.append((window.t_end, self.engine.clock()))
        return self.inner.step(window, state)


def test_slow_model_skips_windows_instead_of_growing_latency():
    mon = OscMonitor()
    be = _SlowBackend()
    engine = LiveEngine(EngineConfig(mode="joint", hop_s=0.25, window_s=1.0, heartbeat_hz=2.0), make_source_none(), be,
                        make_output(None, "127.0.0.1", mon.port))
    be.engine = engine
    engine.run(duration=7.0)
    mon.close()
    assert engine.skipped_windows > 5 and engine.dropped >= engine.skipped_windows
    lag = np.array([c - t for t, c in be.steps])  # how far behind real time each window was processed
    assert len(lag) >= 6 and lag[-3:].max() < 2 * 0.25 + 0.7 + 0.3, lag  # bounded, not growing
    st = [a for _, a in mon.of("/momu/status")]
    assert st and status_fields(st[-1])["dropped"] >= engine.skipped_windows - 2  # drops are reported in the heartbeat


class _SlowSynth:
    """A real, slow back-end: a continuous tone for each window's hop and the procedural dancer's poses,
    0.7 s a window (slower than the 0.25 s hop), so windows are skipped and both streams would have holes."""

    def __init__(self):
        from momu_live.live.backend import JointPassthrough

        self.inner = JointPassthrough()
        self.info = self.inner.info

    def init_state(self):
        return self.inner.init_state()

    def step(self, window, state):
        time.sleep(0.7)
        out, state = self.inner.step(window, state)
        sr = self.info.sample_rate
        n0, n1 = int(round(window.hop_start * sr)), int(round(window.t_end * sr))
        t = np.arange(n0, n1) / sr
        out.audio, out.audio_time = (0.4 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), n0 / sr
        return out, state


def test_late_windows_never_leave_silence_or_a_frozen_avatar(tmp_path):
    """Under load the engine continues both generated streams instead of leaving holes (continuity.py)."""
    import soundfile as sf

    from momu_live.live.recorder import Recorder

    mon = OscMonitor()
    rec = Recorder(tmp_path / "rec", 22050)
    engine = LiveEngine(EngineConfig(mode="joint", hop_s=0.25, window_s=1.0, heartbeat_hz=2.0), make_source_none(),
                        _SlowSynth(), make_output(None, "127.0.0.1", mon.port), recorder=rec)
    engine.run(duration=8.0)
    mon.close()
    assert engine.skipped_windows > 5  # the back-end really fell behind
    y, sr = sf.read(tmp_path / "rec" / "generated.wav")
    loud = np.abs(y) > 1e-3
    first, last = np.flatnonzero(loud)[[0, -1]]
    quiet = np.diff(np.flatnonzero(loud[first:last + 1]))
    assert len(y) > 5 * sr and quiet.max() < 0.05 * sr  # no hole over 50 ms in the recorded audio
    times = np.array([t for t, _ in mon.of("/momu/gen/pose/frame")])
    steady = times[(times > times[0] + 1.0) & (times < times[-1] - 1.0)]  # not the start-up, not the shut-down
    assert len(times) > 50 and np.diff(steady).max() < 0.2  # no frozen avatar over 200 ms
    msgs = [status_fields(a)["message"] for _, a in mon.of("/momu/status")]
    assert any("late windows: continued" in m for m in msgs)  # the status says what it did


def test_status_warns_about_silent_input_and_a_receiver_nobody_listens_to(tmp_path):
    """A performer must see at once that the DAW sends silence or that the OSC port has no listener."""
    import soundfile as sf

    from momu_live.bridge.router import Router
    from momu_live.bridge.events import Status
    from momu_live.live.sources import AudioFileSource

    sr = 22050
    y = np.zeros(int(8 * sr), np.float32)
    y[: 3 * sr] = 0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * sr) / sr)  # 3 s of tone, then silence
    sf.write(tmp_path / "tone_then_silence.wav", y, sr)
    dead = free_udp_port()  # nobody listens there: the kernel answers with ICMP port unreachable
    router = Router.from_preset("generic", {"osc_host": "127.0.0.1", "osc_port": dead, "midi": False, "listen": False})
    seen: list[Status] = []

    class Tap:
        def emit(self, ev):
            if isinstance(ev, Status):
                seen.append(ev)

        def close(self):
            pass

    router.extra.append(Tap())
    engine = LiveEngine(EngineConfig(mode="beats", heartbeat_hz=4.0), AudioFileSource(tmp_path / "tone_then_silence.wav"),
                        make_backend("beats"), router)
    engine.run(duration=7.5)
    early = [s.message for s in seen if 1.0 <= s.time < 3.0]
    late = [s.message for s in seen if s.time >= 6.0]
    assert early and not any("input silent" in m for m in early)  # the tone is not silence
    assert late and all("input silent" in m for m in late)  # > 2 s of silence is reported
    assert any(f"no OSC receiver at 127.0.0.1:{dead}" in m for m in late)


class _StepsCostBackend:
    """A real back-end (the metronome) whose cost grows with the sampler steps it is asked for, like the model."""

    def __init__(self, steps: int = 4, per_step_s: float = 0.1):
        from dataclasses import replace

        from momu_live.live.backend import ClickBackend

        self.inner = ClickBackend("joint", hum=False, free_run=True)
        self.info = replace(self.inner.info, steps=steps)
        self.per_step_s = per_step_s
        self.seen: list[tuple[int, float]] = []  # (steps, beat strength) each window asked for

    def init_state(self):
        return self.inner.init_state()

    def step(self, window, state):
        from momu_live.bridge.grammar import BEAT_ADDR, STEPS_ADDR

        steps = int(window.controls.get(STEPS_ADDR, self.info.steps))
        self.seen.append((steps, float(window.controls.get(BEAT_ADDR, 1.0))))
        time.sleep(self.per_step_s * steps)
        return self.inner.step(window, state)


def test_load_ladder_gives_up_guidance_then_steps_and_takes_them_back():
    from momu_live.live.scheduler import LoadConfig

    mon = OscMonitor()
    be = _StepsCostBackend(steps=4, per_step_s=0.1)  # 0.4 s a window at 4 steps: 160 % of the 0.25 s hop
    engine = LiveEngine(EngineConfig(mode="joint", hop_s=0.25, window_s=1.0, heartbeat_hz=4.0), make_source_none(), be,
                        make_output(None, "127.0.0.1", mon.port))
    engine.scheduler.cfg = replace(engine.scheduler.cfg, load=LoadConfig(recover_s=1.5))
    runner = threading.Thread(target=engine.run, kwargs={"duration": 14.0})
    runner.start()
    try:
        assert _wait_for(lambda: (2, 0.0) in be.seen, 8)  # guidance off, then half the steps: 0.2 s, under the hop
        n_under = len(be.seen)
        be.per_step_s = 0.01  # the load goes away (the hog stopped)
        assert _wait_for(lambda: be.seen[-1] == (4, 1.0), 10)  # everything given back, one rung at a time
    finally:
        engine.stop()
        runner.join(10)
        mon.close()
    assert engine.adaptations >= 4 and engine.scheduler.level == 0 and engine.hop_s == 0.25
    assert all(s >= 2 for s, _ in be.seen[:n_under])  # it stopped at the rung that was enough (never 1 step)
    msgs = [str(a) for _, a in mon.of("/momu/status")]
    assert any("under load" in m and "beat guidance off" in m for m in msgs)


def test_a_held_tempo_publishes_beats_with_no_input_at_all():
    """--source none with a tempo set over OSC: the beat clock runs on its own, on the held tempo."""
    import socket

    from momu_live.live.control import ControlInput

    mon = OscMonitor()
    control = ControlInput("127.0.0.1", 0)
    engine = LiveEngine(EngineConfig(mode="beats"), make_source_none(), make_backend("beats"),
                        make_output(None, "127.0.0.1", mon.port), control=control)
    runner = threading.Thread(target=engine.run, kwargs={"duration": 6.0})
    runner.start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        time.sleep(0.5)
        assert not mon.of("/momu/beat")  # nothing drives the clock yet
        s.sendto(osc_message("/momu/tempo/set/bpm", [100.0]), ("127.0.0.1", control.port))
        runner.join(10)
    finally:
        s.close()
        mon.close()
    beats = [beat_fields(a) for _, a in mon.of("/momu/beat")]
    assert len(beats) >= 6 and {b["source"] for b in beats} == {"manual"}
    gaps = np.diff([b["time"] for b in beats])
    assert np.allclose(gaps, 0.6, atol=0.01)  # 100 BPM, on the clock's own grid
    assert [b["index"] for b in beats] == list(range(beats[0]["index"], beats[0]["index"] + len(beats)))
