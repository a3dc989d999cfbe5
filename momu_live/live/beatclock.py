"""A predictive beat clock: tempo and phase locked to a rhythm envelope, beats published ahead of time.

The late tracker in ``tempo.py`` emits a beat when its grid *passes* a predicted beat, i.e. after the
fact (plus the envelope's own lag: the kinematic envelope is known 0.25 s after the time it describes,
pose estimation adds 20-50 ms).  A performer's lights, a drum machine or a DAW need the beat *before*
it falls.  The beat clock is a phase-locked loop over the same onset envelopes (``tempo.py``:
``kinematic_onset_step`` for poses, ``audio_onset_step`` for audio) that keeps a beat grid
``t_k = anchor_t + (k - anchor_k) * period`` and publishes each beat ``lead_s`` before it is due.

Method (all causal, explicit state, chunked == whole):

1. **Envelope grid**: envelope samples are put on a uniform ``rate`` Hz grid (linear interpolation,
   any input rate or jitter), the last ``history_s`` seconds kept.
2. **Tempo salience** every ``update_s``: the unbiased autocorrelation ``r(l)`` of the envelope,
   summed over metrical multiples ``S(l) = sum_{m=1..4} r(m l) / m`` (the comb of ``tempo.py``).
3. **Tempo with a continuity prior and octave hysteresis**: the first tempo is the argmax of ``S``
   times a log-normal prior around ``prior_bpm`` (as librosa's ``beat.tempo``).  Afterwards the
   tempo follows the salience peak within ``track_width`` of the current tempo (gain
   ``tempo_gain``); a peak outside it (another tempo, or an octave/triple relative) replaces the
   tempo only after it has scored ``switch_margin`` times better than the current tempo's peak
   without interruption for ``switch_s`` seconds (``octave_switch_s`` for ratios 2, 1/2, 3, 1/3,
   3/2, 2/3).  Octave errors come and go within a few seconds; a real tempo change lasts.
4. **Phase** every ``update_s``: comb filtering of the envelope with the current period
   (``c(phi) = sum_k decay^k o(n - phi - k P)``, parabolic peak interpolation) gives the last beat;
   a second-order PLL pulls the grid to it: ``anchor += phase_gain * e``, ``period += freq_gain * e``
   (``e`` the phase error wrapped to half a period, limited to ``max_phase_step`` of a period); tracking
   and PLL together move the tempo by at most ``max_drift`` (1 %) per second.
   When the period changes the grid is re-anchored on the beat nearest to the newest sample, so the
   beats around *now* do not move.
5. **Publication** (``due_beats``): on every call with the engine clock ``now``, each grid beat with
   ``now + min_lead_s <= t_k <= now + lead_s`` that has not been published yet is returned once
   (index, predicted time, BPM, bar phase, downbeat); a beat whose time falls closer than
   ``min_lead_s`` (a phase jump, a stalled input) is skipped and counted, never sent late; a beat
   within half a period of the last published one is never published (no double beats).
6. **Manual tempo** (``set_manual``): a tempo from OSC ``/momu/tempo/set/bpm``, MIDI clock in or an
   Ableton Link peer holds (the phase still follows the input) until ``release_manual`` hands it
   back; the next update then takes the input's tempo and phase at once (as at start), and tracking
   with hysteresis goes on from there.

Phase: ``Beat.phase`` is the position of the beat within the bar, ``(index mod meter) / meter``
(0 on the downbeat); ``clock_phase(state, t)`` is the beat phase in [0, 1) at any time ``t``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class BeatClockConfig:
    rate: float = 50.0  # Hz, envelope grid
    history_s: float = 8.0  # autocorrelation / comb window
    min_history_s: float = 3.0  # first tempo after this much signal
    update_s: float = 0.25  # tempo and phase update period
    bpm_min: float = 60.0
    bpm_max: float = 200.0
    prior_bpm: float = 120.0  # log-normal prior of the first tempo (and of switch candidates)
    prior_octaves: float = 1.0
    track_width: float = 0.06  # a salience peak within +-6 % of the tempo is the same tempo
    tempo_gain: float = 0.15  # per update, towards the local salience peak
    switch_s: float = 4.0  # a far-off tempo must win this long before it replaces the current one
    octave_switch_s: float = 10.0  # ... and this long when it is an octave / triple relative
    switch_margin: float = 1.3  # ... by this factor of the current tempo's salience
    phase_gain: float = 0.2  # PLL: fraction of the phase error corrected per update
    freq_gain: float = 0.02  # PLL: period correction per update (fraction of the phase error)
    max_phase_step: float = 0.15  # at most this fraction of a period per update
    max_drift: float = 0.01  # tracking and PLL move the tempo by at most this fraction per second
    comb_decay: float = 0.85  # weight of beat k back in the phase comb
    meter: int = 4
    lead_s: float = 0.25  # publish a beat this long before it is due
    min_lead_s: float = 0.05  # never publish a beat closer than this to its time (skipped instead)
    coast_s: float = 8.0  # keep publishing this long after the envelope fell silent
    min_energy: float = 1e-6  # below this mean square the envelope is silent
    salience: str = "comb"  # "comb" (plain r) or "prominence" (r over its half-period neighbours)
    offset_s: float = 0.0  # constant added to every published beat (calibration of a source's lag)


@dataclass
class BeatClockState:
    # envelope grid
    n: int = 0  # grid samples produced
    t0: float | None = None  # time of grid sample 0
    last_t: float | None = None  # last input sample (for interpolation)
    last_v: float = 0.0
    env: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # (H,) newest last
    # beat grid t_k = anchor_t + (k - anchor_k) * period
    period: float = 0.0  # seconds per beat (0: no tempo yet)
    anchor_t: float = 0.0
    anchor_k: int = 0
    confidence: float = 0.0  # normalised salience of the tempo, 0..1
    last_active: float = -math.inf  # time of the last update with a non-silent envelope
    # octave hysteresis
    cand_period: float = 0.0  # a far-off tempo candidate (seconds per beat; 0: none)
    cand_since: float = 0.0  # time it started winning
    switches: int = 0  # tempo replacements so far
    # manual tempo
    manual_bpm: float = 0.0  # > 0: the tempo is held here until released
    reacquire: bool = False  # just released: the next update takes the input's tempo without hysteresis
    # publication
    published_k: int = -1  # index of the last published beat
    published_t: float = -math.inf  # its time
    skipped: int = 0  # beats that fell closer than ``min_lead_s`` before they could be published


@dataclass(frozen=True)
class PredictedBeat:
    index: int
    time: float  # seconds, the input's stream time base
    bpm: float
    phase: float  # position within the bar, (index mod meter) / meter
    downbeat: bool
    confidence: float


def clock_bpm(state: BeatClockState) -> float:
    return 60.0 / state.period if state.period > 0 else 0.0


def beat_time(state: BeatClockState, k: int) -> float:
    return state.anchor_t + (k - state.anchor_k) * state.period


def clock_phase(state: BeatClockState, t: float) -> float:
    """Beat phase in [0, 1) at time ``t`` (0 on a beat); 0 when the tempo is unknown."""
    if state.period <= 0:
        return 0.0
    return float(((t - state.anchor_t) / state.period) % 1.0)


# ------------------------------------------------------------------------------------------------
# estimators (pure)


def tempo_salience(x: np.ndarray, cfg: BeatClockConfig) -> tuple[np.ndarray, np.ndarray]:
    """Candidate periods (s) (L,) and their metrical-comb autocorrelation salience (L,) of envelope ``x`` (N,)."""
    x = np.asarray(x, np.float64) - float(np.mean(x))
    n = len(x)
    lag_min = max(2, int(math.floor(60.0 * cfg.rate / cfg.bpm_max)))
    lag_max = min(n // 2, int(math.ceil(60.0 * cfg.rate / cfg.bpm_min)))
    if lag_max <= lag_min + 2:
        return np.zeros(0), np.zeros(0)
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n] / (n - np.arange(n))  # (N,) unbiased r(l)
    if ac[0] <= 0:
        return np.zeros(0), np.zeros(0)
    ac = np.convolve(ac / ac[0], [0.25, 0.5, 0.25], mode="same")  # (N,) spread frame-aliasing jitter
    lags = np.arange(lag_min, lag_max + 0.001, 0.125)  # (L,) fractional lags
    grid = np.arange(n)
    sal = np.zeros(len(lags))
    for m in range(1, 5):
        ml = m * lags
        r = np.interp(ml, grid, ac)
        if cfg.salience == "prominence":  # the peak over its half-period neighbours: a smooth decay scores 0
            r = r - 0.5 * (np.interp(ml - 0.5 * lags, grid, ac) + np.interp(ml + 0.5 * lags, grid, ac))
        sal += np.where(ml + 0.5 * lags <= 0.75 * n, r, 0.0) / m
    return lags / cfg.rate, sal


def _prior(periods: np.ndarray, cfg: BeatClockConfig) -> np.ndarray:
    bpm = 60.0 / np.asarray(periods, np.float64)
    return np.exp(-0.5 * (np.log2(bpm / cfg.prior_bpm) / cfg.prior_octaves) ** 2)


def _peak_near(periods: np.ndarray, sal: np.ndarray, p: float, width: float) -> tuple[float, float]:
    """The salience peak (period, value) within ``p * (1 +- width)``: its maximum when that is a local
    maximum of ``sal``; on a slope (the maximum at the window's edge) ``(p, sal(p))``, so the tempo does
    not slide up a broad hill.  ``(p, 0)`` when no candidate is in range."""
    m = np.abs(periods / p - 1.0) <= width
    if not m.any():
        return p, 0.0
    idx = np.flatnonzero(m)
    i = int(idx[np.argmax(sal[m])])
    if (i == idx[0] and i > 0 and sal[i - 1] > sal[i]) or (i == idx[-1] and i + 1 < len(sal) and sal[i + 1] > sal[i]):
        return p, float(np.interp(p, periods, sal))
    return float(periods[i]), float(sal[i])


def is_octave_relative(a: float, b: float, tol: float = 0.06) -> bool:
    """True when periods ``a`` and ``b`` are related by 2, 3, 3/2 (either way) within ``tol``."""
    r = max(a, b) / min(a, b)
    return any(abs(r / q - 1.0) <= tol for q in (2.0, 3.0, 1.5, 4.0))


def last_beat_offset(x: np.ndarray, period_samples: float, decay: float) -> float:
    """Fractional offset (grid samples back from the newest sample) of the last beat: the argmax of the
    comb ``c(phi) = sum_k decay^k x(n - 1 - phi - k P)`` over ``phi in [0, P)``, parabolically refined."""
    n = len(x)
    offsets = np.arange(int(math.ceil(period_samples)))  # (P,)
    score = np.zeros(len(offsets))
    w, k = 1.0, 0
    while True:
        pos = n - 1 - offsets - k * period_samples  # (P,)
        if pos.min() < 0:
            break
        i0 = np.floor(pos).astype(int)
        f = pos - i0
        i1 = np.minimum(i0 + 1, n - 1)
        score += w * ((1 - f) * x[i0] + f * x[i1])
        w *= decay
        k += 1
    i = int(np.argmax(score))
    a, b, c = score[(i - 1) % len(score)], score[i], score[(i + 1) % len(score)]
    den = a - 2 * b + c
    frac = 0.5 * (a - c) / den if den < 0 else 0.0
    return float(offsets[i] + np.clip(frac, -0.5, 0.5))


# ------------------------------------------------------------------------------------------------
# the clock


def _reanchor(s: BeatClockState, t: float) -> None:
    """Move the anchor to the grid beat nearest ``t`` (in place; the grid itself does not change)."""
    if s.period <= 0:
        return
    k = s.anchor_k + int(round((t - s.anchor_t) / s.period))
    s.anchor_t, s.anchor_k = beat_time(s, k), k


def _set_period(s: BeatClockState, period: float, t_now: float) -> None:
    """Change the tempo keeping the beat nearest ``t_now`` where it is (in place)."""
    _reanchor(s, t_now)
    s.period = float(period)


def _update(s: BeatClockState, cfg: BeatClockConfig) -> BeatClockState:
    """One tempo + phase update at the newest grid sample (returns a new state)."""
    s = replace(s)
    x = s.env
    t_now = s.t0 + (s.n - 1) / cfg.rate
    if float(np.mean(x * x)) < cfg.min_energy:
        s.confidence = 0.0
        return s  # silence: hold tempo and phase
    s.last_active = t_now
    periods, sal = tempo_salience(x, cfg)
    if len(periods) == 0:
        return s
    score = sal * _prior(periods, cfg)
    top = float(np.max(sal)) if float(np.max(sal)) > 0 else 1.0
    snap = False
    p_before = s.period
    if s.manual_bpm > 0:
        _set_period(s, 60.0 / s.manual_bpm, t_now)
        s.cand_period = 0.0
    elif s.period <= 0:  # first tempo: salience x prior, then the phase snaps to the comb
        p, _ = _peak_near(periods, sal, float(periods[int(np.argmax(score))]), 0.03)
        s.period, s.anchor_t, s.anchor_k = p, t_now, s.published_k + 1
        s.cand_period, snap = 0.0, True
    elif s.reacquire:  # handed back: the input's tempo at once (its level chosen with the prior, as at start)
        p, _ = _peak_near(periods, sal, float(periods[int(np.argmax(score))]), 0.03)
        _set_period(s, p, t_now)
        s.cand_period, s.reacquire, snap = 0.0, False, True
    else:
        p_loc, v_loc = _peak_near(periods, score, s.period, cfg.track_width)
        i = int(np.argmax(score))
        p_best = float(periods[i])
        far = abs(p_best / s.period - 1.0) > cfg.track_width
        switched = False
        if far and score[i] > cfg.switch_margin * v_loc:
            if not (s.cand_period > 0 and abs(p_best / s.cand_period - 1.0) <= cfg.track_width):
                s.cand_since = t_now  # a new candidate starts its clock
            s.cand_period = p_best
            hold = cfg.octave_switch_s if is_octave_relative(p_best, s.period) else cfg.switch_s
            if t_now - s.cand_since >= hold:
                _set_period(s, p_best, t_now)
                s.cand_period, s.switches, switched, snap = 0.0, s.switches + 1, True, True
        else:
            s.cand_period = 0.0
        if not switched and v_loc > 0:
            _set_period(s, s.period + cfg.tempo_gain * (p_loc - s.period), t_now)
    s.confidence = float(np.clip(_peak_near(periods, sal, s.period, cfg.track_width)[1] / max(top, 1e-9), 0, 1)
                         * np.clip(top, 0, 1))
    # phase: comb over the history with the current period, PLL towards it
    off = last_beat_offset(x, s.period * cfg.rate, cfg.comb_decay)
    b_est = t_now - off / cfg.rate
    k = s.anchor_k + int(round((b_est - s.anchor_t) / s.period))
    err = b_est - beat_time(s, k)  # in [-P/2, P/2]
    lim = cfg.max_phase_step * s.period
    s.anchor_t = beat_time(s, k) + (err if snap else float(np.clip(cfg.phase_gain * err, -lim, lim)))
    s.anchor_k = k
    if s.manual_bpm <= 0 and not snap:
        drift = cfg.max_drift * cfg.update_s * p_before  # slow tempo changes only (a switch is a jump)
        p = float(np.clip(s.period + cfg.freq_gain * err, p_before - drift, p_before + drift))
        s.period = float(np.clip(p, 60.0 / cfg.bpm_max, 60.0 / cfg.bpm_min))
    return s


def beatclock_step(times: np.ndarray, values: np.ndarray, state: BeatClockState,
                   cfg: BeatClockConfig = BeatClockConfig()) -> BeatClockState:
    """Feed envelope samples ``values`` (T,) at ``times`` (T,) seconds; returns the new state.

    Non-finite values count as 0; samples not later than the last one are ignored.
    """
    s = replace(state)
    H = int(round(cfg.history_s * cfg.rate))
    upd = max(1, int(round(cfg.update_s * cfg.rate)))
    min_n = int(round(cfg.min_history_s * cfg.rate))
    for t, v in zip(np.asarray(times, np.float64).reshape(-1), np.asarray(values, np.float64).reshape(-1)):
        v = float(v) if math.isfinite(v) else 0.0
        t = float(t)
        if s.t0 is None:
            s.t0, s.last_t, s.last_v = t, t, v
            grid = [v]
        else:
            if t <= s.last_t:
                continue
            grid = []
            while True:  # grid samples in (last_t, t]
                tg = s.t0 + (s.n + len(grid)) / cfg.rate
                if tg > t:
                    break
                w = (tg - s.last_t) / (t - s.last_t)
                grid.append((1 - w) * s.last_v + w * v)
            s.last_t, s.last_v = t, v
        for g in grid:
            s.env = np.append(s.env, g)[-H:]
            s.n += 1
            if s.n >= min_n and s.n % upd == 0:
                s = _update(s, cfg)
    return s


def predict(state: BeatClockState, cfg: BeatClockConfig, t_from: float, t_to: float) -> list[PredictedBeat]:
    """The grid's beats with ``t_from < time <= t_to`` (the clock's forecast; ``offset_s`` applied)."""
    s = state
    if s.period <= 0:
        return []
    k0 = s.anchor_k + int(math.floor((t_from - cfg.offset_s - s.anchor_t) / s.period)) + 1
    out = []
    k = k0
    while True:
        t = beat_time(s, k) + cfg.offset_s
        if t > t_to:
            break
        if t > t_from:
            out.append(PredictedBeat(k, t, 60.0 / s.period, (k % cfg.meter) / cfg.meter, k % cfg.meter == 0,
                                     s.confidence))
        k += 1
    return out


def clock_running(state: BeatClockState, cfg: BeatClockConfig, now: float) -> bool:
    """Whether beats are published: a tempo is known and the input was active within ``coast_s`` (or
    the tempo is manual)."""
    if state.period <= 0:
        return False
    return state.manual_bpm > 0 or now - state.last_active <= cfg.coast_s + cfg.lead_s + 1.0


def due_beats(state: BeatClockState, cfg: BeatClockConfig, now: float) -> tuple[list[PredictedBeat], BeatClockState]:
    """Beats to publish at clock time ``now`` (each once, ``min_lead_s..lead_s`` ahead) and the new state."""
    if not clock_running(state, cfg, now):
        return [], state
    s = replace(state)
    out = []
    for b in predict(s, cfg, now, now + cfg.lead_s):
        if b.index <= s.published_k or b.time < s.published_t + 0.5 * s.period:
            continue
        if b.time < now + cfg.min_lead_s:  # too close to be sent ahead: skip, never late
            s.skipped += 1
            s.published_k, s.published_t = b.index, b.time
            continue
        out.append(b)
        s.published_k, s.published_t = b.index, b.time
    return out, s


def set_manual(state: BeatClockState, bpm: float, t_now: float, beat_at: float | None = None) -> BeatClockState:
    """Hold the tempo at ``bpm`` (the grid keeps its beat nearest ``t_now``; ``beat_at``: a beat time
    from the external clock, which the grid then goes through)."""
    s = replace(state, manual_bpm=float(bpm), cand_period=0.0)
    if s.period <= 0:
        s.anchor_t, s.anchor_k = (beat_at if beat_at is not None else t_now), s.published_k + 1
        s.period = 60.0 / bpm
        s.last_active = t_now
    else:
        _set_period(s, 60.0 / bpm, t_now)
    if beat_at is not None:
        k = s.anchor_k + int(round((beat_at - s.anchor_t) / s.period))
        s.anchor_t, s.anchor_k = float(beat_at), k
    return s


def release_manual(state: BeatClockState) -> BeatClockState:
    """Hand the tempo back to the tracker: its next update takes the input's tempo and phase (salience x
    prior, no hysteresis), then tracking goes on from there."""
    if state.manual_bpm <= 0:
        return state
    return replace(state, manual_bpm=0.0, cand_period=0.0, reacquire=True)


class BeatClock:
    """The stateful wrapper the engine uses: feed poses / audio, then ``due(now)`` -> beats to publish."""

    def __init__(self, cfg: BeatClockConfig = BeatClockConfig()):
        from momu_live.live.tempo import AudioOnsetState, KinematicOnsetState

        self.cfg = cfg
        self.state = BeatClockState()
        self.kin = KinematicOnsetState()
        self.aud = AudioOnsetState()

    @property
    def bpm(self) -> float:
        return clock_bpm(self.state)

    @property
    def manual(self) -> bool:
        return self.state.manual_bpm > 0

    def phase(self, t: float) -> float:
        return clock_phase(self.state, t)

    def add_pose(self, joints: np.ndarray | None, t: float) -> None:
        from momu_live.live.tempo import kinematic_onset_step

        tc, o, self.kin = kinematic_onset_step(joints, t, self.kin)
        if tc is not None:
            self.state = beatclock_step(np.array([tc]), np.array([o]), self.state, self.cfg)

    def add_audio(self, samples: np.ndarray, t_first: float, sr: int) -> None:
        from momu_live.live.tempo import audio_onset_step

        ts, fx, self.aud = audio_onset_step(samples, t_first, sr, self.aud)
        if len(ts):
            self.state = beatclock_step(ts, fx, self.state, self.cfg)

    def due(self, now: float) -> list[PredictedBeat]:
        beats, self.state = due_beats(self.state, self.cfg, now)
        return beats

    def set_manual(self, bpm: float, t_now: float, beat_at: float | None = None) -> None:
        self.state = set_manual(self.state, bpm, t_now, beat_at)

    def release_manual(self) -> None:
        self.state = release_manual(self.state)
