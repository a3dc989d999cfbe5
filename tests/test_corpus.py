"""The music corpus (models/corpus.py, `momu data corpus`): exact beat/bar times of the music21 renders checked
against the audio fluidsynth really renders, the metre-following drum grooves, licences, and the encoding to
music latents + rhythm control.  Uses the real fluidsynth + FluidR3_GM and music21's corpus (skips, saying what is
missing, where they are not installed)."""
from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.cli import main as momu
from momu_live.models.timebase import DEFAULT_TIMEBASE as TB

SR = TB.sample_rate
HOP_S = 256 / SR  # one mel hop, 11.6 ms: the tolerance of every audio check (measured errors are <= 5.5 ms)
TUNES = ["BennetsFavoriteReel", "FoxHuntersJig"]  # 2/4 with an eighth-note anacrusis; 9/8 (triple) from a downbeat


def _need_render():
    if shutil.which("fluidsynth") is None:
        pytest.skip("needs fluidsynth (Debian `fluidsynth`; scripts/setup.sh installs it)")
    pytest.importorskip("music21", reason="needs music21 (pip install 'momu-live[corpus]')")
    pytest.importorskip("mido", reason="needs mido")
    from momu_live.demo_media import find_soundfont

    try:
        find_soundfont()
    except MomuError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two tunes rendered with the backbeat groove (kick on the downbeats only in 2- and 3-beat bars)."""
    _need_render()
    from momu_live.models.corpus import RenderConfig, render_music21, write_index

    root = tmp_path_factory.mktemp("corpus")
    entries = render_music21(root, None, 1, seed=3, progress=False, names=TUNES,
                             cfg=RenderConfig(drums=1.0, grooves=("backbeat",)))
    write_index(root, entries)
    return root


def _rows(root):
    with open(root / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def _low_band(wav):
    """|x| low-passed at 100 Hz with a zero-phase Butterworth: the kick drum, not the melody (>= 196 Hz)."""
    from scipy.signal import butter, sosfiltfilt

    return np.abs(sosfiltfilt(butter(4, 100, "low", fs=SR, output="sos"), wav))  # (T,)


def test_render_has_exact_beats_and_bars(rendered):
    import soundfile as sf

    from momu_live.models.corpus import FLUIDSYNTH_OFFSET_S, MUSIC21_SOURCE

    rows = _rows(rendered)
    assert [r["title"] for r in rows] == TUNES
    for r, (metre, bpb) in zip(rows, [("2/4", 2), ("9/8", 3)]):
        assert r["source"] == MUSIC21_SOURCE and r["beat_kind"] == "exact" and "public-domain" in r["licence"]
        b = json.loads((rendered / r["beats"]).read_text())
        beats, downs = np.asarray(b["beats"]), np.asarray(b["downbeats"])  # (n,), (m,)
        # the score's metre, a tempo in the range, beats every 60 / bpm s (tick rounding: < 0.2 ms)
        assert (b["metre"], b["beats_per_bar"], r["metre"], int(r["beats_per_bar"])) == (metre, bpb, metre, bpb)
        assert 70 <= b["bpm"] <= 180 and b["kind"] == "exact"
        np.testing.assert_allclose(np.diff(beats), 60 / b["bpm"], atol=2e-4)
        i0 = int(np.argmin(np.abs(beats - downs[0])))
        np.testing.assert_allclose(downs, beats[i0::bpb][: len(downs)], atol=1e-9)  # bars of bpb beats
        assert len(downs) >= 16 and len(beats) - i0 <= bpb * len(downs)
        wav, sr = sf.read(str(rendered / r["file"]), dtype="float32")
        assert sr == SR and abs(len(wav) / SR - float(r["seconds"])) < 0.01
        # the first note is at the score's time 0: the audio's first sound (-60 dB re peak) is where the beats say
        first = int(np.argmax(np.abs(wav) > 1e-3 * np.abs(wav).max())) / SR
        assert abs(first - FLUIDSYNTH_OFFSET_S) < HOP_S, first
        # the first downbeat after the anacrusis: 0.5 quarter of the reel, none in the jig
        spq = b["us_per_quarter"] / 1e6  # s per quarter
        want = 0.5 * spq if metre == "2/4" else 0.0
        assert abs(downs[0] - FLUIDSYNTH_OFFSET_S - want) < 1e-6
        # every downbeat has the groove's kick (the audio's strong low onset) within one hop; other beats have none
        low = _low_band(wav)
        ref = np.percentile(low, 99.9)
        for k, t in enumerate(beats):
            a, z = max(0, int((t - 0.08) * SR)), int((t + 0.08) * SR)
            seg = low[a:z]
            if k >= i0 and (k - i0) % bpb == 0:
                onset = (a + int(np.argmax(seg > 0.2 * seg.max()))) / SR
                assert seg.max() > 0.5 * ref and abs(onset - t) < HOP_S, (r["title"], k, t, onset)
            else:
                assert seg.max() < 0.3 * ref, (r["title"], k, t)


def test_fluidsynth_offset_is_the_measured_constant():
    _need_render()
    from momu_live.models.corpus import FLUIDSYNTH_OFFSET_S, KICK, measure_render_offset

    m = measure_render_offset(programs=(0, 40, 73), drums=(KICK,), hits=6)
    assert m["notes"] >= 20
    assert abs(m["median_s"] - FLUIDSYNTH_OFFSET_S) < 0.0015  # a constant: the stored beats include it
    assert m["max_s"] - m["min_s"] < HOP_S and m["min_s"] > 0


def test_score_layout_tempo_levels_and_grooves():
    _need_render()
    from music21 import corpus as m21

    from momu_live.models.corpus import (CLOSED_HAT, DANCE_TEMPI, KICK, SNARE, RenderConfig, choose_tempo,
                                         dance_tunes, groove_hits, score_tune)

    path = {p.split("/")[-1][:-4]: p for p, _ in dance_tunes()}
    jig = score_tune(path["TripToGalwayJig"])  # 6/8 with an eighth-note anacrusis
    assert (jig.metre, jig.beat_q, jig.beats_per_bar, jig.compound) == ("6/8", Fraction(3, 2), 2, True)
    assert jig.first_downbeat_q == Fraction(1, 2) and jig.end_q > 16 * jig.bar_q
    assert (jig.end_q - jig.first_downbeat_q) % jig.bar_q in (0, jig.bar_q - jig.first_downbeat_q)
    assert jig.repairs["expanded"]
    # repeats expanded: longer than the score as written
    written = m21.parse(path["TripToGalwayJig"]).parts[0].highestTime
    assert jig.end_q > written
    rng = np.random.default_rng(0)
    lo, hi = DANCE_TEMPI["jig"]
    for _ in range(20):  # compound metre: the dotted-quarter beat, within the dance's range x (1 +- jitter)
        bpm, unit, bpb = choose_tempo(jig, "jig", rng, RenderConfig())
        assert unit == Fraction(3, 2) and bpb == 2 and lo * 0.8 - 1e-9 <= bpm <= hi * 1.2 + 1e-9
    hornpipe = score_tune(path["EurekaHornpipe"])  # 2/2: half-note beats
    assert (hornpipe.metre, hornpipe.beat_q, hornpipe.beats_per_bar) == ("2/2", Fraction(2), 2)
    bpm, unit, bpb = choose_tempo(hornpipe, "hornpipe", rng, RenderConfig(bpm_range=(110.0, 180.0), tempo_jitter=0.0))
    assert (unit, bpb) == (Fraction(1), 4) and 110 <= bpm <= 180  # too slow in halves: counted in quarters
    # grooves follow the metre: one kick per 9/8 bar, snares on its other two beats, a hat on each eighth
    hits = groove_hits("backbeat", 3, 3)
    assert [h[0] for h in hits if h[1] == KICK] == [0]
    assert [h[0] for h in hits if h[1] == SNARE] == [1, 2]
    assert len([h for h in hits if h[1] == CLOSED_HAT]) == 9
    assert [h[0] for h in groove_hits("backbeat", 4, 2) if h[1] == KICK] == [0, 2]
    with pytest.raises(MomuError, match="unknown drum groove"):
        groove_hits("bossa", 2, 2)


def _beat_crossings(rho, start_s, channel=0):
    """Times (s) where the rhythm control's phase (channels sin, cos at ``channel``) crosses an integer."""
    ph = np.unwrap(np.arctan2(rho[channel].astype(np.float64), rho[channel + 1].astype(np.float64))) / (2 * np.pi)  # (L,)
    t = start_s + (np.arange(rho.shape[1]) + 0.5) / float(TB.latent_rate)  # (L,) frame centres
    out = []
    for k in range(int(np.ceil(ph[0])), int(np.floor(ph[-1])) + 1):
        i = int(np.searchsorted(ph, k))
        if 0 < i < len(ph):
            out.append(t[i - 1] + (k - ph[i - 1]) / (ph[i] - ph[i - 1]) * (t[i] - t[i - 1]))
    return np.asarray(out), ph


def test_encode_corpus_aligns_music_and_rhythm(rendered, tmp_path, one_torch_thread):
    import soundfile as sf

    from momu_live.models.builders import debug_vae
    from momu_live.models.corpus import EncodeConfig, encode_corpus
    from momu_live.models.train_diffusion import load_latents

    res = encode_corpus(rendered, debug_vae(), tmp_path / "lat.npz", progress=False,
                        cfg=EncodeConfig(val_every=2, segment_s=20.0))
    lat = load_latents(tmp_path / "lat.npz")
    assert str(lat["kind"]) == "corpus" and res["skipped"] == []
    ids = lat["ids"].tolist()
    assert len(ids) == res["segments"] > 2 and all("@" in i for i in ids)  # 40-60 s tunes cut into <= 20 s pieces
    assert set(lat["sources"].tolist()) == {"music21:ryansMammoth"} and set(lat["beat_kinds"].tolist()) == {"exact"}
    # every 2nd tune is val, all segments of a tune on one side
    split_of = {}
    for i, s in zip(ids, lat["splits"].tolist()):
        split_of.setdefault(i.split("@")[0], set()).add(s)
    assert sorted(split_of.values(), key=str) == [{"train"}, {"val"}]
    for r in _rows(rendered):
        stem = r["file"][4:-4]
        b = json.loads((rendered / r["beats"]).read_text())
        segs = [i for i in ids if i.split("@")[0] == stem]
        n_frames = sf.info(str(rendered / r["file"])).frames // TB.samples_per_latent
        assert sum(lat[f"music/{i}"].shape[1] for i in segs) == n_frames
        for i in segs:
            mu, rho = lat[f"music/{i}"], lat[f"rhythm/{i}"]  # (4, L), (6, L)
            assert mu.dtype == rho.dtype == np.float16 and mu.shape[0] == 4 and rho.shape == (6, mu.shape[1])
            assert mu.shape[1] * float(1 / TB.latent_rate) <= 20.0 + 1e-6
            start = float(lat["starts_s"][ids.index(i)])
            t_end = min(start + mu.shape[1] / float(TB.latent_rate), b["beats"][-1] + 0.1)  # the tail has no beats
            cross, ph = _beat_crossings(rho, start)
            want = np.asarray([x for x in b["beats"] if x >= b["downbeats"][0] and start + 0.05 < x < t_end - 0.05])
            got = cross[(cross > start + 0.05) & (cross < t_end - 0.05)]
            assert len(got) == len(want) > 5
            np.testing.assert_allclose(got, want, atol=0.002)  # the beat phase is integer on the stored beats
            bars, _ = _beat_crossings(rho, start, channel=2)
            wantb = np.asarray([x for x in b["downbeats"] if start + 0.05 < x < t_end - 0.05])
            np.testing.assert_allclose(bars[(bars > start + 0.05) & (bars < t_end - 0.05)], wantb, atol=0.002)
            if start == 0.0 and b["downbeats"][0] > 0.1:  # the anacrusis: phase before the first downbeat < 0
                assert ph[0] < 0
            assert np.allclose(rho[4], np.log2(b["bpm"] / 120), atol=2e-3)  # the tempo channel
            assert np.all(rho[5] == (1.0 if b["beats_per_bar"] == 3 else 0.0))  # 9/8 is triple


def test_encode_cli_and_bad_folders(rendered, tmp_path, one_torch_thread, capsys):
    from momu_live.models.builders import debug_vae
    from momu_live.models.corpus import encode_corpus

    with pytest.raises(MomuError, match="not a music corpus folder.*momu data corpus --out"):
        encode_corpus(tmp_path / "nope", debug_vae(), tmp_path / "x.npz", progress=False)
    bad = tmp_path / "bad"
    shutil.copytree(rendered, bad)
    (bad / _rows(bad)[0]["beats"]).unlink()
    with pytest.raises(MomuError, match="has no beats file.*momu data corpus --out"):
        encode_corpus(bad, debug_vae(), tmp_path / "x.npz", progress=False)
    (bad / _rows(bad)[1]["file"]).unlink()
    with pytest.raises(MomuError, match="missing audio files"):
        encode_corpus(bad, debug_vae(), tmp_path / "x.npz", progress=False)
    assert momu(["data", "corpus", "--out", str(tmp_path / "nope"), "--encode", str(tmp_path / "x.npz")]) == 2
    assert "not a music corpus folder" in capsys.readouterr().err
    assert momu(["data", "corpus", "--out", str(rendered), "--encode", str(tmp_path / "y.npz"),
                 "--vae", str(tmp_path / "novae"), "--json"]) == 2
    assert "--vae" in capsys.readouterr().err
    # the shipped VAE through the CLI
    assert momu(["data", "corpus", "--out", str(rendered), "--encode", str(tmp_path / "z.npz"), "--json",
                 "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lat = np.load(tmp_path / "z.npz")
    assert res["segments"] == len(lat["ids"]) == 2 and len(str(lat["vae_sha256"])) == 64
    assert lat[f"music/{lat['ids'][0]}"].shape[0] == 16


def test_licences_and_tracked_beats(tmp_path):
    from momu_live.models.beats import click_track
    from momu_live.models.corpus import beat_grid, licence_of, tracked_beats

    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: Planet Blupi\n\n"
            "Files: *\nCopyright: 2017,2018, Mathieu Schroeter\nLicense: GPL-3+\n\nFiles: debian/*\nLicense: GPL-3+\n\n"
            "Files: src/json/*\nLicense: Expat\n")
    assert licence_of(dep5) == "GPL-3+"
    assert licence_of("This program is free software; you can redistribute it and/or\nmodify it under the terms of "
                      "the GNU General Public License\nas published by the Free Software Foundation; either version 2\n"
                      "of the License, or (at your option) any later version.") == "GPL-2+"
    assert licence_of("'Warzone 2100 - Legacy Soundtrack' is licensed and available under: \nCC-BY-SA-3.0 (or, at your "
                      "discretion, any later version)\n\nAlternatively, it may be used & distributed under the terms of \n"
                      "the GNU General Public License Version 2 or later (the \"GPL\").") == "CC-BY-SA-3.0+ OR GPL-2+"
    assert licence_of("no licence here") == ""
    clicks = np.arange(0.5, 20, 0.5)  # (39,) 120 BPM
    noise = 0.01 * np.random.default_rng(0).standard_normal(20 * SR).astype(np.float32)
    b = tracked_beats(click_track(clicks, 20.0) + noise, SR)
    assert b["kind"] == "tracked" and not b["downbeats_known"]
    assert abs(b["bpm"] - 120) < 120 * 0.05  # the median interval in tracker frames (hop 512: 23 ms of 500 ms)
    tracked = np.asarray(b["beats"])  # (n,)
    lag = tracked - clicks[np.abs(tracked[:, None] - clicks[None]).argmin(1)]  # (n,)
    assert 0 <= lag.min() and lag.max() < 2 * 512 / SR  # tracked beats lag the clicks by 1/2-3/2 tracker hops
    grid = beat_grid(b)
    assert grid.beats[0] == b["beats"][0] and grid.beats_per_bar == 4  # tracked: from the first tracked beat
    silent = tracked_beats(np.zeros(5 * SR, np.float32) + 1e-6, SR)
    assert silent["beats"] == [] and beat_grid(silent) is None
