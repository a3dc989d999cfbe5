"""Playout: the engine's output side.

Events (captured poses, beats, generated audio and poses, status) are queued from any thread with
``put`` (a bounded ``DropQueue``: never blocks, drops the oldest when full, counted) and sent by one
thread (``run``) to the output sink (the bridge router: OSC, MIDI, audio device) and the session
recorder.  Generated poses carry ``play_at`` (their stream time) and are held in a heap until
``play_at + playout_s`` on the engine clock, so an avatar moves smoothly instead of in bursts of one
hop; everything else goes out at once.  ``send`` measures the ``send`` stage and the end-to-end
latency (``e2e`` for captured input, ``e2e_gen`` for generated output) from the ``wall`` time in
each event's meta.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable

from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Sink, Status
from momu_live.live.buffer import DropQueue
from momu_live.live.latency import LatencyStats

log = logging.getLogger(__name__)


class Playout:
    def __init__(self, clock: Callable[[], float], stats: LatencyStats, report: Callable[[str], None],
                 output: Sink | None = None, recorder: Sink | None = None, queue_size: int = 1024,
                 realtime: bool = True):
        self.clock, self.stats, self.report = clock, stats, report
        self.output, self.recorder = output, recorder
        self.queue = DropQueue(queue_size)
        self.realtime = realtime
        self.beats_sent = 0

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def put(self, ev, meta: dict | None = None) -> None:
        """Queue an event (any thread; never blocks)."""
        self.queue.put((ev, meta or {}))

    def run(self, playout_s: float, stop: threading.Event, upstream_done: threading.Event) -> None:
        """Thread body: send until ``stop`` is set and the producers are done (``upstream_done``) and
        everything queued or held has gone out."""
        heap: list = []
        seq = itertools.count()
        while True:
            timeout = 0.05
            if heap:
                timeout = max(0.0, min(timeout, heap[0][0] + playout_s - self.clock()))
            item = self.queue.get(timeout=timeout)
            if item is not None:
                ev, meta = item
                if "play_at" in meta and self.realtime and playout_s > 0:
                    heapq.heappush(heap, (meta["play_at"], next(seq), ev, meta))
                else:
                    self.send(ev, meta)
            while heap and (heap[0][0] + playout_s <= self.clock() or stop.is_set()):
                _, _, ev, meta = heapq.heappop(heap)
                self.send(ev, meta)
            if item is None and stop.is_set() and upstream_done.is_set() and not heap and len(self.queue) == 0:
                break

    def send(self, ev, meta: dict) -> None:
        s0 = time.monotonic()
        if self.output is not None:
            try:
                self.output.emit(ev)
            except Exception as exc:  # the router counts its own sinks' failures; this is a last guard
                log.debug("output failed: %r", exc)
        if self.recorder is not None:
            try:
                self.recorder.emit(ev)
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
