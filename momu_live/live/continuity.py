"""Output continuity: generated audio and poses never stop, never overlap, never jump.

The worker can fall behind (a slow machine, a CPU hog, a mode switch, a skipped window).  Instead of
leaving silence or a frozen avatar, the playout keeps each generated stream continuous on the stream
clock:

- ``AudioStitcher``: generated audio blocks are placed at their stream time.  A block that starts
  after the end of what was sent leaves a gap: the gap is filled with a *continuation* - the last
  ``tail_s`` seconds of sent audio looped with crossfaded seams at ``fill_gain`` - and the real block
  is crossfaded in over ``fade_s``.  A block that starts before the end (its time was already covered
  by a continuation) has its head trimmed, with the same crossfade.  ``fill_until(t)`` lets the
  playout's watchdog extend the continuation while it waits for a late window, so a sound device
  never underruns and a recording never holds a hole.
- ``PoseFiller``: when no generated pose arrives in time, the last ``tail_s`` seconds of generated
  poses are played back and forth (ping-pong: continuous positions, no jump at the turn) at the pose
  rate; the next real frames are blended in over ``blend_s``.

Both keep counters (seconds filled, trimmed, seams) that the status heartbeat reports.  State is
owned by the playout thread only.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from momu_live.bridge.events import AudioBlock, PoseFrame


@dataclass(frozen=True)
class ContinuityConfig:
    fade_s: float = 0.02  # crossfade at every seam (continuation <-> real audio, loop seams)
    tail_s: float = 1.0  # recent audio / poses a continuation repeats
    fill_gain: float = 0.7  # level of the audio continuation (-3 dB: audibly a hold, never a hole)
    tolerance_s: float = 0.003  # gaps or overlaps shorter than this are taken as contiguous
    pose_blend_s: float = 0.2  # real poses blend in from a held continuation over this long


def _fade(n: int) -> np.ndarray:
    """Equal-power fade-in of ``n`` samples (sin^2 ramp: sums with its mirror to exactly 1)."""
    if n <= 0:
        return np.zeros(0, np.float32)
    return np.sin(0.5 * np.pi * (np.arange(n, dtype=np.float64) + 0.5) / n).astype(np.float32) ** 2


class AudioStitcher:
    """Keeps one generated audio stream contiguous on the stream clock (see the module doc)."""

    def __init__(self, sample_rate: int, cfg: ContinuityConfig = ContinuityConfig()):
        self.sr, self.cfg = int(sample_rate), cfg
        self.end: int | None = None  # stream sample index of the next sample to send
        self._tail = np.zeros(0, np.float32)  # last tail_s of *real* generated audio (the loop source)
        self._loop_pos = 0  # position in the loop while filling
        self._filling = False  # the last samples sent were a continuation
        self._last = np.zeros(0, np.float32)  # last fade_s samples sent (for crossfades)
        self.filled_s = 0.0
        self.trimmed_s = 0.0
        self.seams = 0

    @property
    def end_time(self) -> float | None:
        return None if self.end is None else self.end / self.sr

    # -- the continuation ---------------------------------------------------------------------
    def _continuation(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the looped tail (crossfaded at the loop seam), at ``fill_gain``."""
        src = self._tail
        if n <= 0 or len(src) == 0:
            return np.zeros(max(n, 0), np.float32)
        nf = min(int(self.cfg.fade_s * self.sr), len(src) // 4)
        body = len(src) - nf  # loop length: the last nf samples crossfade into the first nf
        loop = src[:body].copy()
        if nf:
            f = _fade(nf)
            loop[:nf] = src[:nf] * f + src[body:] * (1 - f)
        idx = (self._loop_pos + np.arange(n)) % len(loop)
        self._loop_pos = int((self._loop_pos + n) % len(loop))
        return (loop[idx] * self.cfg.fill_gain).astype(np.float32)

    def _crossfade_in(self, x: np.ndarray) -> np.ndarray:
        """Blend the head of ``x`` from the continuation that would have gone on (a seam without a click)."""
        nf = min(int(self.cfg.fade_s * self.sr), len(x))
        if nf == 0:
            return x
        pos = self._loop_pos
        cont = self._continuation(nf)
        self._loop_pos = pos
        f = _fade(nf)
        y = x.copy()
        y[:nf] = x[:nf] * f + cont * (1 - f)
        self.seams += 1
        return y

    def _sent(self, y: np.ndarray, real: bool) -> None:
        if real and len(y):
            keep = int(self.cfg.tail_s * self.sr)
            self._tail = np.concatenate([self._tail, y])[-keep:]
        self._last = np.concatenate([self._last, y])[-max(1, int(self.cfg.fade_s * self.sr)):]
        self.end = (self.end or 0) + len(y)

    # -- public ---------------------------------------------------------------------------------
    def add(self, block: AudioBlock) -> list[AudioBlock]:
        """A generated block in -> the blocks to send (a continuation over a gap, the block trimmed and
        crossfaded), contiguous with everything sent before."""
        x = np.asarray(block.samples, np.float32).reshape(-1)
        start = int(round(block.time * self.sr))
        out: list[AudioBlock] = []
        tol = int(self.cfg.tolerance_s * self.sr)
        if self.end is None:
            self.end = start
        if start > self.end + tol:  # a gap: continue the stream up to the block
            fill = self.fill_until(start / self.sr)
            if fill is not None:
                out.append(fill)
        elif start < self.end - tol:  # already covered (by a continuation, or an overlap): trim the head
            cut = min(self.end - start, len(x))
            self.trimmed_s += cut / self.sr
            x = x[cut:]
            start += cut
        if len(x) == 0:
            return out
        if self._filling:
            x = self._crossfade_in(x)
            self._filling = False
        t = self.end / self.sr
        self._sent(x, real=True)
        out.append(AudioBlock(x, self.sr, t))
        return out

    def fill_until(self, t: float) -> AudioBlock | None:
        """Continue the stream with the looped tail up to stream time ``t`` (None when nothing to do)."""
        if self.end is None or len(self._tail) == 0:
            return None
        n = int(round(t * self.sr)) - self.end
        if n <= 0:
            return None
        if not self._filling:
            self._loop_pos = 0
            y = self._continuation(n)
            nf = min(len(self._last), len(y))  # fade from the last real samples into the loop
            if nf:
                f = _fade(nf)
                y[:nf] = y[:nf] * f + self._last[-1] * (1 - f)
            self._filling = True
            self.seams += 1
        else:
            y = self._continuation(n)
        t0 = self.end / self.sr
        self._sent(y, real=False)
        self.filled_s += n / self.sr
        return AudioBlock(y, self.sr, t0)


class PoseFiller:
    """Keeps the generated pose stream moving while the worker is late (ping-pong over the recent poses)."""

    def __init__(self, cfg: ContinuityConfig = ContinuityConfig(), max_frames: int = 512):
        self.cfg = cfg
        self._recent: deque = deque(maxlen=max_frames)  # (time, joints) of real generated frames
        self.last_time: float | None = None  # stream time of the last frame sent (real or filled)
        self.rate = 0.0  # frames per second of the real stream
        self._k = 0  # ping-pong step counter while filling
        self._filling = False
        self._held: np.ndarray | None = None  # pose the real stream blends in from after a fill
        self._blend_t0 = 0.0
        self.filled_s = 0.0
        self.dropped = 0

    def real(self, frame: PoseFrame) -> PoseFrame | None:
        """A real generated frame about to be sent -> the frame to send (blended after a fill), or None
        when its time was already covered by the continuation."""
        t = float(frame.time)
        if self.last_time is not None and t <= self.last_time + 1e-9:
            if self._filling:
                self.dropped += 1
                return None
        if self._recent:
            dt = t - self._recent[-1][0]
            if 0 < dt < 1.0:
                self.rate = 1.0 / dt if self.rate == 0 else 0.9 * self.rate + 0.1 / dt
        self._recent.append((t, np.asarray(frame.joints, np.float32)))
        if self._filling:  # leaving a continuation: blend from its last pose
            self._filling = False
            self._blend_t0 = t
        j = np.asarray(frame.joints, np.float32)
        if self._held is not None:
            w = min(1.0, (t - self._blend_t0) / max(self.cfg.pose_blend_s, 1e-6))
            j = (w * j + (1 - w) * self._held).astype(np.float32)
            if w >= 1.0:
                self._held = None
        self.last_time = t
        return PoseFrame(frame.person, frame.frame, frame.time, j, frame.joint_names, frame.confidence, frame.source)

    def fill(self, t_until: float) -> list[tuple[float, np.ndarray]]:
        """Continuation frames (time, joints) after the last sent frame, up to stream time ``t_until``."""
        if self.last_time is None or self.rate <= 0 or len(self._recent) < 4:
            return []
        period = 1.0 / self.rate
        n_tail = max(2, min(len(self._recent), int(round(self.cfg.tail_s * self.rate))))
        tail = [j for _, j in list(self._recent)[-n_tail:]]
        if not self._filling:
            self._filling, self._k = True, 0
        out = []
        t = self.last_time + period
        while t <= t_until + 1e-9:
            self._k += 1
            m = n_tail - 1
            ph = self._k % (2 * m)
            i = m - ph if ph <= m else ph - m  # n-1 .. 0 .. n-1: back and forth, continuous
            out.append((t, tail[i]))
            self._held = tail[i]
            self.last_time = t
            self.filled_s += period
            t += period
        return out
