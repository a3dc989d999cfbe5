"""Latency bookkeeping of the live engine: the stage names (one owner) and per-stage statistics.

Stages, in the order a frame meets them: ``capture`` (camera/audio read), ``pose`` (MediaPipe),
``tempo`` (online beat tracking), ``window`` (cutting the analysis window), ``model`` (the back-end
minus decoding), ``decode`` (vocoder / motion decoder), ``send`` (sinks), ``e2e`` (capture to sent),
``e2e_gen`` (window's last input to generated output sent), ``e2e_wire`` (measured by a receiver),
``audio_lag`` (engine clock minus the stream time of the first sample of each generated audio block when it
goes out: how far generated audio trails the dancer before the device's own buffer; negative = early, e.g.
held back by the lookahead until ``audio_lead_s`` before its time).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque

import numpy as np

STAGES = ("capture", "pose", "tempo", "window", "model", "decode", "send", "e2e", "e2e_gen", "e2e_wire", "audio_lag")


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
