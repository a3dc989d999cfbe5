"""Beat metrics, coherence, Frechet distances on constructed signals with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.models import metrics as M
from momu_live.models.beats import D2M_V1, LORIS, analyse_music, click_track, music_onsets
from momu_live.models.fad import MelStatEmbedding, fad_melstat, frechet_between, frechet_distance
from momu_live.models.motion import synthetic_dance

SR = 22050


@pytest.fixture(scope="module")
def clicks():
    """30 s click tracks: 120 BPM, the same shifted by half a beat, and an unrelated 93 BPM."""
    b120 = np.arange(0.0, 30.0, 0.5)
    b93 = np.arange(0.13, 30.0, 60 / 93)
    return {"120": click_track(b120, 30.0, SR), "93": click_track(b93, 30.0, SR), "b120": b120, "b93": b93}


def test_binning_and_loris_formulas():
    bins = M.bin_beats(np.array([0.1, 0.9, 2.5, 3.99, 7.0]), 4.2, 1.0)
    assert bins.tolist() == [1, 0, 1, 1, 0]  # ceil(4.2) = 5 bins, trunc, out-of-range dropped
    ref = np.array([1, 1, 0, 1, 0, 1])
    gen = np.array([1, 0, 1, 1, 1, 0])
    bcs, bhs = M.loris_beat_scores(ref, gen)
    assert (bcs, bhs) == (2 / 4, 2 / 4)  # hits / generated, hits / reference
    bcs, bhs = M.v1_beat_scores(np.array([1, 0, 0, 1]), np.array([1, 1, 1, 0]))
    assert (bcs, bhs) == (3 / 2, 1 / 2)  # generated / reference (can exceed 1), hits / reference
    assert M.loris_beat_scores(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    s = M.summarize_beat_scores([(0.5, 1.0), (1.0, 0.5)])
    assert s["BCS"] == 0.75 and s["BHS"] == 0.75 and s["F1"] == pytest.approx(0.75)
    assert s["CSD"] == pytest.approx(np.std([0.5, 1.0], ddof=1))


def test_f_measure_matching_is_one_to_one():
    ref = np.array([1.0, 2.0, 3.0])
    assert M.beat_f_measure(ref, ref, 0.07)["f"] == 1.0
    est = np.array([1.05, 1.06, 2.2, 3.0])  # two candidates for beat 1, a miss at 2.2
    r = M.beat_f_measure(ref, est, 0.07)
    assert r["precision"] == pytest.approx(2 / 4) and r["recall"] == pytest.approx(2 / 3)
    assert M.beat_f_measure(ref, est, 0.25)["recall"] == 1.0
    # greedy sweep is optimal on a line: the early estimate must not steal the later reference
    assert M.match_beats(np.array([1.0, 1.1]), np.array([1.04, 1.14]), 0.05) == 2


def test_librosa_parameters_are_pinned(clicks):
    assert (LORIS.wait, LORIS.delta, LORIS.pre_avg, LORIS.post_avg, LORIS.pre_max, LORIS.post_max) == (1, 0.2, 3, 3, 3, 3)
    assert (D2M_V1.pre_avg, D2M_V1.post_avg, D2M_V1.pre_max, D2M_V1.post_max) == (1, 1, 1, 1)
    from momu_live.models._librosa import librosa as _librosa

    librosa = _librosa()
    env = librosa.onset.onset_strength(y=clicks["120"], sr=SR, hop_length=512)
    ref = librosa.onset.onset_detect(onset_envelope=env, sr=SR, hop_length=512, units="time", wait=1, delta=0.2,
                                     pre_avg=3, post_avg=3, pre_max=3, post_max=3)
    assert np.array_equal(music_onsets(clicks["120"], SR, "loris"), ref)
    on = music_onsets(clicks["120"], SR, "loris")
    # every click found within two hops (46 ms: the onset envelope lags by about a hop) and nothing else
    assert np.all(np.abs(on[:, None] - clicks["b120"][None]).min(1) <= 2 * 512 / SR)
    assert len(on) >= len(clicks["b120"]) - 1


def test_click_vs_itself_scores_one_and_unrelated_tempo_drops_on_fine_variant(clicks):
    same = M.score_music_wavs(clicks["120"], clicks["120"], SR)
    for v in ("loris", "d2m_v1", "fine_5hz"):
        assert same["binned"][v] == {"bcs": 1.0, "bhs": 1.0}
    assert same["beat_f"]["70ms"]["f"] == 1.0 and same["beat_f"]["100ms"]["f"] == 1.0
    other = M.score_music_wavs(clicks["120"], clicks["93"], SR)
    f1 = {v: 2 * other["binned"][v]["bcs"] * other["binned"][v]["bhs"] / (other["binned"][v]["bcs"] + other["binned"][v]["bhs"])
          for v in ("loris", "fine_5hz")}
    assert f1["loris"] > 0.8  # 1-second bins saturate: two unrelated tempi look nearly perfect
    assert f1["fine_5hz"] < 0.6 and other["beat_f"]["70ms"]["f"] < 0.4  # the fine variants do not
    assert f1["loris"] - f1["fine_5hz"] > 0.3


def test_beat_align_score_known_values():
    music = np.arange(0, 10, 0.5)
    assert M.beat_align_score(music, music) == 1.0
    # one frame (1/60 s) late everywhere: exp(-1 / (2 * 9))
    assert M.beat_align_score(music, music + 1 / 60) == pytest.approx(np.exp(-1 / 18))
    aligned = M.beat_align_score(music, music + 0.02)
    misaligned = M.beat_align_score(music, music + 0.25)
    assert aligned > 0.8 > 0.05 > misaligned
    assert M.beat_align_score(music, np.zeros(0)) == 0.0


def test_beat_grid_coherence_of_a_pure_cosine():
    fps = 50.0
    beats = np.arange(0, 20.0001, 0.5)
    t = np.arange(int(20 * fps)) / fps
    r = M.beat_grid_coherence(np.cos(2 * np.pi * t / 0.5), fps, beats, 1)
    assert r["c"] == pytest.approx(1 / np.sqrt(2), abs=0.01)  # z-scored cosine: sqrt(2) cos -> |c| = 1/sqrt(2)
    assert r["n_cycles"] == pytest.approx(40, abs=0.1)
    assert r["z"] == pytest.approx(40 * 2 * 0.5, rel=0.03)
    assert min(r["phase_of_peak"], 1 - r["phase_of_peak"]) < 0.01  # peaks on the beat
    noise = np.random.default_rng(0).normal(size=len(t))
    assert M.beat_grid_coherence(noise, fps, beats, 1)["z"] < 5  # p ~ exp(-z)
    # bar phase (3 beats) of a beat-periodic signal: no bar-level lock
    assert M.beat_grid_coherence(np.cos(2 * np.pi * t / 0.5), fps, beats, 3)["c"] < 0.05


@pytest.fixture(scope="module")
def dance_scores():
    """A synthetic dancer stepping at 120 BPM scored with its own click track and with wrong ones."""
    m = synthetic_dance(24.0, 25.0, bpm=120.0, seed=1)
    beats = np.arange(0.0, 24.0, 0.5)
    jump = np.where(beats % 8 < 4, beats, beats + 0.25)  # same tempo, half-beat phase jump every 4 s
    tracks = {
        "true": click_track(beats, 24.0, SR),
        "shift": click_track(beats + 0.25, 24.0, SR),
        "jumps": click_track(np.sort(jump), 24.0, SR),
        "tempo": click_track(np.arange(0.1, 24.0, 60 / 93), 24.0, SR),
    }
    return {k: M.score_pair(m, w, SR) for k, w in tracks.items()}


def test_feet_locked_to_the_true_click_track_score_higher_coherence(dance_scores):
    z = {k: s["coherence"]["feet_speed_beat"]["z"] for k, s in dance_scores.items()}
    assert z["true"] > 10
    assert z["true"] > 5 * z["tempo"] and z["true"] > 3 * z["jumps"]
    # a constant lag keeps the lock (|c| is lag-free by design); the lag shows in the phase instead
    assert z["shift"] == pytest.approx(z["true"], rel=0.2)
    dp = (dance_scores["shift"]["coherence"]["feet_speed_beat"]["phase_of_peak"]
          - dance_scores["true"]["coherence"]["feet_speed_beat"]["phase_of_peak"]) % 1.0
    assert min(abs(dp - 0.5), abs(dp + 0.5)) < 0.1


def test_bas_and_fine_scores_prefer_the_true_track_to_another_tempo(dance_scores):
    t, o = dance_scores["true"], dance_scores["tempo"]
    assert t["bas"]["flux_bailando"] > o["bas"]["flux_bailando"] + 0.2
    assert t["beat_f"]["flux_beats"]["70ms"]["f"] > o["beat_f"]["flux_beats"]["70ms"]["f"]
    assert t["crop"]["cropped"] is False and t["crop"]["scored_seconds"] == pytest.approx(24.0)
    assert len(t["kinetic_features"]) == 54


def test_score_pair_crops_to_the_common_duration():
    m = synthetic_dance(12.0, 30.0)
    s = M.score_pair(m, click_track(np.arange(0, 8, 0.5), 8.0, SR), SR)
    assert s["crop"]["cropped"] and s["crop"]["scored_seconds"] == pytest.approx(8.0)
    with pytest.raises(MomuError, match="silent"):
        M.score_pair(m, np.zeros(SR * 8, np.float32), SR)
    with pytest.raises(MomuError, match="overlap"):
        M.score_pair(m, click_track([0.5], 1.0, SR), SR)


def test_frechet_distance_known_values():
    assert frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)  # 1 + 1 + 4 - 2*2
    a = np.diag([1.0, 2.0, 3.0])
    assert frechet_distance(np.zeros(3), a, np.zeros(3), a) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3)) + np.array([2.0, 0, 0])
    assert frechet_between(x, y) == pytest.approx(4.0, rel=0.1)


def test_fid_k_and_diversity():
    f = np.random.default_rng(1).normal(size=(50, 6))
    assert M.fid_k(f, f) == pytest.approx(0.0, abs=1e-6)
    assert M.fid_k(f, f * 3 + 1) > 5
    assert M.diversity(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])) == pytest.approx((5 + 0 + 5) / 3)


def test_melstat_embedding_is_fixed_and_separates_audio(clicks):
    e = MelStatEmbedding()
    a, b = e(clicks["120"], SR), e(clicks["120"], SR)
    assert a.shape == (59, 128) and np.array_equal(a, b)
    assert np.allclose(e.projection().T @ e.projection(), np.eye(128), atol=1e-10)
    noise = (np.random.default_rng(0).normal(0, 0.1, 30 * SR)).astype(np.float32)
    same = fad_melstat([clicks["120"]], [clicks["120"]], SR)
    near = fad_melstat([clicks["120"]], [clicks["93"]], SR)
    far = fad_melstat([clicks["120"]], [noise], SR)
    assert same == pytest.approx(0.0, abs=1e-3) and near > 1e-3 and near < far


def test_music_analysis_reports_settings(clicks):
    r = analyse_music(clicks["120"], SR)
    assert abs(r.tempo - 120) < 3
    assert r.params["onset_presets"]["loris"]["delta"] == 0.2
    assert r.to_json()["tempo_bpm"] == r.tempo


def test_clip_analysis_matches_whole_track(clicks):
    from momu_live.models.beats import analyse_music_clips

    windows = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    whole, clips = analyse_music_clips(clicks["120"], SR, windows)
    for (a, b), c in zip(windows, clips):
        inside = whole.beats[(whole.beats >= a) & (whole.beats < b)] - a
        assert np.allclose(c.beats, inside) and c.duration == b - a
        # per-clip peak picking finds the same clicks as the whole-track pass (within half a hop)
        w_on = whole.onsets["loris"][(whole.onsets["loris"] >= a + 0.1) & (whole.onsets["loris"] < b - 0.1)] - a
        c_on = c.onsets["loris"][(c.onsets["loris"] >= 0.1) & (c.onsets["loris"] < b - a - 0.1)]
        assert len(w_on) == len(c_on) and np.allclose(w_on, c_on, atol=256 / SR + 1e-9)


def test_genre_tempo_prior():
    from momu_live.models.beats import DEFAULT_BEATS, beat_params_for

    assert beat_params_for(None).start_bpm == 120.0 == DEFAULT_BEATS.start_bpm
    assert beat_params_for("waltz").start_bpm == 87.0 and beat_params_for("Waltz", use_prior=False) == DEFAULT_BEATS
    assert beat_params_for("polka") == DEFAULT_BEATS


def test_circular_mean_and_beat_phase_audit_recover_a_known_lag():
    from momu_live.models.metrics import beat_phase_audit, circular_mean

    c = circular_mean([0.95, 0.05, 0.0])  # wraps around 0
    assert c["R"] > 0.95 and min(c["phase"], 1 - c["phase"]) < 0.01
    assert circular_mean([0.0, 0.25, 0.5, 0.75])["R"] < 1e-9  # spread evenly
    fps, ibi, lag = 25.0, 0.6, 0.15  # feet fastest 150 ms after each beat; onsets on the beats
    t = np.arange(int(40 * fps)) / fps
    beats = np.arange(0.3, 39.5, ibi)
    feet = 1.0 + np.cos(2 * np.pi * (t - beats[0] - lag) / ibi)
    a = beat_phase_audit(feet, fps, beats, onsets=beats + 0.01)
    assert a["lag_s"] == pytest.approx(lag - 0.01, abs=0.02) and a["feet_R"] > 0.3 and a["onset_R"] > 0.99
    # a lag past half a beat wraps to a negative lead
    a2 = beat_phase_audit(1.0 + np.cos(2 * np.pi * (t - beats[0] - 0.45) / ibi), fps, beats, beats)
    assert a2["lag_s"] == pytest.approx(0.45 - ibi, abs=0.02)
