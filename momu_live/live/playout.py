"""Playout: the engine's output side.

Events (captured poses, beats, generated audio and poses, status) are queued from any thread with
``put`` (a bounded ``DropQueue``: never blocks, drops the oldest when full, counted) and sent by one
thread (``run``) to the output sink (the bridge router: OSC, MIDI, audio device) and the session
recorder.  Generated poses carry ``play_at`` (their stream time) and are held in a heap until
``play_at + playout_s`` on the engine clock, so an avatar moves smoothly instead of in bursts of one
hop; everything else goes out at once.  ``send`` measures the ``send`` stage and the end-to-end
latency (``e2e`` for captured input, ``e2e_gen`` for generated output) from the ``wall`` time in
each event's meta.

Generated audio and poses pass through the continuity stage (``continuity.py``): audio is placed at its
stream time, gaps are filled with a crossfaded continuation and overlaps trimmed; when a window is late
the watchdog in ``run`` keeps both streams going (looped audio tail, ping-pong poses) until it arrives.
Generated pose frames are numbered here, in the order they go out.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from typing import Callable

from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Sink, Status
from momu_live.live.buffer import DropQueue
from momu_live.live.continuity import AudioStitcher, ContinuityConfig, PoseFiller
from momu_live.live.latency import LatencyStats
from momu_live.models.skeleton import CANONICAL_JOINTS
from momu_live.models.timebase import DEFAULT_TIMEBASE

log = logging.getLogger(__name__)
POSE_MARGIN_S = 0.08  # adaptive play-out: generated poses are held this much longer than the latest window needed
POSE_DECAY = 0.01  # s per s of clock the delay may sink by when windows come earlier again
POSE_RISE = 0.25  # s per s of clock the delay may rise by (the avatar runs at most 25 % slow while it adapts)
POSE_FILL_TRIGGER_S = 0.03  # continue the poses when the queued ones run out within this long
POSE_FILL_CHUNK_S = 0.1  # and queue this much continuation at a time (real frames replace the rest)
POSE_MAX_S = 3.0  # the delay never exceeds this (a stalled worker is the continuation's job, not the buffer's)


class Playout:
    def __init__(self, clock: Callable[[], float], stats: LatencyStats, report: Callable[[str], None],
                 output: Sink | None = None, recorder: Sink | None = None, queue_size: int = 1024,
                 realtime: bool = True, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, hop_s: Callable[[], float] = lambda: 0.5,
                 continuity: ContinuityConfig | None = ContinuityConfig(), audio_lead_s: float = 0.1):
        self.clock, self.stats, self.report = clock, stats, report
        self.output, self.recorder = output, recorder
        self.queue = DropQueue(queue_size)
        self.realtime = realtime
        self.hop_s = hop_s
        self.beats_sent = 0
        self.continuity = continuity  # None: pass generated streams through untouched
        self.audio = AudioStitcher(sample_rate, continuity or ContinuityConfig())
        self.poses = PoseFiller(continuity or ContinuityConfig())
        self._audio_lag: float | None = None  # typical (clock - stream end) when a real block arrives
        self._gen_frame = 0
        self.pose_delay = 0.0  # current play-out delay of generated poses (s)
        self._delay_t = 0.0  # clock of the last delay update
        self._target_delay = 0.0  # what the delay is gliding to
        self._adaptive = False
        self.fills: deque = deque(maxlen=64)  # (monotonic, "audio"|"poses", seconds) of recent continuations
        self.audio_lead_s = float(audio_lead_s)  # audio generated ahead goes out this long before its stream time
        self._held: deque = deque()  # (block, meta) generated ahead of the clock, in stream order

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def put(self, ev, meta: dict | None = None) -> None:
        """Queue an event (any thread; never blocks)."""
        self.queue.put((ev, meta or {}))

    def run(self, playout_s: float, stop: threading.Event, upstream_done: threading.Event,
            adaptive: bool = False) -> None:
        """Thread body: send until ``stop`` is set and the producers are done (``upstream_done``) and
        everything queued or held has gone out.  ``adaptive``: ``playout_s`` is only the starting delay of
        generated poses; it follows how late their windows really come (``pose_delay``)."""
        heap: list = []
        seq = itertools.count()
        self.pose_delay = self._target_delay = playout_s
        self._adaptive = adaptive
        self._delay_t = self.clock()
        while True:
            self._glide()
            playout_s = self.pose_delay
            timeout = 0.05
            if heap:
                timeout = max(0.0, min(timeout, heap[0][0] + playout_s - self.clock()))
            if self._held:
                timeout = max(0.0, min(timeout, self._held[0][0].time - self.audio_lead_s - self.clock()))
            item = self.queue.get(timeout=timeout)
            if item is not None:
                ev, meta = item
                if "play_at" in meta and self.realtime and playout_s > 0:
                    self._track_delay(meta["play_at"])
                    heapq.heappush(heap, (meta["play_at"], next(seq), ev, meta))
                else:
                    self._route(ev, meta)
            while heap and (heap[0][0] + playout_s <= self.clock() or stop.is_set()):
                _, _, ev, meta = heapq.heappop(heap)
                self._route(ev, meta)
            while self._held and (self._held[0][0].time - self.audio_lead_s <= self.clock() or stop.is_set()):
                self.send(*self._held.popleft())
            if self.realtime and self.continuity is not None and not stop.is_set():
                self._watchdog(playout_s, heap, seq)
            if (item is None and stop.is_set() and upstream_done.is_set() and not heap and not self._held
                    and len(self.queue) == 0):
                break

    # -- generated streams: continuity ------------------------------------------------------------
    def _route(self, ev, meta: dict) -> None:
        if self.continuity is None:
            self.send(ev, meta)
            return
        if isinstance(ev, AudioBlock):
            blocks = self.audio.add(ev)
            lag = self.clock() - (ev.time + len(ev.samples) / ev.sample_rate)
            self._audio_lag = lag if self._audio_lag is None else 0.8 * self._audio_lag + 0.2 * lag
            for b in blocks:  # audio generated ahead (lookahead) waits for its time; late audio goes at once
                if self.realtime and (self._held or b.time - self.audio_lead_s > self.clock()):
                    self._held.append((b, meta))
                else:
                    self.send(b, meta)
            return
        if isinstance(ev, PoseFrame) and ev.source == "generated" and meta.get("continuation"):
            ev.frame = self._next_frame()  # made by the watchdog (already in the filler's history)
            self.send(ev, meta)
            return
        if isinstance(ev, PoseFrame) and ev.source == "generated":
            fr = self.poses.real(ev)
            if fr is None:
                return
            fr.frame = self._next_frame()
            self.send(fr, meta)
            return
        self.send(ev, meta)

    def _track_delay(self, play_at: float) -> None:
        """Adaptive play-out (a jitter buffer): the target delay covers how late generated frames arrive
        (their stream time vs the clock) plus ``POSE_MARGIN_S``; it sinks slowly (``POSE_DECAY`` per s)
        when windows come earlier again.  The delay in force follows the target smoothly (``_glide``)."""
        if not self._adaptive:
            return
        need = min(self.clock() - play_at + POSE_MARGIN_S, POSE_MAX_S)
        self._target_delay = max(need, self._target_delay)

    def _glide(self) -> None:
        """Move the delay in force towards the target, at most ``POSE_RISE`` s per s of clock up (the avatar
        slows a little while it adapts, it never stops; the continuation covers the rest) and ``POSE_DECAY``
        down (it catches up unnoticed)."""
        if not self._adaptive:
            return
        now = self.clock()
        dt = max(0.0, now - self._delay_t)
        self._delay_t = now
        self._target_delay = max(self._target_delay - POSE_DECAY * dt, POSE_MARGIN_S)
        if self._target_delay > self.pose_delay:
            self.pose_delay = min(self._target_delay, self.pose_delay + POSE_RISE * dt)
        else:
            self.pose_delay = max(self._target_delay, self.pose_delay - POSE_DECAY * dt)

    def _next_frame(self) -> int:
        self._gen_frame += 1
        return self._gen_frame - 1

    def _watchdog(self, playout_s: float, heap: list, seq) -> None:
        """Extend a generated stream whose next window is late (see continuity.py)."""
        now = self.clock()
        margin = self.hop_s() + 0.15
        end = self.audio.end_time
        if end is not None and self._audio_lag is not None and now - end > self._audio_lag + margin:
            blk = self.audio.fill_until(now - self._audio_lag)
            if blk is not None:
                self.fills.append((time.monotonic(), "audio", len(blk.samples) / blk.sample_rate))
                self.send(blk, {})
        # poses: when the frames waiting to go out are about to run dry (no real window in time), queue a
        # short stretch of continuation frames, paced like real ones (they play at their time + the delay)
        last = self.poses.last_time
        if last is None or not self.realtime:
            return
        waiting = any(m.get("play_at") is not None and not m.get("continuation") for _, _, _, m in heap)
        if not waiting and last + playout_s < now + POSE_FILL_TRIGGER_S:
            frames = self.poses.fill(now - playout_s + POSE_FILL_CHUNK_S)
            if frames:
                self.fills.append((time.monotonic(), "poses", len(frames) / max(self.poses.rate, 1e-6)))
            for t, j in frames:
                ev = PoseFrame(0, -1, float(t), j, CANONICAL_JOINTS, None, "generated")
                heapq.heappush(heap, (float(t), next(seq), ev, {"play_at": float(t), "continuation": True}))

    def recent_fills(self, horizon_s: float = 5.0) -> dict:
        """Seconds of continuation per stream over the last ``horizon_s`` (the status reports them)."""
        now = time.monotonic()
        out: dict = {}
        for w, kind, sec in list(self.fills):
            if now - w <= horizon_s:
                out[kind] = out.get(kind, 0.0) + sec
        return out

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
        if isinstance(ev, AudioBlock):
            self.stats.add("audio_lag", (self.clock() - float(ev.time)) * 1000.0)
        if isinstance(ev, Beat):
            self.beats_sent += 1
        if "wall" in meta and not isinstance(ev, Status):
            gen = isinstance(ev, AudioBlock) or (isinstance(ev, PoseFrame) and ev.source == "generated")
            if not (gen and "play_at" in meta):  # played-out poses wait on purpose: not latency
                self.stats.add("e2e_gen" if gen else "e2e", (now - meta["wall"]) * 1000.0)
