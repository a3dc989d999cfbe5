"""The live engine: sources -> input rings -> scheduler/inference worker -> playout -> sinks, all bounded.

The engine composes four parts, each in its own module:

- **control binding** (``control.py``): the grammar's control table bound to the actions below
  (``_actions``), on the bridge's OSC server;
- **tempo** (``tempo_keeper.py``): the predictive beat clock, who holds the tempo, beats published ahead;
- **ingest** (here): source threads call ``ingest(item)`` (O(1): ring append, online tempo/beat
  tracking, queue the captured pose frame and any beat);
- **scheduling** (``scheduler.py``): the inference worker cuts windows from the rings (``cut_window``)
  and runs the back-end with explicit continuation state, skipping windows when it falls behind;
- **playout** (``playout.py``): one thread sends events to the output (router: OSC, MIDI, audio
  device) and the recorder, generated poses at their stream time plus ``playout_s``.

A heartbeat thread queues a ``Status`` at ``heartbeat_hz`` (>= 1 Hz) with the median latency of each
stage (``latency.py``) over the last second.  State that lives across windows (backend continuation,
tempo, clocks) is owned by exactly one thread; the engine holds no globals.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from momu_live.bridge.events import PoseFrame, Sink, Status
from momu_live.live.beatclock import BeatClockConfig
from momu_live.live.buffer import AudioRing, PoseRing
from momu_live.live.continuity import ContinuityConfig
from momu_live.live.control import ControlBinding, ControlInput
from momu_live.live.latency import LatencyStats, rss_mb
from momu_live.live.playout import Playout
from momu_live.live.scheduler import LiveSettings, SchedulerConfig, WindowScheduler
from momu_live.live.sources import AudioItem, PoseItem, Source
from momu_live.live.tempo_keeper import TempoKeeper
from momu_live.live.tempo import TempoConfig
from momu_live.live.window import LiveWindow
from momu_live.models.skeleton import CANONICAL_JOINTS
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.modes import Mode

log = logging.getLogger(__name__)
PUMP_S = 0.02  # how often held-tempo beats are published while no input drives the beat clock
SILENT_S = 2.0  # an audio input this long below SILENT_DBFS is reported in the status
SILENT_DBFS = -70.0


@dataclass
class EngineConfig:
    mode: str = "beats"
    window_s: float = 2.0
    hop_s: float = 0.5
    heartbeat_hz: float = 2.0
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    buffer_s: float = 30.0
    out_queue: int = 1024
    max_lag_hops: float = 2.0
    grace_s: float = 0.15  # a window is cut at clock >= end + grace even if the input stalls
    playout_s: float | None = None  # fixed delay of generated poses; None: adaptive from hop + 0.1 s; 0 = send at once
    realtime: bool = True
    stop_when_source_ends: bool = True
    tempo: TempoConfig = field(default_factory=TempoConfig)  # the late tracker's settings (kept for callers)
    beatclock: BeatClockConfig = field(default_factory=BeatClockConfig)  # the predictive beat clock (beats, tempo)
    continuity: ContinuityConfig | None = field(default_factory=ContinuityConfig)  # None: no gap filling


class LiveEngine:
    def __init__(self, cfg: EngineConfig, source: Source, backend=None, output: Sink | None = None,
                 recorder: Sink | None = None, control: ControlInput | None = None, link=None, backend_factory=None):
        self.cfg = cfg
        self.source = source
        self.output = output
        self.recorder = recorder
        self.control = control
        self.stats = LatencyStats()
        self.poses = PoseRing(int(cfg.buffer_s * 120) + 16, len(CANONICAL_JOINTS))
        self.audio = AudioRing(cfg.buffer_s, cfg.sample_rate)
        self.settings = LiveSettings(cfg.window_s, cfg.hop_s)
        self._ingest_lock = threading.Lock()
        self._data = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._worker_done = threading.Event()  # the output thread drains until the worker has flushed
        self._t0 = time.monotonic()
        self._started = False
        self.ingest_errors = 0
        self.frames_in = deque(maxlen=4096)  # wall times of input frames (fps)
        self._frame_walls = np.full((4096, 2), np.nan)  # ring: (frame index, capture wall) of primary pose frames
        self.no_person = False
        self._reports: deque = deque(maxlen=8)  # (wall, message)
        self.stop_reason = ""
        self.status_count = 0
        self.rss: deque = deque(maxlen=86_400)  # (stream time, MiB) once per heartbeat
        self._primary_person = 0
        self.tempo = TempoKeeper(cfg.beatclock, put=self._queue, report=self.report, clock=self.clock,
                                 t0=lambda: self._t0, realtime=cfg.realtime, link=link)
        self.playout = Playout(self.clock, self.stats, self.report, output, recorder, cfg.out_queue, cfg.realtime,
                               cfg.sample_rate, lambda: self.settings.hop_s, cfg.continuity)
        self.scheduler = WindowScheduler(
            SchedulerConfig(cfg.realtime, cfg.grace_s, cfg.max_lag_hops, cfg.stop_when_source_ends, cfg.sample_rate),
            self.settings, backend, backend_factory, clock=self.clock, input_time=self._input_time,
            source_finished=lambda: self.source.finished, cut=self.cut_window, put=self._queue, stats=self.stats,
            report=self.report, wakeup=self._data,
            emits_beats=lambda: self.cfg.mode == Mode.JOINT and self.source.kind == "none" and not self.tempo_origin)
        self.scheduler.mode_switched = self._mode_switched
        self.scheduler.on_beat = lambda t, k: setattr(self.tempo, "last_beat", (t, k))
        if control is not None:
            inputs = {source.ADDRESS: source.on_message} if hasattr(source, "on_message") else {}
            control.bind(ControlBinding(self._actions(), inputs))

    # -- control actions (one per grammar target; momu_live/live/control.py binds them) ---------
    def _actions(self) -> dict:
        s = self.settings

        def set_tempo(v, c):  # /momu/tempo/set/bpm: >= 20 holds that tempo, 0 (< 20) hands it back
            if v >= 20.0:
                self.tempo.hold(v, "osc")
            else:
                self.tempo.follow_input()

        def follow(v, c):  # /momu/tempo/set/follow: 1 follows the input again, 0 holds the current tempo
            if v:
                self.tempo.follow_input()
            elif self.tempo.bpm > 0:
                self.tempo.hold(self.tempo.bpm, "osc")

        def set_model(v, c):
            s.model_controls[c.address] = v  # steps / guidance / beat for a model back-end (LiveWindow.controls)

        def play(v, c):
            transport = getattr(self.output, "transport", None)
            if transport is not None:
                transport(bool(v))

        return {"hop": lambda v, c: setattr(s, "hop_s", v), "window": lambda v, c: setattr(s, "window_s", v),
                "gain": lambda v, c: setattr(s, "gain", v), "bpm": set_tempo, "follow": follow, "model": set_model,
                "mode": lambda v, c: setattr(s, "pending_mode", v), "play": play,
                "stop": lambda v, c: self.stop("control message")}

    # -- tempo (live/tempo_keeper.py): the API callers use (MIDI clock in, Link, tests) -------------
    def set_manual_tempo(self, bpm: float, origin: str = "osc", beat_at: float | None = None) -> None:
        self.tempo.hold(bpm, origin, beat_at)

    def follow_input(self) -> None:
        self.tempo.follow_input()

    def external_tempo(self, bpm: float, origin: str, at_monotonic: float | None = None) -> None:
        self.tempo.external(bpm, origin, at_monotonic)

    tracker = property(lambda self: self.tempo.tracker)
    tempo_origin = property(lambda self: self.tempo.origin)
    last_beat = property(lambda self: self.tempo.last_beat)
    link = property(lambda self: self.tempo.link)

    def _mode_switched(self, mode: str) -> None:
        self.cfg.mode = mode

    # settings and counters, by name (read by tests, the CLI summary, the benchmark)
    hop_s = property(lambda self: self.settings.hop_s)
    window_s = property(lambda self: self.settings.window_s)
    gain = property(lambda self: self.settings.gain)
    controls = property(lambda self: self.settings.model_controls)
    backend = property(lambda self: self.scheduler.backend)
    windows = property(lambda self: self.scheduler.windows)
    skipped_windows = property(lambda self: self.scheduler.skipped_windows)
    adaptations = property(lambda self: self.scheduler.adaptations)
    beats_sent = property(lambda self: self.playout.beats_sent)
    out = property(lambda self: self.playout.queue)

    # -- clock and reports ------------------------------------------------------------------
    def clock(self) -> float:
        return time.monotonic() - self._t0

    def report(self, msg: str) -> None:
        log.info("%s", msg)
        self._reports.append((time.monotonic(), msg))

    @property
    def dropped(self) -> int:
        return int(self.source.stats.dropped + self.playout.dropped + self.scheduler.skipped_windows)

    def _queue(self, ev, meta: dict | None = None) -> None:
        self.playout.put(ev, meta)

    # -- ingest (source threads) --------------------------------------------------------------
    def ingest(self, item) -> None:
        """Called by sources; never blocks for long and never raises."""
        try:
            with self._ingest_lock:
                if isinstance(item, PoseItem):
                    self._ingest_pose(item)
                elif isinstance(item, AudioItem):
                    self._ingest_audio(item)
        except Exception as exc:  # bad input must never stop the stream
            self.ingest_errors += 1
            log.debug("ingest failed: %r", exc)
        with self._data:
            self._data.notify_all()

    def _ingest_pose(self, it: PoseItem) -> None:
        self.frames_in.append(time.monotonic())
        self.stats.add("capture", it.capture_ms)
        if it.pose_ms:
            self.stats.add("pose", it.pose_ms)
        joints = it.joints
        if joints is not None:
            joints = np.asarray(joints, np.float32)
            if joints.shape != (len(CANONICAL_JOINTS), 3) or not np.isfinite(joints).any():
                joints = None
        if joints is not None and it.person != self._primary_person:
            self._queue(PoseFrame(it.person, it.frame, it.t, np.nan_to_num(joints), CANONICAL_JOINTS, it.confidence),
                        {"wall": it.wall})
            return
        self.no_person = joints is None
        self.poses.append(it.t, joints, it.confidence)
        if joints is not None:
            self._frame_walls[it.frame % len(self._frame_walls)] = (it.frame, it.wall)
            self._queue(PoseFrame(it.person, it.frame, it.t, self.poses_last(), CANONICAL_JOINTS,
                                  None if it.confidence is None else np.nan_to_num(np.asarray(it.confidence, np.float32))),
                        {"wall": it.wall})
        if self.cfg.mode in ("beats", "motion2music", "joint"):
            w0 = time.monotonic()
            self.tempo.add_pose(joints, it.t)
            self.stats.add("tempo", (time.monotonic() - w0) * 1000.0)
            self.tempo.publish(self.tempo.now(it.t), "motion", it.wall)

    def capture_wall(self, frame: int) -> float | None:
        """Capture time (time.monotonic) of a recent primary pose frame, None when unknown/overwritten."""
        f, w = self._frame_walls[int(frame) % len(self._frame_walls)]
        return float(w) if f == frame else None

    def poses_last(self) -> np.ndarray:
        w = self.poses.window(self.poses.latest_time, math.inf)
        return w.joints[-1]  # (J, 3) NaN-free

    def _ingest_audio(self, it: AudioItem) -> None:
        self.frames_in.append(time.monotonic())
        self.stats.add("capture", it.capture_ms)
        if it.sample_rate != self.cfg.sample_rate:
            from momu_live.models.audio import resample

            it = AudioItem(it.t, resample(it.samples, it.sample_rate, self.cfg.sample_rate), self.cfg.sample_rate,
                           it.wall, it.capture_ms)
        self.audio.append(it.samples, it.t)
        if self.cfg.mode in ("music2motion", "joint", "beats", "motion2music"):
            w0 = time.monotonic()
            self.tempo.add_audio(it.samples, it.t, it.sample_rate)
            self.stats.add("tempo", (time.monotonic() - w0) * 1000.0)
            self.tempo.publish(self.tempo.now(it.t + len(it.samples) / it.sample_rate), "music", it.wall)

    # -- windows (called by the scheduler's worker) ---------------------------------------------
    def _input_time(self) -> float:
        kind = self.source.kind
        if kind == "pose":
            return self.poses.latest_time
        if kind == "audio":
            return self.audio.latest_time
        return self.clock()

    def cut_window(self, *, t_start: float, t_end: float, hop_start: float, index: int, controls: dict) -> LiveWindow:
        """The analysis window ``[t_start, t_end)`` from the input rings, with the tracked tempo."""
        pw = self.poses.window(t_start, t_end)
        audio = self.audio.read(t_start, t_end) if self.source.kind == "audio" else np.zeros(0, np.float32)
        bpm = self.tempo.bpm
        lb = self.tempo.last_beat
        return LiveWindow(index=index, t_start=t_start, t_end=t_end, hop_start=hop_start,
                          pose_times=pw.times, poses=pw.joints, pose_confidence=pw.confidence, pose_valid=pw.valid,
                          audio=audio, sample_rate=self.cfg.sample_rate, bpm=bpm,
                          beat_time=lb[0] if lb else None, beat_index=lb[1] if lb else 0,
                          meter=self.cfg.beatclock.meter, controls=controls)

    def _worker(self) -> None:
        try:
            self.scheduler.run(self._stop)
        finally:
            self._worker_done.set()

    def _output(self) -> None:
        fixed = self.cfg.playout_s is not None
        playout = self.cfg.playout_s if fixed else self.settings.hop_s + 0.1
        self.playout.run(playout, self._stop, self._worker_done, adaptive=not fixed)

    # -- heartbeat -------------------------------------------------------------------------
    def status(self) -> Status:
        now = time.monotonic()
        fps = sum(1 for w in list(self.frames_in) if now - w <= 1.0)
        parts = [self.backend.info.label if self.backend is not None else "beats (no model)"]
        if self.no_person and self.source.kind == "pose":
            parts.append("no person")
        if self._input_silent():
            parts.append(f"input silent (below {SILENT_DBFS:g} dBFS for {SILENT_S:g} s): check the device or DAW routing")
        problems = getattr(self.output, "problems", None)
        if problems is not None:
            try:
                parts += problems()
            except Exception as exc:
                log.debug("output problems: %r", exc)
        gave_up = self.scheduler.gave_up()
        if gave_up:
            parts.append(gave_up)
        fills = self.playout.recent_fills(5.0)
        if fills:
            parts.append("late windows: continued " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(fills.items()))
                         + " in the last 5 s")
        if self.tempo_origin:
            parts.append(f"tempo held by {self.tempo_origin}")
        parts += [m for (w, m) in list(self._reports) if now - w <= 5.0]
        bpm = self.tempo.bpm
        return Status(round(self.clock(), 4), self.cfg.mode, self.stats.medians(1.0), self.dropped, float(fps),
                      round(float(bpm), 3), "; ".join(parts))

    def _input_silent(self) -> bool:
        """True when an audio input has delivered only (near) silence over the last ``SILENT_S`` seconds."""
        if self.source.kind != "audio":
            return False
        t1 = self.audio.latest_time
        if not math.isfinite(t1) or t1 < SILENT_S:
            return False
        x = self.audio.read(t1 - SILENT_S, t1)
        if len(x) < 0.5 * SILENT_S * self.cfg.sample_rate:
            return False
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        return rms < 10 ** (SILENT_DBFS / 20)

    def _beat_pump(self) -> None:
        """Publish the beat clock's beats when no input drives it (``--source none``, a stalled camera) but
        a held tempo does (OSC, MIDI clock in, Link): every ``PUMP_S`` while the input is quiet."""
        while not self._stop.wait(PUMP_S):
            if not self.tempo_origin:
                continue
            last_in = self.frames_in[-1] if self.frames_in else -math.inf
            if time.monotonic() - last_in > 2 * PUMP_S:
                try:
                    self.tempo.publish(self.clock(), "manual", time.monotonic())
                except Exception as exc:  # never let the pump die
                    log.debug("beat pump: %r", exc)

    def _heartbeat(self) -> None:
        period = 1.0 / max(1.0, self.cfg.heartbeat_hz)
        nxt = time.monotonic()
        while not self._stop.is_set():
            nxt += period
            self._queue(self.status())
            self.status_count += 1
            self.rss.append((self.clock(), rss_mb()))
            if self._stop.wait(max(0.0, nxt - time.monotonic())):
                break

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        prepare = getattr(self.source, "prepare", None)
        if prepare is not None:
            prepare()
        self._t0 = time.monotonic()
        for name, target in (("momu-worker", self._worker), ("momu-output", self._output), ("momu-heartbeat", self._heartbeat),
                             ("momu-beats", self._beat_pump)):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        self.source.start(self.ingest, self.report, self.clock)
        self._started = True

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()

    def run(self, duration: float | None = None) -> str:
        """Start, run until ``duration`` s, a stop request or the source's end; always shuts down cleanly."""
        try:
            self.start()
            while not self._stop.is_set():
                if duration is not None and self.clock() >= duration:
                    self.stop(f"duration {duration:g} s reached")
                    break
                if duration is None and self.source.finished and self.cfg.stop_when_source_ends:
                    # let the last window through, then stop
                    self._stop.wait(self.hop_s + self.cfg.grace_s + 0.1)
                    self.stop("source ended")
                    break
                self._stop.wait(0.05)
        finally:
            self.shutdown()
        return self.stop_reason

    def shutdown(self) -> None:
        self._stop.set()
        self.source.stop()
        self.source.join(5.0)
        for th in self._threads:
            th.join(5.0)
        self.tempo.close()
        for closer in (self.control,):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:
                    log.warning("closing %s: %r", type(closer).__name__, exc)
        if self.recorder is not None:
            self.recorder.close({"stop_reason": self.stop_reason, "dropped": self.dropped, "windows": self.windows,
                                 "skipped_windows": self.skipped_windows, "beats": self.beats_sent,
                                 "adaptations": self.adaptations,
                                 "continued_s": {"audio": round(self.playout.audio.filled_s, 3),
                                                 "poses": round(self.playout.poses.filled_s, 3)},
                                 "latency": self.stats.summary(),
                                 "control": self.control.counters() if self.control is not None else {}})
        if self.output is not None:
            try:
                self.output.close()
            except Exception as exc:
                log.warning("closing output: %r", exc)
