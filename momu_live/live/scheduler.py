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
class LoadConfig:
    """The load ladder: when a window's processing takes more than ``high`` of the hop (smoothed), the
    scheduler gives up one thing more, in order: beat guidance, half the sampler steps, one step, the
    lookahead (timing goes last: a performer hears late music before thinner music), a twice longer hop; after ``recover_s`` below ``low`` it takes one back.  Each change is reported."""

    enabled: bool = True
    high: float = 0.85
    low: float = 0.45
    recover_s: float = 8.0
    smoothing: float = 0.4  # weight of the newest window in the load estimate
    min_windows: int = 2  # windows between two steps up the ladder


LADDER = ("as configured", "beat guidance off", "half the sampler steps", "one sampler step", "lookahead off",
          "hop doubled")


@dataclass(frozen=True)
class SchedulerConfig:
    realtime: bool = True
    grace_s: float = 0.15  # a window is cut at clock >= end + grace even if the input stalls
    max_lag_hops: float = 2.0
    stop_when_source_ends: bool = True
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    load: LoadConfig = field(default_factory=LoadConfig)


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
        self.load = 0.0  # smoothed processing time / hop
        self.level = 0  # rung of LADDER in force
        self.adaptations = 0  # ladder moves so far
        self._level_window = 0  # window index of the last move
        self._calm_since: float | None = None
        self._base_hop: float | None = None  # the hop before the ladder doubled it

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
                       controls=self._controls())
        m0 = time.monotonic()
        self.stats.add("window", (m0 - w0) * 1000.0)
        out, state = self.backend.step(win, state)
        model_ms = (time.monotonic() - m0) * 1000.0
        self.stats.add("model", model_ms - out.decode_ms)
        self.stats.add("decode", out.decode_ms)
        self.windows += 1
        meta = {"wall": w0 - max(0.0, self.clock() - t_end)}  # e2e from the window's last input
        self._deliver(out, meta)
        self._adapt((time.monotonic() - w0) / max(s.hop_s, 1e-3))
        return state

    # -- the load ladder -----------------------------------------------------------------------------
    def _controls(self) -> dict:
        """The model controls of the next window, with what the load ladder gives up applied on top."""
        from momu_live.bridge.grammar import BEAT_ADDR, LOOKAHEAD_ADDR, STEPS_ADDR

        c = dict(self.settings.model_controls)
        if self.level >= 1:
            c[BEAT_ADDR] = 0.0
        steps = int(c.get(STEPS_ADDR, getattr(self.backend.info, "steps", 0) or 0)) if self.backend else 0
        if steps and self.level >= 2:
            c[STEPS_ADDR] = 1 if self.level >= 3 else max(1, steps // 2)
        if self.level >= 4:
            c[LOOKAHEAD_ADDR] = 0.0
        return c

    def _adapt(self, ratio: float) -> None:
        cfg = self.cfg.load
        if not cfg.enabled or not self.cfg.realtime:
            return
        self.load = ratio if self.windows <= 1 else (1 - cfg.smoothing) * self.load + cfg.smoothing * ratio
        now = self.clock()
        if self.load > cfg.high and self.level < len(LADDER) - 1 and self.windows - self._level_window >= cfg.min_windows:
            self._move(+1)
        elif self.load < cfg.low and self.level > 0:
            self._calm_since = now if self._calm_since is None else self._calm_since
            if now - self._calm_since >= cfg.recover_s:
                self._move(-1)
        if self.load >= cfg.low:
            self._calm_since = None

    def _move(self, step: int) -> None:
        old, self.level = self.level, self.level + step
        if self.level == len(LADDER) - 1 and old < self.level:  # the last rung: a longer hop
            self._base_hop = self.settings.hop_s
            self.settings.hop_s = min(2 * self.settings.hop_s, self.settings.window_s)
        elif old == len(LADDER) - 1 and self.level < old and self._base_hop is not None:
            self.settings.hop_s, self._base_hop = self._base_hop, None
        self.adaptations += 1
        self._level_window = self.windows
        self._calm_since = None
        what = LADDER[self.level] if step > 0 else f"back to: {LADDER[self.level]}"
        self.report(f"load {100 * self.load:.0f} % of the hop: {what}")

    def gave_up(self) -> str:
        """What the load ladder has given up now ("" at rung 0), for the status heartbeat."""
        return "" if self.level == 0 else f"under load ({100 * self.load:.0f} %): " + ", ".join(LADDER[1:self.level + 1])

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
