"""Thread-safe bounded buffers of the live engine: a dropping queue, a pose ring and an audio ring.

Nothing here ever blocks a producer: a full ``DropQueue`` drops its *oldest* item (counted), the
rings overwrite their oldest frames.  Latency therefore stays bounded under load; what is lost is
counted and reported in the status heartbeat.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


class DropQueue:
    """Bounded FIFO: ``put`` never blocks (drops the oldest item when full), ``get`` waits up to a timeout."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._q: deque = deque()
        self._max = maxsize
        self._cv = threading.Condition()
        self.dropped = 0
        self.put_count = 0

    def put(self, item) -> bool:
        """Append ``item``; returns False when an older item had to be dropped for it."""
        with self._cv:
            ok = True
            if len(self._q) >= self._max:
                self._q.popleft()
                self.dropped += 1
                ok = False
            self._q.append(item)
            self.put_count += 1
            self._cv.notify()
            return ok

    def get(self, timeout: float | None = None):
        """Oldest item, or None after ``timeout`` seconds without one."""
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
            return self._q.popleft() if self._q else None

    def drain(self) -> list:
        with self._cv:
            items = list(self._q)
            self._q.clear()
            return items

    def __len__(self) -> int:
        with self._cv:
            return len(self._q)


@dataclass
class PoseWindow:
    times: np.ndarray  # (T,) seconds
    joints: np.ndarray  # (T, J, 3) float32, NaN-free (gaps held, see ``valid``)
    confidence: np.ndarray  # (T, J)
    valid: np.ndarray  # (T,) bool: a person was seen in this frame


class PoseRing:
    """Ring of timestamped single-person poses for windowing (``capacity`` frames)."""

    def __init__(self, capacity: int, n_joints: int = 18):
        self.capacity = int(capacity)
        self.n_joints = n_joints
        self._t = np.full(self.capacity, -np.inf)  # (C,)
        self._j = np.zeros((self.capacity, n_joints, 3), np.float32)  # (C, J, 3)
        self._c = np.zeros((self.capacity, n_joints), np.float32)  # (C, J)
        self._v = np.zeros(self.capacity, bool)  # (C,)
        self._n = 0
        self._last_good: np.ndarray | None = None
        self._lock = threading.Lock()
        self.latest_time = -math.inf

    def append(self, t: float, joints: np.ndarray | None, confidence: np.ndarray | None = None) -> None:
        """Add one frame; None or all-NaN joints = no person (the last pose is held with validity False)."""
        with self._lock:
            if t <= self.latest_time:
                return  # out of order / duplicate
            i = self._n % self.capacity
            valid = joints is not None and bool(np.isfinite(joints).any())
            if valid:
                j = np.asarray(joints, np.float32)  # (J, 3)
                bad = ~np.isfinite(j).all(-1)  # (J,) missing joints: hold last value
                if bad.any():
                    j = j.copy()
                    j[bad] = self._last_good[bad] if self._last_good is not None else 0.0
                self._last_good = j
                c = np.ones(self.n_joints, np.float32) if confidence is None else np.nan_to_num(np.asarray(confidence, np.float32))
                c = np.where(bad, 0.0, c)
            else:
                j = self._last_good if self._last_good is not None else np.zeros((self.n_joints, 3), np.float32)
                c = np.zeros(self.n_joints, np.float32)
            self._t[i], self._j[i], self._c[i], self._v[i] = t, j, c, valid
            self._n += 1
            self.latest_time = float(t)

    def window(self, t0: float, t1: float) -> PoseWindow:
        """Frames with ``t0 <= t < t1``, in time order."""
        with self._lock:
            n = min(self._n, self.capacity)
            idx = (np.arange(self._n - n, self._n)) % self.capacity  # oldest -> newest
            t = self._t[idx]
            sel = idx[(t >= t0) & (t < t1)]
            return PoseWindow(self._t[sel].copy(), self._j[sel].copy(), self._c[sel].copy(), self._v[sel].copy())

    def __len__(self) -> int:
        return min(self._n, self.capacity)


class AudioRing:
    """Mono float32 ring on an exact sample clock: sample ``k`` is at ``t0 + k / sample_rate``."""

    def __init__(self, seconds: float, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.capacity = int(math.ceil(seconds * sample_rate))
        self._buf = np.zeros(self.capacity, np.float32)
        self._n = 0  # samples written
        self.t0: float | None = None
        self._lock = threading.Lock()

    @property
    def latest_time(self) -> float:
        return -math.inf if self.t0 is None else self.t0 + self._n / self.sample_rate

    def append(self, samples: np.ndarray, t_first: float | None = None) -> None:
        """Append a block; ``t_first`` only anchors the clock on the first block (later blocks are contiguous)."""
        x = np.nan_to_num(np.asarray(samples, np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        with self._lock:
            if self.t0 is None:
                self.t0 = 0.0 if t_first is None else float(t_first)
            if len(x) >= self.capacity:
                x = x[-self.capacity:]
                self._n += len(samples) - len(x)
            i = self._n % self.capacity
            k = min(len(x), self.capacity - i)
            self._buf[i:i + k] = x[:k]
            self._buf[: len(x) - k] = x[k:]
            self._n += len(x)

    def read(self, t0: float, t1: float) -> np.ndarray:
        """Samples covering [t0, t1) (zeros where nothing is buffered)."""
        with self._lock:
            if self.t0 is None:
                return np.zeros(max(0, int(round((t1 - t0) * self.sample_rate))), np.float32)
            a = int(round((t0 - self.t0) * self.sample_rate))
            b = int(round((t1 - self.t0) * self.sample_rate))
            out = np.zeros(max(0, b - a), np.float32)
            lo, hi = max(a, self._n - self.capacity, 0), min(b, self._n)
            if hi > lo:
                idx = np.arange(lo, hi) % self.capacity
                out[lo - a: hi - a] = self._buf[idx]
            return out
