"""Scheduling: when to cut an analysis window, which back-end runs it, what its output becomes.

``WindowScheduler.run`` is the inference worker's thread body.  It waits for the input clock to pass
the next window end (window ``settings.window_s``, hop ``settings.hop_s``; or the wall clock plus a
grace period when the input stalls), asks the engine to cut the window (``cut``), runs
``backend.step(window, state)`` with the continuation state of the previous window, and turns the
``BackendOutput`` into events for the playout (audio scaled by ``settings.gain`` and soft-limited
below -1 dBFS, generated poses
with their play-out times, generated beats in joint mode).  When it falls more than ``max_lag_hops``
hops behind it skips windows (counted) instead of letting latency grow.  A mode switch requested by
a control message (``settings.pending_mode``) swaps in a new back-end with fresh state between two
windows.  At stop it flushes what the back-end holds back so recordings are whole.

The continuation state is owned by this thread alone and passed in and out of the back-end.
"""
from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from momu_live.bridge.audio_io import soft_limit
from momu_live.bridge.events import AudioBlock, Beat, PoseFrame
from momu_live.live.latency import LatencyStats
from momu_live.live.window import Backend, BackendOutput, LiveWindow
from momu_live.models.skeleton import CANONICAL_JOINTS
from momu_live.models.timebase import DEFAULT_TIMEBASE

log = logging.getLogger(__name__)


@dataclass
class LiveSettings:
    """What control messages change while the engine runs (written by the control binding, read here)."""

    window_s: float
    hop_s: float
    gain: float = 1.0
    model_controls: dict = field(default_factory=dict)  # grammar address -> validated value (steps, guidance, beat)
    pending_mode: str | None = None  # swapped in by the worker between two windows


@dataclass(frozen=True)
class SchedulerConfig:
    realtime: bool = True
    grace_s: float = 0.15  # a window is cut at clock >= end + grace even if the input stalls
    max_lag_hops: float = 2.0
    stop_when_source_ends: bool = True
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate


class WindowScheduler:
    """The inference worker (see module doc).  ``cut(t_start, t_end, hop_start, controls)`` builds a
    ``LiveWindow`` from the engine's input rings; ``put(event, meta)`` hands events to the playout."""

    def __init__(self, cfg: SchedulerConfig, settings: LiveSettings, backend: Backend | None,
                 backend_factory: Callable[[str], Backend] | None, *, clock: Callable[[], float],
                 input_time: Callable[[], float], source_finished: Callable[[], bool],
                 cut: Callable[..., LiveWindow], put: Callable[[Any, dict], None], stats: LatencyStats,
                 report: Callable[[str], None], wakeup: threading.Condition, emits_beats: Callable[[], bool]):
        self.cfg, self.settings = cfg, settings
        self.backend, self.backend_factory = backend, backend_factory
        self.clock, self.input_time, self.source_finished = clock, input_time, source_finished
        self.cut, self.put, self.stats, self.report = cut, put, stats, report
        self.wakeup, self.emits_beats = wakeup, emits_beats
        self.mode_switched: Callable[[str], None] = lambda mode: None
        self.on_beat: Callable[[float, int], None] = lambda t, k: None
        self.windows = 0
        self.skipped_windows = 0
        self._gen_frame = itertools.count()

    # -- thread body ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        if self.backend is None:
            return
        state = self.backend.init_state()
        next_end = None
        while not stop.is_set():
            t_in = self.input_time()
            hop = self.settings.hop_s
            if next_end is None:
                if not math.isfinite(t_in):
                    with self.wakeup:
                        self.wakeup.wait(0.05)
                    continue
                next_end = t_in + hop
            now = self.clock()
            ready = t_in >= next_end or (self.cfg.realtime and now >= next_end + self.cfg.grace_s
                                         and now - t_in > self.cfg.grace_s)
            if not ready:
                if self.source_finished() and self.cfg.stop_when_source_ends and not self.cfg.realtime:
                    break
                with self.wakeup:
                    self.wakeup.wait(0.02)
                continue
            behind = max(t_in, now if self.cfg.realtime else t_in) - next_end
            if behind > self.cfg.max_lag_hops * hop:  # too late: skip to the newest window
                n_skip = int(behind // hop)
                self.skipped_windows += n_skip
                next_end += n_skip * hop
            state = self._switch_mode(state)
            try:
                state = self.run_window(next_end, state)
            except Exception as exc:
                self.report(f"backend {self.backend.info.name} failed on a window: {exc!r}")
                log.exception("backend step failed")
            next_end += self.settings.hop_s
        self.flush(state)

    def _switch_mode(self, state):
        mode, self.settings.pending_mode = self.settings.pending_mode, None
        if mode is None:
            return state
        try:
            if self.backend_factory is not None:
                backend = self.backend_factory(mode)
            else:
                from momu_live.live.backend import make_backend

                backend = make_backend(mode, sample_rate=self.cfg.sample_rate)
            self.backend = backend
            self.mode_switched(mode)
            self.report(f"mode switched to {mode}")
            return backend.init_state()
        except Exception as exc:
            self.report(f"cannot switch to mode {mode}: {exc}")
            return state

    # -- one window ----------------------------------------------------------------------------
    def run_window(self, t_end: float, state):
        """Cut the window ending at ``t_end``, run the back-end, queue its outputs; returns the new state."""
        w0 = time.monotonic()
        s = self.settings
        win = self.cut(t_start=t_end - s.window_s, t_end=t_end, hop_start=t_end - s.hop_s, index=self.windows,
                       controls=dict(s.model_controls))
        m0 = time.monotonic()
        self.stats.add("window", (m0 - w0) * 1000.0)
        out, state = self.backend.step(win, state)
        model_ms = (time.monotonic() - m0) * 1000.0
        self.stats.add("model", model_ms - out.decode_ms)
        self.stats.add("decode", out.decode_ms)
        self.windows += 1
        meta = {"wall": w0 - max(0.0, self.clock() - t_end)}  # e2e from the window's last input
        self._deliver(out, meta)
        return state

    def _deliver(self, out: BackendOutput, meta: dict) -> None:
        if out.audio is not None and len(out.audio):
            self.put(AudioBlock(self._level(out.audio), self.cfg.sample_rate, out.audio_time), meta)
        if out.poses is not None and len(out.poses):
            for t, j in zip(out.pose_times, out.poses):
                self.put(PoseFrame(0, next(self._gen_frame), float(t), j.astype(np.float32), CANONICAL_JOINTS,
                                   None, "generated"), {**meta, "play_at": float(t)})
        if self.emits_beats():
            for k, t, bpm_b, down in out.beats:
                self.on_beat(float(t), int(k))
                self.put(Beat(int(k), float(t), round(float(bpm_b), 3), 0.0, bool(down), "generated"), meta)

    def flush(self, state) -> None:
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
            self.put(AudioBlock(self._level(out.audio), self.cfg.sample_rate, out.audio_time), {"wall": time.monotonic()})

    def _level(self, audio: np.ndarray) -> np.ndarray:
        """Output gain (``/momu/output/set/gain``), then the soft limiter: never clips (ceiling -1 dBFS)."""
        return soft_limit(np.asarray(audio, np.float32) * np.float32(self.settings.gain))
