"""Motion/music scores of the dance<->music field, exactly as the old repos code them, plus honest variants.

Beat-set scores take beat/onset times in seconds (models/beats.py for music, models/kinematics.py for
motion) and the clip duration.  All rates are fractions (0-1), not percent.

1. LORIS (OpenGVLab/LORIS ``beats_scores.py`` @443e4b9, ``beat_scores``): onsets binned into
   1-second bins (``int(trunc(t))``, ``ceil(duration)`` bins); reference bins cropped to the
   generated length; hits = bins set in both; **BCS = hits / generated bins**, **BHS = hits /
   reference bins** (0 when the denominator is 0).  Over clips: BCS/BHS = means, **CSD/HSD =
   sample standard deviations** (ddof 1), **F1 = 2 BCS BHS / (BCS + BHS)** from the means.
2. ``d2m_v1`` (D2M-GAN / CDCD ``beats_scores.py``): same bins, **BCS = generated bins / reference
   bins** (can exceed 1), **BHS = hits / reference bins**; music onsets with the ``d2m_v1`` peak
   picking (models/beats.py).
3. ``fine``: LORIS formula on **5 Hz** bins (200 ms, as the LORIS-derived textual-inversion
   evaluation does), and ``beat_f_measure`` with **+-70 ms** tolerance (mir_eval-style one-to-one
   matching).  1-second bins saturate near 1 for any busy music; these do not.
4. ``beat_align_score``: Bailando (``utils/metrics_new.py`` ``BA``): for every music beat, the
   gaussian of the distance to the nearest motion beat, sigma 3 frames at 60 fps, averaged over
   music beats.  (AIST++/FACT average over motion beats instead: ``direction="motion"``.)
5. ``beat_grid_coherence``: how strongly a z-scored motion rhythm signal locks to the phase of the
   music's beat (or bar) grid: c = mean_t x(t) exp(i 2 pi phase(t)), phase linear between beats;
   Rayleigh-type z = N_cycles * 2 |c|^2 (../shared/data/dwm/README.md; p ~ exp(-z)).
6. ``kinetic_features`` (AIST++ ``features/kinetic.py`` as used by Bailando for FID_k / Div_k):
   per joint the average horizontal and vertical kinetic energy and the energy expenditure
   (mean acceleration magnitude), sliding window 2, on 60-fps positions; ``fid_k`` normalises both
   sets with the reference's mean/std (Bailando ``normalize``) then applies the Frechet distance;
   ``diversity`` is the mean pairwise Euclidean distance (Bailando ``calculate_avg_distance``).

``score_pair`` bundles everything for one motion/music pair (the library API other parts call).
"""
from __future__ import annotations

import math

import numpy as np

from momu_live import MomuError

BAS_FPS = 60.0  # Bailando evaluates on AIST++ 60-fps frames
BAS_SIGMA_FRAMES = 3.0
KINETIC_FPS = 60.0  # AIST++ kinetic features are computed on 60-fps positions


# ------------------------------------------------------------------------------------------------
# 1-3: binned beat coverage / hit scores and the tolerance F-measure


def bin_beats(times: np.ndarray, duration: float, rate: float = 1.0) -> np.ndarray:
    """LORIS binning: ``ceil(duration * rate)`` bins, bin ``int(trunc(t * rate))`` set to 1 (int array)."""
    n = int(math.ceil(duration * rate - 1e-9))
    bins = np.zeros(max(n, 0), dtype=np.int64)
    idx = np.trunc(np.asarray(times, float) * rate).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n)]
    bins[idx] = 1
    return bins


def loris_beat_scores(ref_bins: np.ndarray, gen_bins: np.ndarray) -> tuple[float, float]:
    """LORIS ``beat_scores``: (BCS = hits / generated, BHS = hits / reference), 0 for empty denominators."""
    gen = np.asarray(gen_bins)
    ref = np.asarray(ref_bins)[: len(gen)]
    if len(ref) != len(gen):
        raise MomuError(f"reference has {len(ref)} bins < generated {len(gen)}; score clips of equal duration")
    hits = int(np.sum((ref == 1) & (gen == 1)))
    total, cover = int(ref.sum()), int(gen.sum())
    return (hits / cover if cover else 0.0), (hits / total if total else 0.0)


def v1_beat_scores(ref_bins: np.ndarray, gen_bins: np.ndarray) -> tuple[float, float]:
    """D2M-GAN / CDCD ``beat_scores``: (BCS = generated / reference, BHS = hits / reference); NaN when no reference beat."""
    ref, gen = np.asarray(ref_bins), np.asarray(gen_bins)
    if len(ref) != len(gen):
        raise MomuError(f"v1 beat scores need equal bin counts, got {len(ref)} and {len(gen)}")
    total = int(ref.sum())
    if total == 0:
        return float("nan"), float("nan")  # the original raises ZeroDivisionError
    return int(gen.sum()) / total, int(np.sum((ref == 1) & (gen == 1))) / total


def summarize_beat_scores(pairs: list[tuple[float, float]]) -> dict:
    """LORIS aggregation over clips: BCS, CSD (sample std), BHS, HSD (sample std), F1 from the means."""
    a = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    a = a[np.isfinite(a).all(1)]
    if len(a) == 0:
        return {"BCS": float("nan"), "CSD": float("nan"), "BHS": float("nan"), "HSD": float("nan"), "F1": float("nan"), "n": 0}
    bcs, bhs = a.mean(0)
    sd = a.std(0, ddof=1) if len(a) > 1 else np.full(2, float("nan"))
    f1 = 2 * bcs * bhs / (bcs + bhs) if bcs + bhs > 0 else 0.0
    return {"BCS": float(bcs), "CSD": float(sd[0]), "BHS": float(bhs), "HSD": float(sd[1]), "F1": float(f1), "n": int(len(a))}


def match_beats(ref: np.ndarray, est: np.ndarray, tol: float) -> int:
    """Size of the largest one-to-one matching of ``est`` to ``ref`` with |difference| <= tol.

    Points on a line with a symmetric window: the greedy two-pointer sweep in time order is optimal
    (same count as mir_eval's bipartite matching).
    """
    r, e = np.sort(np.asarray(ref, float)), np.sort(np.asarray(est, float))
    i = j = n = 0
    while i < len(r) and j < len(e):
        if abs(r[i] - e[j]) <= tol + 1e-12:
            n += 1
            i += 1
            j += 1
        elif e[j] < r[i]:
            j += 1
        else:
            i += 1
    return n


def beat_f_measure(ref: np.ndarray, est: np.ndarray, tol: float = 0.07) -> dict:
    """Precision, recall and F-measure of ``est`` beats against ``ref`` with +-``tol`` seconds."""
    ref, est = np.asarray(ref, float), np.asarray(est, float)
    if len(ref) == 0 or len(est) == 0:
        return {"precision": 0.0, "recall": 0.0, "f": 0.0}
    m = match_beats(ref, est, tol)
    p, r = m / len(est), m / len(ref)
    return {"precision": p, "recall": r, "f": 2 * p * r / (p + r) if p + r > 0 else 0.0}


def binned_scores(ref_times: np.ndarray, gen_times: np.ndarray, duration: float) -> dict:
    """LORIS (1 s), D2M v1 (1 s) and fine (5 Hz) BCS/BHS of one pair: {variant: {"bcs", "bhs"}}."""
    out = {}
    for name, rate, fn in (("loris", 1.0, loris_beat_scores), ("d2m_v1", 1.0, v1_beat_scores), ("fine_5hz", 5.0, loris_beat_scores)):
        bcs, bhs = fn(bin_beats(ref_times, duration, rate), bin_beats(gen_times, duration, rate))
        out[name] = {"bcs": bcs, "bhs": bhs}
    return out


# ------------------------------------------------------------------------------------------------
# 4: Bailando beat align score


def beat_align_score(music_beats: np.ndarray, motion_beats: np.ndarray, fps: float = BAS_FPS,
                     sigma_frames: float = BAS_SIGMA_FRAMES, direction: str = "music") -> float:
    """Bailando BA: mean over music beats of exp(-min_m (t_m - t_b)^2 / (2 sigma^2)), in frames at ``fps``.

    Beat times are rounded to frames at ``fps`` (Bailando's beats are 60-fps frame indices).
    ``direction="motion"`` averages over motion beats instead (AIST++/FACT).  0 when either is empty.
    """
    mb = np.round(np.asarray(music_beats, float) * fps)
    db = np.round(np.asarray(motion_beats, float) * fps)
    if direction == "motion":
        mb, db = db, mb
    elif direction != "music":
        raise ValueError(direction)
    if len(mb) == 0 or len(db) == 0:
        return 0.0
    d2 = np.min((mb[:, None] - db[None, :]) ** 2, axis=1)  # (n_music,)
    return float(np.mean(np.exp(-d2 / (2 * sigma_frames ** 2))))


# ------------------------------------------------------------------------------------------------
# 5: beat-grid coherence


def grid_phase(times: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Beat phase (in beats, float) at ``times``: i + (t - b_i) / (b_{i+1} - b_i); NaN outside [b_0, b_last]."""
    b = np.asarray(beats, float)
    t = np.asarray(times, float)
    out = np.full(t.shape, np.nan)
    if len(b) < 2:
        return out
    if np.any(np.diff(b) <= 0):
        raise MomuError("beat times must be strictly increasing")
    i = np.clip(np.searchsorted(b, t, side="right") - 1, 0, len(b) - 2)
    ok = (t >= b[0]) & (t <= b[-1])
    out[ok] = i[ok] + (t[ok] - b[i[ok]]) / (b[i[ok] + 1] - b[i[ok]])
    return out


def beat_grid_coherence(signal: np.ndarray, fps: float, beats: np.ndarray, beats_per_cycle: int = 1) -> dict:
    """Phase locking of a motion rhythm signal (T,) at ``fps`` to a beat grid (or bar grid).

    c = mean over frames inside the grid of z(t) exp(i 2 pi phase(t) / beats_per_cycle), z the
    z-scored signal; z_rayleigh = N_cycles * 2 |c|^2 with N_cycles = (beats - 1) / beats_per_cycle
    (../shared/data/dwm/README.md).  ``phase_of_peak`` (cycles, [0, 1)) is where in the cycle the
    signal is highest.  A bar grid (beats_per_cycle = 3 for waltz) needs no downbeat: shifting the
    downbeat only rotates c, |c| is unchanged.
    """
    x = np.asarray(signal, float)
    ph = grid_phase(np.arange(len(x)) / fps, beats)  # (T,) beats
    ok = np.isfinite(ph) & np.isfinite(x)
    nan = {"c": float("nan"), "z": float("nan"), "n_cycles": 0.0, "phase_of_peak": float("nan"), "n_frames": int(ok.sum())}
    if ok.sum() < 4 or np.std(x[ok]) < 1e-12:
        return nan
    xs = (x[ok] - x[ok].mean()) / x[ok].std()
    c = np.mean(xs * np.exp(2j * np.pi * ph[ok] / beats_per_cycle))
    n_cycles = (np.nanmax(ph[ok]) - np.nanmin(ph[ok])) / beats_per_cycle
    return {"c": float(abs(c)), "z": float(n_cycles * 2 * abs(c) ** 2), "n_cycles": float(n_cycles),
            "phase_of_peak": float(np.angle(c) / (2 * np.pi) % 1.0), "n_frames": int(ok.sum())}


def circular_mean(phases, weights=None) -> dict:
    """Circular mean of phases in cycles ([0, 1) wraps): ``phase`` (cycles, [0, 1)) and resultant length ``R``
    (1: all equal, 0: spread evenly); NaN phases are dropped, ``n`` counts the rest."""
    p = np.asarray(phases, float)
    w = np.ones_like(p) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(p) & np.isfinite(w)
    if not ok.any() or w[ok].sum() <= 0:
        return {"phase": float("nan"), "R": float("nan"), "n": 0}
    c = np.sum(w[ok] * np.exp(2j * np.pi * p[ok])) / w[ok].sum()
    return {"phase": float(np.angle(c) / (2 * np.pi) % 1.0), "R": float(abs(c)), "n": int(ok.sum())}


def beat_phase_audit(feet_speed: np.ndarray, fps: float, beats: np.ndarray, onsets: np.ndarray) -> dict:
    """Where on the music's beat a dance's feet move: ``feet_phase`` (cycles after the tracked beat where the feet
    speed peaks, with its lock ``feet_R``; ``beat_grid_coherence``'s phase_of_peak / |c|), ``onset_phase`` (circular
    mean beat phase of the music's onsets, ``onset_R``: where the tracker put the beats relative to the audible
    attacks), and ``lag_s``: feet-speed peak minus the onsets' phase, in seconds at the median beat period (wrapped
    to +-half a beat).  Across dances of one style, a consistent ``lag_s`` means the beat phase can be learnt from
    motion; an even spread means the pairs' music-motion offsets differ per dance."""
    fb = beat_grid_coherence(feet_speed, fps, beats, 1)
    on = circular_mean(grid_phase(np.asarray(onsets, float), beats) % 1.0)
    ibi = float(np.median(np.diff(np.asarray(beats, float)))) if len(beats) > 1 else float("nan")
    lag = ((fb["phase_of_peak"] - on["phase"] + 0.5) % 1.0 - 0.5) * ibi
    return {"feet_phase": fb["phase_of_peak"], "feet_R": fb["c"], "onset_phase": on["phase"], "onset_R": on["R"],
            "beat_period_s": ibi, "lag_s": float(lag)}


# ------------------------------------------------------------------------------------------------
# 6: kinetic features, FID_k, diversity


def _resample_joints(joints: np.ndarray, fps: float, fps_out: float) -> np.ndarray:
    if abs(fps - fps_out) < 1e-9:
        return np.asarray(joints, np.float64)
    from momu_live.models.motion import Motion

    return Motion(joints=np.asarray(joints, np.float32), fps=fps, joint_names=tuple(f"j{i}" for i in range(joints.shape[1]))) \
        .resample(fps_out).joints.astype(np.float64)


def kinetic_features(joints: np.ndarray, fps: float, up_axis: int = 1, window: int = 2, resample_to: float | None = KINETIC_FPS) -> np.ndarray:
    """AIST++ kinetic features (3 J,): per joint [horizontal KE, vertical KE, energy expenditure].

    Vectorised form of AIST++ ``KineticFeatures`` (``features/kinetic.py``, as Bailando uses it):
    frame i in 1..T-1 averages the velocity differences of frames i-w..i+w that exist, horizontal
    KE = mean_i |v_h|^2, vertical = mean_i v_y^2, expenditure = mean_i |mean acceleration|; sums are
    divided by T (not T - 1), as the original does.  Positions are first resampled to 60 fps.
    """
    from momu_live.models.kinematics import check_joints

    j = check_joints(joints, fps, 3)
    if resample_to:
        j, fps = _resample_joints(j, fps, resample_to), resample_to
    T = j.shape[0]
    if T < 3:
        raise MomuError("kinetic features need at least 3 frames")
    ft = 1.0 / fps
    i = np.arange(1, T)
    # velocity window: differences d[k] = p[k] - p[k-1], k in [max(1, i-w), min(T-1, i+w)]
    lo, hi = np.maximum(1, i - window), np.minimum(T - 1, i + window)
    vel = (j[hi] - j[lo - 1]) / ((hi - lo + 1) * ft)[:, None, None]  # (T-1, J, 3)
    horiz = np.delete(vel, up_axis, axis=-1)
    ke_h = (np.linalg.norm(horiz, axis=-1) ** 2).sum(0) / T  # (J,)
    ke_v = (vel[..., up_axis] ** 2).sum(0) / T  # (J,)
    # acceleration window: a[k] = p[k+1] - 2 p[k] + p[k-1], k in [max(1, i-w), min(T-2, i+w)]
    lo_a, hi_a = np.maximum(1, i - window), np.minimum(T - 2, i + window)
    v = j[1:] - j[:-1]  # (T-1, J, 3): v[k-1] = p[k] - p[k-1]
    # sum_k a[k] = sum_k (v[k] - v[k-1]) telescopes to v[hi] - v[lo - 1]
    cnt = (hi_a - lo_a + 1).astype(float)
    acc = (v[hi_a] - v[lo_a - 1]) / (ft * ft) / cnt[:, None, None]  # (T-1, J, 3)
    exp_ = np.linalg.norm(acc, axis=-1).sum(0) / T  # (J,)
    return np.stack([ke_h, ke_v, exp_], axis=1).reshape(-1)  # (3J,) joint-major as AIST++


def normalize_features(ref: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bailando ``normalize``: both sets standardised with the reference set's mean and std."""
    mean, std = ref.mean(0), ref.std(0)
    return (ref - mean) / (std + 1e-10), (other - mean) / (std + 1e-10)


def fid_k(ref_features: np.ndarray, gen_features: np.ndarray) -> float:
    """Bailando FID_k: Frechet distance of kinetic features (N, 3J) after ``normalize_features``."""
    from momu_live.models.fad import frechet_between

    r, g = normalize_features(np.asarray(ref_features, float), np.asarray(gen_features, float))
    return frechet_between(g, r)


def diversity(features: np.ndarray) -> float:
    """Bailando ``calculate_avg_distance``: mean Euclidean distance over all pairs of feature vectors."""
    f = np.asarray(features, float)
    n = len(f)
    if n < 2:
        return float("nan")
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    return float(d[np.triu_indices(n, 1)].mean())


# ------------------------------------------------------------------------------------------------
# the library API: one pair -> every score


def beats_per_bar(genre: str | None) -> int:
    """3 for waltz, else 4 (ballroom genres of DwM; used for the bar-phase coherence)."""
    return 3 if genre and "waltz" in genre.lower() else 4


def motion_rhythm(joints: np.ndarray, fps: float) -> dict:
    """Kinematic beats (s) and rhythm signals of canonical joints: flux_beats, speed_minima, feet_speed, pelvis_height."""
    from momu_live.models import kinematics as K

    return {"flux_beats": K.flux_beats(joints, fps), "speed_minima": K.speed_minima_beats(joints, fps),
            "feet_speed": K.feet_speed(joints, fps), "pelvis_height": K.pelvis_height(joints, fps)}


def score_rhythms(music, motion: dict, fps: float, duration: float, genre: str | None = None) -> dict:
    """All pairwise beat scores from a ``beats.MusicRhythm`` and ``motion_rhythm`` output (no audio work)."""
    ref_onsets = music.onsets
    out = {"binned": {}, "beat_f": {}, "bas": {}, "coherence": {}}
    for mname in ("flux_beats", "speed_minima"):
        gen = motion[mname]
        b = binned_scores(ref_onsets["loris"], gen, duration)
        b["d2m_v1"] = binned_scores(ref_onsets["d2m_v1"], gen, duration)["d2m_v1"]
        out["binned"][mname] = b
        out["beat_f"][mname] = {f"{int(tol * 1000)}ms": beat_f_measure(music.beats, gen, tol) for tol in (0.07, 0.1)}
    out["bas"] = {
        "bailando": beat_align_score(music.beats, motion["speed_minima"]),
        "motion_to_music": beat_align_score(music.beats, motion["speed_minima"], direction="motion"),
        "flux_bailando": beat_align_score(music.beats, motion["flux_beats"]),
        "fps": BAS_FPS, "sigma_frames": BAS_SIGMA_FRAMES,
    }
    bpb = beats_per_bar(genre)
    out["coherence"] = {
        "feet_speed_beat": beat_grid_coherence(motion["feet_speed"], fps, music.beats, 1),
        "pelvis_height_beat": beat_grid_coherence(motion["pelvis_height"], fps, music.beats, 1),
        "pelvis_height_bar": {**beat_grid_coherence(motion["pelvis_height"], fps, music.beats, bpb), "beats_per_bar": bpb},
    }
    # the DwM README statistic: pelvis height on the bar phase for waltz, feet speed on the beat phase otherwise
    out["coherence"]["genre_lock"] = dict(out["coherence"]["pelvis_height_bar" if bpb == 3 else "feet_speed_beat"],
                                          signal="pelvis_height@bar" if bpb == 3 else "feet_speed@beat")
    return out


def crop_pair(joints: np.ndarray, fps: float, wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crop motion and audio to their common duration; returns (joints, wav, report)."""
    from fractions import Fraction

    from momu_live.models.timebase import as_rate, time_to_frame

    m_s, a_s = len(joints) / fps, len(wav) / sr
    common = min(Fraction(len(joints)) / as_rate(fps), Fraction(len(wav), sr))
    n_j = min(len(joints), time_to_frame(common, fps, "floor"))
    n_a = min(len(wav), time_to_frame(common, sr, "floor"))
    rep = {"motion_seconds": m_s, "music_seconds": a_s, "scored_seconds": float(common),
           "cropped": abs(m_s - a_s) > 1.0 / fps}
    return joints[:n_j], wav[:n_a], rep


def score_pair(motion, wav: np.ndarray, sr: int, genre: str | None = None, music=None, genre_prior: bool = True) -> dict:
    """Every beat score of one motion/music pair (generated or ground truth).

    motion: ``models.motion.Motion`` (any known skeleton; mapped to canonical); wav (N,) mono at ``sr``.
    ``music``: a precomputed ``beats.MusicRhythm`` of this very wav (cache), else computed here, with the
    ballroom tempo prior of ``genre`` for beat tracking unless ``genre_prior`` is False (field default 120 BPM).
    Returns a JSON-ready dict: crop report, music/motion beat counts, binned BCS/BHS (loris, d2m_v1,
    fine_5hz) of kinematic beats against music onsets, beat F (+-70/100 ms) against music beats,
    BAS, beat-grid coherences, and the kinetic feature vector (for FID_k/diversity over sets).
    """
    from momu_live.models.beats import analyse_music, beat_params_for
    from momu_live.models.skeleton import to_canonical

    m = to_canonical(motion)
    wav = np.asarray(wav, np.float32)
    if wav.ndim != 1:
        raise MomuError(f"audio must be mono (N,), got shape {wav.shape}")
    joints, wav_c, crop = crop_pair(m.joints, m.fps, wav, sr)
    if crop["scored_seconds"] < 2.0:
        raise MomuError(f"motion and music overlap only {crop['scored_seconds']:.2f} s; need >= 2 s to score beats")
    mus = music if music is not None else analyse_music(wav_c, sr, beat_params_for(genre, genre_prior))
    mot = motion_rhythm(joints, m.fps)
    dur = crop["scored_seconds"]
    out = {
        "crop": crop, "fps": m.fps, "sample_rate": sr, "genre": genre or "",
        "music": {"tempo_bpm": mus.tempo, "n_beats": int(len(mus.beats)),
                  "beat_track_start_bpm": mus.params.get("beat_track", {}).get("start_bpm"),
                  "n_onsets": {k: int(len(v)) for k, v in mus.onsets.items()},
                  "beats": mus.beats.tolist(), "params": mus.params},
        "motion_beats": {"flux_beats": mot["flux_beats"].tolist(), "speed_minima": mot["speed_minima"].tolist()},
        "motion": {"n_flux_beats": int(len(mot["flux_beats"])), "n_speed_minima": int(len(mot["speed_minima"]))},
        **score_rhythms(mus, mot, m.fps, dur, genre),
        "kinetic_features": kinetic_features(joints, m.fps).tolist(),
    }
    return out


def headline(scores: dict) -> dict:
    """Flat {metric name: value} of one ``score_pair`` result (the rows of the dataset table)."""
    s = scores
    out = {}
    for mn, short in (("flux_beats", "flux"), ("speed_minima", "spdmin")):
        for variant in ("loris", "d2m_v1", "fine_5hz"):
            out[f"{variant}_bcs[{short}]"] = s["binned"][mn][variant]["bcs"]
            out[f"{variant}_bhs[{short}]"] = s["binned"][mn][variant]["bhs"]
        for tol in ("70ms", "100ms"):
            out[f"beatF_{tol}[{short}]"] = s["beat_f"][mn][tol]["f"]
    out["BAS_bailando"] = s["bas"]["bailando"]
    out["BAS_motion_to_music"] = s["bas"]["motion_to_music"]
    out["BAS_flux"] = s["bas"]["flux_bailando"]
    for k, v in s["coherence"].items():
        out[f"coh_z[{k}]"] = v["z"]
    return out


def score_music_pair(ref, gen, duration: float) -> dict:
    """LORIS setting: generated music rhythm ``gen`` against reference music ``ref`` (both ``beats.MusicRhythm``).

    Binned BCS/BHS of onsets (loris preset for loris/fine_5hz, d2m_v1 preset for d2m_v1) and beat
    F-measures of beat_track beats (+-70 / +-100 ms).
    """
    b = binned_scores(ref.onsets["loris"], gen.onsets["loris"], duration)
    b["d2m_v1"] = binned_scores(ref.onsets["d2m_v1"], gen.onsets["d2m_v1"], duration)["d2m_v1"]
    return {"binned": b, "beat_f": {f"{int(t * 1000)}ms": beat_f_measure(ref.beats, gen.beats, t) for t in (0.07, 0.1)}}


def score_music_wavs(ref_wav: np.ndarray, gen_wav: np.ndarray, sr: int) -> dict:
    """``score_music_pair`` on two waveforms (cropped to the shorter): generated music vs ground truth."""
    from momu_live.models.beats import analyse_music

    n = min(len(ref_wav), len(gen_wav))
    return score_music_pair(analyse_music(ref_wav[:n], sr), analyse_music(gen_wav[:n], sr), n / sr)


# ------------------------------------------------------------------------------------------------
# music realism statistics outside any loss or guidance objective (momu eval generate --suite outside)


def chroma_entropy(wav: np.ndarray, sr: int, hop_length: int = 512, n_fft: int = 2048, floor_db: float = -60.0) -> float:
    """Mean Shannon entropy (**bits**) of the 12-bin chroma distribution per frame; max log2(12) = 3.585.

    ``librosa.feature.chroma_stft`` (power spectrogram, n_fft 2048, hop 512, tuning 0, no per-frame
    normalisation), each frame divided by its sum.  Frames more than ``floor_db`` below the loudest frame
    (silence between clicks) are left out: their chroma is noise.  Tonal music concentrates energy on a
    few pitch classes (lower entropy); white noise spreads it evenly (near the maximum).
    """
    from momu_live.models._librosa import librosa as _librosa

    librosa = _librosa()
    x = np.asarray(wav, np.float32)
    S = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop_length, center=True)) ** 2  # (1 + n_fft/2, frames)
    c = librosa.feature.chroma_stft(S=S, sr=sr, n_fft=n_fft, hop_length=hop_length, tuning=0.0, norm=None)  # (12, frames)
    energy = S.sum(0)  # (frames,)
    keep = energy > energy.max() * 10 ** (floor_db / 10) if energy.max() > 0 else np.zeros_like(energy, bool)
    c = c[:, keep]
    if c.shape[1] == 0:
        return float("nan")
    p = c / (c.sum(0, keepdims=True) + 1e-20)
    return float(np.mean(-(p * np.log2(p + 1e-20)).sum(0)))


def tempo_ratio(tempo: float, reference_tempo: float) -> float:
    """Tracked tempo over the reference's (1.0 = same tempo; 2.0 / 0.5 = octave errors); NaN if either is 0."""
    return float(tempo / reference_tempo) if tempo > 0 and reference_tempo > 0 else float("nan")


def within_tempo(ratio: float, tol: float = 0.04) -> bool:
    """True when a tempo ratio is within +-``tol`` of 1 (octave errors count as misses)."""
    return bool(np.isfinite(ratio) and abs(ratio - 1.0) <= tol)
