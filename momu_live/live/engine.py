"""The live engine: sources -> window buffer -> scheduler/inference worker -> outputs, all bounded.

Threads (none blocks another; every hand-over is a bounded, dropping structure):

- source thread(s) call ``ingest(item)`` (O(1): ring append, online tempo/beat tracking, enqueue the
  captured pose frame and any beat);
- the inference worker waits for the input clock to pass the next window end (window ``window_s``,
  hop ``hop_s``), cuts the window from the rings and calls ``backend.step(window, state)`` with the
  continuation state of the previous window; when it falls more than ``max_lag_hops`` hops behind it
  skips windows (counted) instead of letting latency grow;
- the output thread sends events (router/OSC, audio device, recorder); generated poses are played out
  at their stream time plus ``playout_s`` so an avatar moves smoothly instead of in bursts;
- the heartbeat thread queues a ``Status`` at ``heartbeat_hz`` (>= 1 Hz) with the median latency of
  each stage over the last second: capture, pose, window, model, decode, send and end to end (e2e,
  from frame capture to sent).

State that lives across windows (backend continuation, tempo, clocks) is owned by exactly one
thread; the engine holds no globals.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Status
from momu_live.live.window import LiveWindow
from momu_live.live.buffer import AudioRing, DropQueue, PoseRing
from momu_live.live.sources import AudioItem, PoseItem, Source
from momu_live.live.tempo import TempoConfig, TempoTracker
from momu_live.models.skeleton import CANONICAL_JOINTS

log = logging.getLogger(__name__)
STAGES = ("capture", "pose", "tempo", "window", "model", "decode", "send", "e2e", "e2e_gen", "e2e_wire")


@dataclass
class EngineConfig:
    mode: str = "beats"
    window_s: float = 2.0
    hop_s: float = 0.5
    heartbeat_hz: float = 2.0
    sample_rate: int = 22050
    buffer_s: float = 30.0
    out_queue: int = 1024
    max_lag_hops: float = 2.0
    grace_s: float = 0.15  # a window is cut at clock >= end + grace even if the input stalls
    playout_s: float | None = None  # delay of generated poses (default: hop + 0.1 s); 0 = send at once
    realtime: bool = True
    stop_when_source_ends: bool = True
    tempo: TempoConfig = field(default_factory=TempoConfig)


class LatencyStats:
    """Per-stage latency samples (ms): recent medians for the heartbeat, a fixed ring for benchmarks.

    Each stage's history is a preallocated ring of ``keep`` (wall, ms) pairs (pages touched up front),
    so memory is flat from the first frame however long the engine runs; ``summary`` covers the
    last ``keep`` samples of each stage (20 min of 30 fps frames by default).
    """

    def __init__(self, keep: int = 36_000):
        self.recent = {s: deque(maxlen=512) for s in STAGES}  # (wall, ms)
        self.keep = int(keep)
        self._ring = {s: np.full((self.keep, 2), np.nan) for s in STAGES}  # (keep, 2) wall, ms
        self._n = dict.fromkeys(STAGES, 0)
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        if math.isfinite(ms):
            now = time.monotonic()
            self.recent[stage].append((now, ms))
            with self._lock:
                self._ring[stage][self._n[stage] % self.keep] = (now, ms)
                self._n[stage] += 1

    def history(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """(wall times, ms) of a stage's kept samples, oldest first."""
        with self._lock:
            n, r = self._n[stage], self._ring[stage]
            idx = np.arange(max(0, n - self.keep), n) % self.keep
            return r[idx, 0].copy(), r[idx, 1].copy()

    def medians(self, horizon_s: float = 1.0) -> dict:
        now = time.monotonic()
        out = {}
        for s, dq in self.recent.items():
            vals = [ms for (w, ms) in list(dq) if now - w <= horizon_s]
            if vals:
                out[s] = round(float(np.median(vals)), 3)
        return out

    def summary(self, since: float = -math.inf) -> dict:
        out = {}
        for s in STAGES:
            w, ms = self.history(s)
            vals = ms[w >= since]
            if len(vals):
                out[s] = {"median": float(np.median(vals)), "p95": float(np.percentile(vals, 95)),
                          "max": float(vals.max()), "n": int(len(vals))}
        return out


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class LiveEngine:
    def __init__(self, cfg: EngineConfig, source: Source, backend=None, output=None, recorder=None,
                 control=None, link=None, backend_factory=None):
        self.cfg = cfg
        self.source = source
        self.backend = backend
        # mode -> back-end for live mode switches, with the choices the back-end was made with
        # (model folder, steps, device...); default: make_backend(mode) with the shipped model
        self.backend_factory = backend_factory
        self.output = output
        self.recorder = recorder
        self.control = control
        self.link = link  # optional tempo follower with beat(time, bpm) / close() (Ableton Link)
        self.stats = LatencyStats()
        self.poses = PoseRing(int(cfg.buffer_s * 120) + 16, len(CANONICAL_JOINTS))
        self.audio = AudioRing(cfg.buffer_s, cfg.sample_rate)
        self.out = DropQueue(cfg.out_queue)
        self.tracker = TempoTracker(cfg.tempo)
        self._tempo_lock = threading.Lock()
        self._ingest_lock = threading.Lock()
        self._data = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._worker_done = threading.Event()  # the output thread drains until the worker has flushed
        self._t0 = time.monotonic()
        self._started = False
        self.window_s, self.hop_s = cfg.window_s, cfg.hop_s
        self.gain = 1.0
        self.skipped_windows = 0
        self.windows = 0
        self.ingest_errors = 0
        self.last_beat: tuple[float, int] | None = None  # (time, index) of the last tracked beat
        self.beats_sent = 0
        self.frames_in = deque(maxlen=4096)  # wall times of input frames (fps)
        self._frame_walls = np.full((4096, 2), np.nan)  # ring: (frame index, capture wall) of primary pose frames
        self.no_person = False
        self._reports: deque = deque(maxlen=8)  # (wall, message)
        self.stop_reason = ""
        self._gen_frame = itertools.count()
        self.status_count = 0
        self.rss: deque = deque(maxlen=86_400)  # (stream time, MiB) once per heartbeat
        self._primary_person = 0
        self.controls: dict = {}
        self._pending_mode: str | None = None
        if control is not None:
            control.handlers.update({
                "/momu/engine/set/hop": self._set("hop_s", 0.02, 30.0),
                "/momu/engine/set/window": self._set("window_s", 0.1, 60.0),
                "/momu/output/set/gain": self._set("gain", 0.0, 4.0),
                "/momu/tempo/set/bpm": self._on_bpm,
                "/momu/engine/stop": lambda a, args: self.stop("control message"),
            })
            if hasattr(source, "on_message"):
                control.handlers[source.ADDRESS] = source.on_message
            control.fallback = self._on_other_control

    # -- control ----------------------------------------------------------------------------
    def _set(self, attr: str, lo: float, hi: float):
        def handler(address, args):
            v = float(args[0])
            if math.isfinite(v) and lo <= v <= hi:
                setattr(self, attr, v)
            else:
                raise ValueError(f"{address} {v} out of [{lo}, {hi}]")
        return handler

    def _on_other_control(self, address: str, args: list) -> bool:
        """The rest of the bridge's control grammar: mode switch, transport, model parameters."""
        from momu_live.bridge.grammar import GrammarError, parse_control

        try:
            c = parse_control(address, args)
        except GrammarError:
            return False
        if c.address == "/momu/engine/set/mode":
            self._pending_mode = c.value  # swapped in by the worker between two windows
        elif c.address == "/momu/transport/set/play" and hasattr(self.output, "transport"):
            self.output.transport(bool(c.value))
        self.controls[c.address] = c.value  # e.g. steps/guidance for a model back-end (LiveWindow.controls)
        return True

    def _on_bpm(self, address, args):
        v = float(args[0])
        if not (20.0 <= v <= 300.0):
            raise ValueError(f"bpm {v} out of range")
        with self._tempo_lock:
            self.tracker.set_bpm(v)

    # -- clock and reports ------------------------------------------------------------------
    def clock(self) -> float:
        return time.monotonic() - self._t0

    def report(self, msg: str) -> None:
        log.info("%s", msg)
        self._reports.append((time.monotonic(), msg))

    @property
    def dropped(self) -> int:
        return int(self.source.stats.dropped + self.out.dropped + self.skipped_windows)

    def _queue(self, ev, meta: dict | None = None) -> None:
        self.out.put((ev, meta or {}))

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
            with self._tempo_lock:
                ticks = self.tracker.add_pose(joints, it.t)
            self.stats.add("tempo", (time.monotonic() - w0) * 1000.0)
            self._emit_ticks(ticks, "motion", it.wall)

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
            with self._tempo_lock:
                ticks = self.tracker.add_audio(it.samples, it.t, it.sample_rate)
            self.stats.add("tempo", (time.monotonic() - w0) * 1000.0)
            self._emit_ticks(ticks, "music", it.wall)

    def _emit_ticks(self, ticks, source: str, wall: float) -> None:
        for b in ticks:
            self.last_beat = (b.time, b.index)
            ev = Beat(b.index, b.time, round(b.bpm, 3), 0.0, b.downbeat, source)
            self._queue(ev, {"wall": wall})
            if self.link is not None:
                try:
                    self.link.beat(b.time, b.bpm)
                except Exception as exc:
                    log.debug("link: %r", exc)

    # -- inference worker ---------------------------------------------------------------------
    def _input_time(self) -> float:
        kind = self.source.kind
        if kind == "pose":
            return self.poses.latest_time
        if kind == "audio":
            return self.audio.latest_time
        return self.clock()

    def _worker(self) -> None:
        try:
            self._work()
        finally:
            self._worker_done.set()

    def _work(self) -> None:
        if self.backend is None:
            return
        state = self.backend.init_state()
        next_end = None
        while not self._stop.is_set():
            t_in = self._input_time()
            if next_end is None:
                if not math.isfinite(t_in):
                    with self._data:
                        self._data.wait(0.05)
                    continue
                next_end = t_in + self.hop_s
            ready = t_in >= next_end or (self.cfg.realtime and self.clock() >= next_end + self.cfg.grace_s
                                         and self.clock() - t_in > self.cfg.grace_s)
            if not ready:
                if self.source.finished and self.cfg.stop_when_source_ends and not self.cfg.realtime:
                    break
                with self._data:
                    self._data.wait(0.02)
                continue
            behind = max(t_in, self.clock() if self.cfg.realtime else t_in) - next_end
            if behind > self.cfg.max_lag_hops * self.hop_s:  # too late: skip to the newest window
                n_skip = int(behind // self.hop_s)
                self.skipped_windows += n_skip
                next_end += n_skip * self.hop_s
            if self._pending_mode is not None:  # live mode switch: a new back-end with fresh state
                mode, self._pending_mode = self._pending_mode, None
                try:
                    if self.backend_factory is not None:
                        self.backend = self.backend_factory(mode)
                    else:
                        from momu_live.live.backend import make_backend

                        self.backend = make_backend(mode, sample_rate=self.cfg.sample_rate)
                    state = self.backend.init_state()
                    self.cfg.mode = mode
                    self.report(f"mode switched to {mode}")
                except Exception as exc:
                    self.report(f"cannot switch to mode {mode}: {exc}")
            try:
                state = self._run_window(next_end, state)
            except Exception as exc:
                self.report(f"backend {self.backend.info.name} failed on a window: {exc!r}")
                log.exception("backend step failed")
            next_end += self.hop_s
        self._flush_backend(state)

    def _flush_backend(self, state) -> None:
        """At stop: emit what a back-end holds back (cross-fade latents, vocoder tail), so recordings are whole."""
        flush = getattr(self.backend, "flush", None)
        if flush is None or state is None:
            return
        try:
            out, _ = flush(state)
        except Exception as exc:
            self.report(f"backend {self.backend.info.name} failed to flush: {exc!r}")
            return
        if out.audio is not None and len(out.audio):
            self._queue(AudioBlock((out.audio * self.gain).astype(np.float32), self.cfg.sample_rate, out.audio_time),
                        {"wall": time.monotonic()})

    def _run_window(self, t_end: float, state):
        """Cut the window ending at ``t_end``, run the back-end, queue its outputs; returns the new state."""
        w0 = time.monotonic()
        t_start = t_end - self.window_s
        pw = self.poses.window(t_start, t_end)
        audio = self.audio.read(t_start, t_end) if self.source.kind == "audio" else np.zeros(0, np.float32)
        with self._tempo_lock:
            bpm = self.tracker.bpm
        lb = self.last_beat
        win = LiveWindow(index=self.windows, t_start=t_start, t_end=t_end, hop_start=t_end - self.hop_s,
                         pose_times=pw.times, poses=pw.joints, pose_confidence=pw.confidence, pose_valid=pw.valid,
                         audio=audio, sample_rate=self.cfg.sample_rate, bpm=bpm,
                         beat_time=lb[0] if lb else None, beat_index=lb[1] if lb else 0,
                         meter=self.cfg.tempo.meter, controls=dict(self.controls))
        m0 = time.monotonic()
        self.stats.add("window", (m0 - w0) * 1000.0)
        out, state = self.backend.step(win, state)
        model_ms = (time.monotonic() - m0) * 1000.0
        self.stats.add("model", model_ms - out.decode_ms)
        self.stats.add("decode", out.decode_ms)
        self.windows += 1
        meta = {"wall": w0 - max(0.0, self.clock() - t_end)}  # e2e from the window's last input
        if out.audio is not None and len(out.audio):
            self._queue(AudioBlock((out.audio * self.gain).astype(np.float32), self.cfg.sample_rate, out.audio_time), meta)
        if out.poses is not None and len(out.poses):
            for t, j in zip(out.pose_times, out.poses):
                self._queue(PoseFrame(0, next(self._gen_frame), float(t), j.astype(np.float32), CANONICAL_JOINTS,
                                      None, "generated"), {**meta, "play_at": float(t)})
        if self.cfg.mode == "joint" and self.source.kind == "none":
            for k, t, bpm_b, down in out.beats:
                self.last_beat = (t, k)
                self._queue(Beat(int(k), float(t), round(float(bpm_b), 3), 0.0, bool(down), "generated"), meta)
        return state

    # -- output ----------------------------------------------------------------------------
    def _output(self) -> None:
        playout = self.cfg.playout_s if self.cfg.playout_s is not None else self.hop_s + 0.1
        heap: list = []
        seq = itertools.count()
        while True:
            timeout = 0.05
            if heap:
                timeout = max(0.0, min(timeout, heap[0][0] + playout - self.clock()))
            item = self.out.get(timeout=timeout)
            if item is not None:
                ev, meta = item
                if "play_at" in meta and self.cfg.realtime and playout > 0:
                    heapq.heappush(heap, (meta["play_at"], next(seq), ev, meta))
                else:
                    self._send(ev, meta)
            while heap and (heap[0][0] + playout <= self.clock() or self._stop.is_set()):
                _, _, ev, meta = heapq.heappop(heap)
                self._send(ev, meta)
            if item is None and self._stop.is_set() and self._worker_done.is_set() and not heap and len(self.out) == 0:
                break

    def _send(self, ev, meta: dict) -> None:
        s0 = time.monotonic()
        if self.output is not None:
            try:
                self.output.emit(ev)
            except Exception as exc:
                log.debug("output failed: %r", exc)
        if self.recorder is not None:
            try:
                self.recorder.add(ev)
            except Exception as exc:
                self.report(f"recording failed: {exc!r}")
        now = time.monotonic()
        self.stats.add("send", (now - s0) * 1000.0)
        if isinstance(ev, Beat):
            self.beats_sent += 1
        if "wall" in meta and not isinstance(ev, Status):
            gen = isinstance(ev, AudioBlock) or (isinstance(ev, PoseFrame) and ev.source == "generated")
            if not (gen and "play_at" in meta):  # played-out poses wait on purpose: not latency
                self.stats.add("e2e_gen" if gen else "e2e", (now - meta["wall"]) * 1000.0)

    # -- heartbeat -------------------------------------------------------------------------
    def status(self) -> Status:
        now = time.monotonic()
        fps = sum(1 for w in list(self.frames_in) if now - w <= 1.0)
        parts = [self.backend.info.label if self.backend is not None else "beats (no model)"]
        if self.no_person and self.source.kind == "pose":
            parts.append("no person")
        parts += [m for (w, m) in list(self._reports) if now - w <= 5.0]
        with self._tempo_lock:
            bpm = self.tracker.bpm
        return Status(round(self.clock(), 4), self.cfg.mode, self.stats.medians(1.0), self.dropped, float(fps),
                      round(float(bpm), 3), "; ".join(parts))

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
        if self.control is not None:
            self.control.start()
        for name, target in (("momu-worker", self._worker), ("momu-output", self._output), ("momu-heartbeat", self._heartbeat)):
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
        for closer in (self.control, self.link):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:
                    log.warning("closing %s: %r", type(closer).__name__, exc)
        if self.recorder is not None:
            self.recorder.close({"stop_reason": self.stop_reason, "dropped": self.dropped, "windows": self.windows,
                                 "skipped_windows": self.skipped_windows, "beats": self.beats_sent,
                                 "latency": self.stats.summary(),
                                 "control": self.control.counters() if self.control is not None else {}})
        if self.output is not None:
            try:
                self.output.close()
            except Exception as exc:
                log.warning("closing output: %r", exc)
