"""Who keeps the tempo, and the beats it publishes: the engine's beat clock with its manual holds.

``TempoKeeper`` owns the predictive beat clock (``beatclock.BeatClock``), the lock around it, who holds
the tempo (``origin``: "" while it follows the input; "osc", "midi clock" or "link" while held), the
last published beat (the phase anchor of the next analysis window) and the optional Ableton Link
session.  The engine feeds it input (``add_pose`` / ``add_audio``) and it publishes each predicted
beat once, ``lead_s`` ahead, as a ``Beat`` event with its Unix due time (the OSC bundle timetag)
through ``put``.  A held tempo holds until ``follow_input`` (or, for an external clock, until that
clock stops: an OSC hold is not ended by a MIDI clock that stops).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from momu_live.bridge.events import Beat
from momu_live.live.beatclock import BeatClock, BeatClockConfig

log = logging.getLogger(__name__)


class TempoKeeper:
    def __init__(self, cfg: BeatClockConfig, *, put: Callable[[Any, dict], None], report: Callable[[str], None],
                 clock: Callable[[], float], t0: Callable[[], float], realtime: bool = True, link=None):
        self.clock_cfg = cfg
        self.tracker = BeatClock(cfg)  # tempo + phase; beats published lead_s ahead (beatclock.py)
        self.origin = ""  # "" = follows the input; else who holds the tempo ("osc", "midi clock", "link")
        self.last_beat: tuple[float, int] | None = None  # (time, index) of the last published beat
        self.link = link  # optional tempo follower with beat(time, bpm, downbeat) / release() / close()
        self.put, self.report, self.clock, self._t0 = put, report, clock, t0
        self.realtime = realtime
        self._unix0 = time.time() - time.monotonic()  # + monotonic = Unix time (OSC timetags), fixed per engine
        self._lock = threading.Lock()
        if link is not None and hasattr(link, "on_peer_tempo") and link.on_peer_tempo is None:
            link.on_peer_tempo = lambda bpm: self.external(bpm, "link")  # a Link peer's tempo holds

    @property
    def bpm(self) -> float:
        with self._lock:
            return self.tracker.bpm

    # -- input -----------------------------------------------------------------------------------
    def add_pose(self, joints: np.ndarray | None, t: float) -> None:
        with self._lock:
            self.tracker.add_pose(joints, t)

    def add_audio(self, samples: np.ndarray, t: float, sr: int) -> None:
        with self._lock:
            self.tracker.add_audio(samples, t, sr)

    def now(self, t_input: float | None = None) -> float:
        """The clock beats are published against: the engine clock in real time, the input's stream time
        with ``realtime=False`` (there the input runs ahead of the wall clock)."""
        if self.realtime or t_input is None:
            return self.clock()
        return float(t_input)

    def stream_to_unix(self, t: float) -> float:
        """Stream time (engine clock) -> Unix time, for OSC bundle timetags."""
        return self._unix0 + self._t0() + float(t)

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, now: float, source: str, wall: float) -> None:
        """Publish the beats due within ``lead_s`` of ``now``: each once, ahead of time, with its predicted
        stream time, the bar phase and its Unix time (the OSC bundle timetag)."""
        with self._lock:
            beats = self.tracker.due(now)
        for b in beats:
            self.last_beat = (b.time, b.index)
            self.put(Beat(b.index, b.time, round(b.bpm, 3), b.phase, b.downbeat, source,
                          due_unix=self.stream_to_unix(b.time) if self.realtime else None), {"wall": wall})
            if self.link is not None:
                try:
                    self.link.beat(b.time, b.bpm, b.downbeat)
                except Exception as exc:
                    log.debug("link: %r", exc)

    # -- holds -----------------------------------------------------------------------------------
    def hold(self, bpm: float, origin: str = "osc", beat_at: float | None = None) -> None:
        """Hold the beat clock at ``bpm`` until ``follow_input`` (``beat_at``: a beat's stream time from
        the external clock, which the grid then goes through)."""
        if not (20.0 <= float(bpm) <= 300.0):
            return
        with self._lock:
            self.tracker.set_manual(float(bpm), self.now(), beat_at)
        if self.origin != origin:
            self.report(f"tempo held at {float(bpm):.1f} BPM by {origin} (/momu/tempo/set/follow 1 hands it back)")
        self.origin = origin

    def follow_input(self) -> None:
        """Hand the tempo back to the tracker (it continues from the held tempo)."""
        with self._lock:
            self.tracker.release_manual()
        release = getattr(self.link, "release", None)
        if release is not None:
            release()  # a Link session follows the engine again
        if self.origin:
            self.report("tempo follows the input again")
        self.origin = ""

    def external(self, bpm: float, origin: str, at_monotonic: float | None = None) -> None:
        """A tempo from an external clock (``bridge.midi.MidiClockIn`` callback, a Link peer): ``bpm`` >= 20
        holds it (``at_monotonic``: a beat's ``time.monotonic()``), 0 hands the tempo back, but only when
        ``origin`` holds it."""
        if bpm >= 20.0:
            self.hold(bpm, origin, None if at_monotonic is None else at_monotonic - self._t0())
        elif self.origin == origin:
            self.follow_input()

    def close(self) -> None:
        if self.link is not None:
            try:
                self.link.close()
            except Exception as exc:
                log.warning("closing %s: %r", type(self.link).__name__, exc)
