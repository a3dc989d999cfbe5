"""One-Euro filtering of pose streams, with MediaPipe's own pose defaults.

The One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) is an adaptive low-pass: an exponential
smoother whose cutoff rises with the signal's speed,

    dx_hat_i = a(d_cutoff) * dx_i + (1 - a(d_cutoff)) * dx_hat_{i-1},   dx_i = (x_i - x_{i-1}) * f   (eq. 1)
    fc_i     = min_cutoff + beta * |dx_hat_i|                                                   (eq. 2)
    x_hat_i  = a(fc_i) * x_i + (1 - a(fc_i)) * x_hat_{i-1}                                      (eq. 3)
    a(fc)    = 1 / (1 + tau / Te),  tau = 1 / (2 pi fc),  Te = 1 / f                            (eq. 4)

with ``f`` the instantaneous rate taken from the timestamps, as MediaPipe's ``OneEuroFilter``
(mediapipe/util/filtering/one_euro_filter.cc) does.  Defaults are those MediaPipe's pose graph
(``pose_landmark_filtering.pbtxt``) uses for *world* landmarks (metres): ``min_cutoff 0.1``,
``beta 40``, ``derivate_cutoff 1.0``, value scaling disabled.  ``MEDIAPIPE_IMAGE`` holds the
image-landmark preset (``min_cutoff 0.05``, ``beta 80``).

State is explicit (``OneEuroState`` in, ``OneEuroState`` out) so that feeding a stream in chunks gives
exactly what feeding it whole gives; ``PoseSmoother`` wraps it for per-person use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float = 0.1  # Hz (MediaPipe pose world landmarks)
    beta: float = 40.0
    derivate_cutoff: float = 1.0  # Hz
    frequency: float = 30.0  # used for the first sample only (MediaPipe's default)


MEDIAPIPE_WORLD = OneEuroParams(0.1, 40.0, 1.0)
MEDIAPIPE_IMAGE = OneEuroParams(0.05, 80.0, 1.0)


@dataclass
class OneEuroState:
    """Filter memory: last raw value, last filtered value and derivative, last timestamp (None = empty)."""

    last_raw: np.ndarray | None = None  # (...,) same shape as the signal
    last_filtered: np.ndarray | None = None
    last_dx: np.ndarray | None = None
    last_time: float | None = None


def _alpha(cutoff: np.ndarray | float, frequency: float) -> np.ndarray | float:
    """Eq. 4: smoothing factor of an exponential filter with ``cutoff`` Hz at ``frequency`` Hz."""
    te = 1.0 / frequency
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / te)


def one_euro_step(x: np.ndarray, t: float, state: OneEuroState, p: OneEuroParams = MEDIAPIPE_WORLD
                  ) -> tuple[np.ndarray, OneEuroState]:
    """Filter one sample ``x`` (any shape, float) taken at ``t`` seconds; eqs. 1-4.

    Non-finite entries pass through unfiltered and leave that entry's memory untouched (a missing
    joint does not poison the filter).  A timestamp that does not advance returns the last output.
    """
    x = np.asarray(x, dtype=np.float64)
    if state.last_time is None or state.last_raw is None or state.last_raw.shape != x.shape:
        filt = np.where(np.isfinite(x), x, np.nan)
        return x.copy(), OneEuroState(filt.copy(), filt.copy(), np.zeros_like(x), float(t))
    dt = float(t) - state.last_time
    if dt <= 0:
        return state.last_filtered.copy(), state
    freq = 1.0 / dt
    ok = np.isfinite(x)
    fresh = ok & ~np.isfinite(state.last_raw)  # first finite value of this entry: take it as is
    dx = np.where(ok & ~fresh, (x - np.nan_to_num(state.last_raw)) * freq, 0.0)  # eq. 1 (raw derivative)
    edx = _alpha(p.derivate_cutoff, freq) * dx + (1 - _alpha(p.derivate_cutoff, freq)) * state.last_dx
    cutoff = p.min_cutoff + p.beta * np.abs(edx)  # eq. 2
    a = _alpha(cutoff, freq)
    prev = np.where(np.isfinite(state.last_filtered), state.last_filtered, x)
    y = a * x + (1 - a) * prev  # eq. 3
    y = np.where(fresh, x, y)
    out = np.where(ok, y, x)  # non-finite passes through
    new = OneEuroState(
        last_raw=np.where(ok, x, state.last_raw),
        last_filtered=np.where(ok, y, state.last_filtered),
        last_dx=np.where(ok, edx, state.last_dx),
        last_time=float(t),
    )
    return out, new


def one_euro_filter(xs: np.ndarray, ts: np.ndarray, state: OneEuroState | None = None,
                    p: OneEuroParams = MEDIAPIPE_WORLD) -> tuple[np.ndarray, OneEuroState]:
    """Filter a chunk ``xs`` (T, ...) at times ``ts`` (T,), continuing from ``state``."""
    state = state or OneEuroState()
    out = np.empty(np.shape(xs), dtype=np.float64)
    for i in range(len(xs)):
        out[i], state = one_euro_step(xs[i], float(ts[i]), state, p)
    return out, state


class PoseSmoother:
    """One-Euro smoothing of (J, 3) poses per tracked person; ``reset(person)`` after a track is lost."""

    def __init__(self, params: OneEuroParams = MEDIAPIPE_WORLD):
        self.params = params
        self.states: dict[int, OneEuroState] = {}

    def __call__(self, person: int, joints: np.ndarray, t: float) -> np.ndarray:
        y, self.states[person] = one_euro_step(joints, t, self.states.get(person, OneEuroState()), self.params)
        return y.astype(np.float32)  # (J, 3)

    def reset(self, person: int | None = None) -> None:
        if person is None:
            self.states.clear()
        else:
            self.states.pop(person, None)
