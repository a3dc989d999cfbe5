"""The model interface of the live engine, and the clearly labelled pass-through back-ends.

A back-end turns one analysis window into the output of its newest hop, carrying explicit
continuation state from window to window (never global, never hidden in the object):

    out, state = backend.step(window, state)      # state = backend.init_state() for the first window

- ``window`` (``LiveWindow``) holds the input of ``[t_start, t_end)``: poses (model motion or capture
  rate, gaps held), input audio, and the tracked tempo (``bpm``, ``beat_time`` = a tracked beat).
- ``out`` (``BackendOutput``) holds what the back-end generated for the hop ``[hop_start, t_end)``:
  audio (contiguous with the previous call's audio), generated poses with their times, beats.

The engine calls ``step`` on a worker thread, skips windows when the worker falls behind (counted),
and never calls ``step`` concurrently.  A generation model plugs in by implementing the same three
members (``init_state``, ``step``, ``info``); ``make_backend`` picks one per mode: the shipped
generation model (model_backend.ModelBackend) by default, these pass-throughs with ``model="passthrough"``.

Pass-through back-ends (no model; ``info.passthrough`` is True and the status says so):

- ``ClickBackend`` (motion->music / beats): a metronome synth at the *tracked* tempo (accented
  downbeats), optionally with a hum whose loudness follows the dancer's kinetic energy.
- ``ProceduralDancerBackend`` (music->motion): the procedural beat-locked dancer of
  ``momu_live.procedural`` driven by the music's tracked beats.
- joint: both, on the tracked (or a free-running 120 BPM) clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from momu_live import MomuError
from momu_live.live.window import Backend, BackendInfo, BackendOutput, LiveWindow
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.modes import MODES


# ------------------------------------------------------------------------------------------------
# a continuous beat clock shared by the pass-through back-ends


@dataclass(frozen=True)
class BeatClock:
    """Beat position ``pos`` (beats, integer on a beat) at time ``t``; ``period`` seconds per beat."""

    t: float
    pos: float
    period: float


def advance_clock(clock: BeatClock, t_new: float, window: LiveWindow, gain: float = 0.3,
                  free_bpm: float = 120.0) -> BeatClock:
    """Move the clock to ``t_new`` at the tracked tempo, pulling its phase towards the tracked beats.

    Positions stay continuous (no jumps), so clicks and dance steps never stutter when the tracker
    corrects itself; with no tracked tempo the clock free-runs at its last (or ``free_bpm``) tempo.
    """
    period = 60.0 / window.bpm if window.bpm > 0 else (clock.period or 60.0 / free_bpm)
    pos = clock.pos + (t_new - clock.t) / period
    if window.beat_time is not None and window.bpm > 0:
        ref = window.beat_index + (t_new - window.beat_time) / period  # tracked beat position at t_new
        err = (ref - pos + 0.5) % 1.0 - 0.5  # wrapped phase error
        pos += gain * err
    return BeatClock(t_new, pos, period)


def clock_positions(a: BeatClock, b: BeatClock, times: np.ndarray) -> np.ndarray:
    """Beat positions at ``times`` (between the clocks' times), linear in between."""
    if b.t <= a.t:
        return np.full(len(times), b.pos)
    return a.pos + (times - a.t) * (b.pos - a.pos) / (b.t - a.t)


def _start_clock(window: LiveWindow, free_bpm: float) -> BeatClock:
    period = 60.0 / window.bpm if window.bpm > 0 else 60.0 / free_bpm
    if window.beat_time is not None and window.bpm > 0:
        pos = window.beat_index + (window.hop_start - window.beat_time) / period
    else:
        pos = 0.0
    return BeatClock(window.hop_start, pos, period)


# ------------------------------------------------------------------------------------------------
# motion -> music pass-through: metronome


@dataclass
class ClickState:
    next_sample: int | None = None  # absolute output sample index (stream time * sr) of the next sample
    clock: BeatClock | None = None
    hum_phase: float = 0.0
    energy: float = 0.0
    last_pos: float | None = None  # beat position of the last sample generated


class ClickBackend:
    """PASS-THROUGH (no model): metronome clicks at the tracked tempo; with ``hum`` a tone following motion energy."""

    def __init__(self, mode: str = "motion2music", sample_rate: int = DEFAULT_TIMEBASE.sample_rate, hum: bool = True, gain: float = 0.5,
                 free_run: bool = False, max_gap_s: float = 2.0):
        label = ("pass-through: metronome at the tracked tempo + motion-energy hum (no model)" if hum
                 else "beats: click track of the tracked beats (no model)")
        self.info = BackendInfo("click", mode, label, True, sample_rate, 0.0)
        self.hum, self.gain, self.free_run, self.max_gap_s = hum, gain, free_run, max_gap_s

    def init_state(self) -> ClickState:
        return ClickState()

    def step(self, window: LiveWindow, state: ClickState) -> tuple[BackendOutput, ClickState]:
        sr = self.info.sample_rate
        end = int(round(window.t_end * sr))
        start = int(round(window.hop_start * sr)) if state.next_sample is None else state.next_sample
        if end - start > self.max_gap_s * sr:  # windows were skipped: restart the stream (gap counted by engine)
            start = max(int(round(window.hop_start * sr)), end - int(self.max_gap_s * sr))
        if end <= start:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=start / sr), state
        t = np.arange(start, end) / sr  # (N,)
        clock = state.clock if state.clock is not None else _start_clock(window, 120.0)
        active = window.bpm > 0 or self.free_run
        new_clock = advance_clock(clock, end / sr, window) if active else BeatClock(end / sr, clock.pos, clock.period)
        pos = clock_positions(clock, new_clock, t) if active else np.full(len(t), clock.pos)  # (N,)
        y = np.zeros(len(t), np.float64)
        beats = []
        if active:
            first = math.ceil(pos[0]) if state.last_pos is None else math.floor(state.last_pos) + 1
            for k in range(first, math.floor(pos[-1]) + 1):  # beats crossed in this block
                i = int(np.searchsorted(pos, k))
                if i >= len(t):
                    continue
                down = k % window.meter == 0
                n = min(len(t) - i, int(0.05 * sr))
                tt = np.arange(n) / sr
                y[i:i + n] += (1.0 if down else 0.6) * np.sin(2 * np.pi * (1760.0 if down else 1320.0) * tt) * np.exp(-tt / 0.012)
                beats.append((k, float(t[i]), 60.0 / new_clock.period, down))
        energy = state.energy
        phase = state.hum_phase
        if self.hum:
            target = _kinetic_energy(window)
            env = energy + (target - energy) * (1 - np.exp(-np.arange(1, len(t) + 1) / (0.15 * sr)))  # (N,) smooth
            energy = float(env[-1])
            f0 = 110.0
            ph = phase + 2 * np.pi * f0 * np.arange(1, len(t) + 1) / sr
            y += 0.25 * np.clip(env, 0, 1) * (np.sin(ph) + 0.3 * np.sin(2 * ph))
            phase = float(ph[-1] % (2 * np.pi))
        audio = (self.gain * np.tanh(y)).astype(np.float32)  # (N,)
        return (BackendOutput(audio=audio, audio_time=start / sr, beats=beats),
                ClickState(end, new_clock, phase, energy, float(pos[-1])))


def _kinetic_energy(window: LiveWindow) -> float:
    """Mean joint speed (m/s) over the window's valid frames, squashed to [0, 1]."""
    v = window.pose_valid
    if len(window.pose_times) < 2 or v.sum() < 2:
        return 0.0
    j, t = window.poses[v], window.pose_times[v]
    dt = np.diff(t)[:, None]  # (T-1, 1)
    speed = np.linalg.norm(np.diff(j, axis=0), axis=-1) / np.maximum(dt, 1e-3)  # (T-1, J)
    return float(np.tanh(np.median(speed) / 1.0))


# ------------------------------------------------------------------------------------------------
# music -> motion pass-through: procedural dancer


@dataclass
class DancerState:
    next_time: float | None = None  # time of the next generated frame
    frame: int = 0
    clock: BeatClock | None = None


class ProceduralDancerBackend:
    """PASS-THROUGH (no model): the procedural beat-locked dancer stepping on the music's tracked beats."""

    LOOP_BEATS = 48  # the procedural dance repeats exactly after 48 s at 60 BPM (turn 16 s, path 24 s)

    def __init__(self, mode: str = "music2motion", pose_rate: float | None = None, free_run: bool = True,
                 sample_rate: int = DEFAULT_TIMEBASE.sample_rate):
        from momu_live.models.timebase import DEFAULT_TIMEBASE
        from momu_live.procedural import procedural_dance

        rate = float(pose_rate or DEFAULT_TIMEBASE.motion_rate)
        self.info = BackendInfo("procedural-dancer", mode,
                                "pass-through: procedural dancer on the tracked beats (no model)", True, sample_rate, rate)
        self.free_run = free_run
        self._fps = 50.0
        m = procedural_dance(bpm=60.0, seconds=self.LOOP_BEATS, fps=self._fps)  # 1 beat = 1 s
        self._loop = m.joints.astype(np.float32)  # (L, J, 3)

    def init_state(self) -> DancerState:
        return DancerState()

    def pose_at(self, beat_pos: np.ndarray) -> np.ndarray:
        """Poses (K, J, 3) at continuous beat positions (K,), interpolated on the looped dance."""
        L = len(self._loop)
        x = np.mod(beat_pos * self._fps, L)
        i0 = np.floor(x).astype(int) % L
        i1 = (i0 + 1) % L
        f = (x - np.floor(x))[:, None, None].astype(np.float32)
        return (1 - f) * self._loop[i0] + f * self._loop[i1]

    def step(self, window: LiveWindow, state: DancerState) -> tuple[BackendOutput, DancerState]:
        rate = self.info.pose_rate
        t_next = window.hop_start if state.next_time is None else state.next_time
        t_next = max(t_next, window.t_end - 2.0)  # after skipped windows, do not replay the past
        n = max(0, int(math.ceil((window.t_end - t_next) * rate - 1e-9)))
        times = t_next + np.arange(n) / rate  # (K,)
        clock = state.clock if state.clock is not None else _start_clock(window, 120.0)
        if window.bpm > 0 or self.free_run:
            new_clock = advance_clock(clock, window.t_end, window)
            pos = clock_positions(clock, new_clock, times)
        else:  # no tempo yet: stand still on the current position
            new_clock = BeatClock(window.t_end, clock.pos, clock.period)
            pos = np.full(n, clock.pos)
        poses = self.pose_at(pos) if n else np.zeros((0, self._loop.shape[1], 3), np.float32)  # (K, J, 3)
        return (BackendOutput(pose_times=times, poses=poses),
                DancerState(t_next + n / rate, state.frame + n, new_clock))


class JointPassthrough:
    """PASS-THROUGH (no model) for joint/idle mode: metronome + procedural dancer on one clock."""

    def __init__(self, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, pose_rate: float | None = None):
        self.click = ClickBackend("joint", sample_rate, hum=False, free_run=True)
        self.dancer = ProceduralDancerBackend("joint", pose_rate, free_run=True, sample_rate=sample_rate)
        self.info = replace(self.dancer.info, name="joint-passthrough",
                            label="pass-through: metronome + procedural dancer on one beat clock (no model)")

    def init_state(self):
        return (self.click.init_state(), self.dancer.init_state())

    def step(self, window: LiveWindow, state):
        a, sa = self.click.step(window, state[0])
        b, sb = self.dancer.step(window, state[1])
        return BackendOutput(a.audio, a.audio_time, b.pose_times, b.poses, a.beats), (sa, sb)


PASSTHROUGH = ("passthrough", "pass-through", "none")


def make_backend(mode: str, model: str | None = None, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, *, device: str = "cpu",
                 steps: int = 4, guidance: float = 3.5, seed: int = 0, threads: int | None = None,
                 beat: float = 1.0, lookahead: float = 0.0) -> Backend:
    """The back-end for ``mode``.

    motion2music / music2motion / joint: the shipped MoMu-Diffusion model by default
    (momu_live/live/model_backend.py, weights loaded once per folder and device), ``model="passthrough"``
    for the labelled pass-through, ``model=DIR`` for weights from a folder.  ``beats`` never loads a model.
    Missing or corrupt weights raise MomuError naming the fix (never a silent fallback).
    """
    if mode not in MODES:
        raise MomuError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "beats":
        return ClickBackend("beats", sample_rate, hum=False)
    if model is None or str(model).lower() not in PASSTHROUGH:
        from momu_live.live.model_backend import load_model_backend

        return load_model_backend(mode, model or None, device=device, steps=steps, guidance=guidance, seed=seed,
                                  lookahead=lookahead,
                                  threads=threads, beat=beat)
    if mode == "motion2music":
        return ClickBackend("motion2music", sample_rate, hum=True)
    if mode == "music2motion":
        return ProceduralDancerBackend("music2motion", sample_rate=sample_rate)
    return JointPassthrough(sample_rate)
