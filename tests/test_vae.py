"""BiCoR-VAE: frame bookkeeping, streaming == whole, overfitting, checkpoints, training/eval CLI (synthetic data)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from momu_live import MomuError
from momu_live.cli import main as momu
from momu_live.models.builders import build_vae, debug_vae
from momu_live.models.checkpoint import save_checkpoint
from momu_live.models.motion import synthetic_dance
from momu_live.models.packing import PackedDance, load_pack, pack_pair, save_pack
from momu_live.models.skeleton import JOINT_INDEX as J, mirror
from momu_live.models.timebase import DEFAULT_TIMEBASE as TB
from momu_live.models.train_vae import TrainConfig, augment_motion, evaluate, multires_mel_loss, train
from momu_live.models.vae import (
    FEAT_DIM, SIZES, features_to_joints, load_bicor_vae, motion_features, motion_features_torch,
)

DWM_NAMES = ("head_left", "head_right", "spine", "left_shoulder", "left_elbow", "left_forearm", "left_wrist",
             "left_hip", "left_knee", "left_ankle", "left_heel", "left_toe", "right_shoulder", "right_elbow",
             "right_wrist", "right_hand", "right_hip", "right_knee", "right_ankle", "right_heel", "right_toe",
             "right_wrist_2", "left_wrist_2")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread (conftest)."""


def _to_dwm23(j: np.ndarray) -> np.ndarray:
    """Canonical joints (T, 18, 3) -> DwM-format 23 joints (its frame has x negated)."""
    pts = {"spine": j[:, J["spine"]], "head_left": j[:, J["head"]] + [0.05, 0, 0], "head_right": j[:, J["head"]] - [0.05, 0, 0]}
    for c, s in (("l", "left"), ("r", "right")):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "toe"):
            pts[f"{s}_{part}"] = j[:, J[f"{c}_{part}"]]
        pts[f"{s}_heel"] = j[:, J[f"{c}_ankle"]]
    pts["left_forearm"] = pts["left_wrist_2"] = pts["left_wrist"]
    pts["right_hand"] = pts["right_wrist_2"] = pts["right_wrist"]
    out = np.stack([pts[n] for n in DWM_NAMES], 1).astype(np.float32)
    out[..., 0] *= -1
    return out


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return debug_vae().eval()


def _synthetic_pair(seconds: float, seed: int, bpm: float = 120.0, noise: float = 0.02):
    """A procedural dancer and a click track on its beats (no research data)."""
    m = synthetic_dance(seconds=seconds, fps=float(TB.motion_rate), bpm=bpm, seed=seed)
    sr = TB.sample_rate
    n = int(seconds * sr)
    wav = noise * np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    for k in range(int(seconds * bpm / 60) + 1):
        s = int(k * 60 / bpm * sr)
        e = min(n, s + 2000)
        if s < n:
            wav[s:e] += 0.5 * np.sin(2 * np.pi * (300 + 100 * seed) * np.arange(e - s) / sr) * np.exp(-np.arange(e - s) / 400)
    return m, wav


@pytest.fixture(scope="module")
def synth_pack(tmp_path_factory):
    out = tmp_path_factory.mktemp("pack")
    dances = []
    for k in range(6):
        m, wav = _synthetic_pair(8.0 + k, seed=k, bpm=100 + 10 * k)
        dances.append(pack_pair(f"S_{k}", m, wav, TB.sample_rate, "synth", "val" if k >= 4 else "train"))
    save_pack(dances, out)
    return out


# ---------------------------------------------------------------------------------------------
def test_sizes_and_contract(vae):
    assert set(SIZES) >= {"debug", "small", "base"}
    assert vae.latent_dim == SIZES["debug"].latent_dim
    assert vae.music is not None and vae.motion is not None
    assert TB.samples_per_latent == 2048 and TB.latent_per_mel == 8 and TB.motion_per_latent == 2


@pytest.mark.parametrize("n_mel", [8, 15, 17, 64, 101])
def test_odd_lengths_crop_rule(vae, n_mel):
    C = vae.latent_dim
    with torch.no_grad():
        mu, logvar = vae.encode_music(torch.randn(2, 80, n_mel) - 5)
        assert mu.shape == logvar.shape == (2, C, n_mel // 8)
        assert vae.decode_music(mu).shape == (2, 80, 8 * (n_mel // 8))
        T = n_mel // TB.motion_per_mel  # the model-rate motion length of n_mel mel frames
        if T >= 2:
            mz, _ = vae.encode_motion(torch.randn(2, T, FEAT_DIM))
            assert mz.shape == (2, C, T // 2) == (2, C, mu.shape[-1])  # aligned latent lengths
            assert vae.decode_motion(mz).shape == (2, 2 * (T // 2), FEAT_DIM)
    assert vae.latent_length(n_mel, "music") == n_mel // 8


def test_too_short_and_bad_shapes(vae):
    with pytest.raises(MomuError, match="too short"):
        vae.encode_music(torch.zeros(1, 80, 7))
    with pytest.raises(MomuError, match="too short"):
        vae.encode_motion(torch.zeros(1, 1, FEAT_DIM))
    with pytest.raises(MomuError, match="mel"):
        vae.encode_music(torch.zeros(1, 64, 16))
    with pytest.raises(MomuError, match="features"):
        vae.encode_motion(torch.zeros(1, 8, 10))
    with pytest.raises(MomuError, match="modality"):
        vae.normalize_latent(torch.zeros(1, vae.latent_dim, 2), "video")


@pytest.mark.parametrize("size", ["debug", "small"])
def test_streaming_equals_whole(size):
    torch.manual_seed(1)
    m = build_vae(size).eval()
    L = 12
    mel = torch.randn(1, 80, 8 * L) - 5
    feats = torch.randn(1, 2 * L, FEAT_DIM)
    chunks = [1, 3, 2, 5, 1]  # latent frames per chunk (uneven)
    with torch.no_grad():
        mu_w, lv_w = m.encode_music(mel)
        mo_w, _ = m.encode_motion(feats)
        dm_w = m.decode_music(mu_w)
        dmo_w = m.decode_motion(mo_w)
        s_e = s_d = s_me = s_md = None
        mus, recs, mos, mrecs = [], [], [], []
        i = 0
        for c in chunks:
            mu, lv, s_e = m.encode_music_stream(mel[..., 8 * i: 8 * (i + c)], s_e)
            mus.append(mu)
            y, s_d = m.decode_music_stream(mu_w[..., i: i + c], s_d)
            recs.append(y)
            mo, _, s_me = m.encode_motion_stream(feats[:, 2 * i: 2 * (i + c)], s_me)
            mos.append(mo)
            y2, s_md = m.decode_motion_stream(mo_w[..., i: i + c], s_md)
            mrecs.append(y2)
            i += c
    assert i == L
    torch.testing.assert_close(torch.cat(mus, -1), mu_w, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cat(recs, -1), dm_w, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cat(mos, -1), mo_w, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cat(mrecs, 1), dmo_w, atol=1e-4, rtol=0)
    # causality: changing the future does not change the past
    mel2 = mel.clone()
    mel2[..., 8 * 6:] += 3.0
    with torch.no_grad():
        torch.testing.assert_close(m.encode_music(mel2)[0][..., :6], mu_w[..., :6])


def test_motion_features_round_trip_and_layout():
    m = synthetic_dance(seconds=3.0, fps=float(TB.motion_rate), seed=3)
    j = m.joints
    f = motion_features(j)
    assert f.shape == (len(j), FEAT_DIM) == (len(j), 108) and f.dtype == np.float32
    back = features_to_joints(f, root_xz0=j[0, 0, [0, 2]])
    np.testing.assert_allclose(back, j, atol=2e-5)
    # velocity block = finite differences in m/s (scaled)
    fps = float(TB.motion_rate)
    v = (j[5, J["l_wrist"]] - j[4, J["l_wrist"]]) * fps
    np.testing.assert_allclose(f[5, 54 + 3 * J["l_wrist"]: 54 + 3 * J["l_wrist"] + 3] * 2.0, v, atol=1e-4)
    # torch batched version agrees; mirror augmentation = skeleton.mirror
    torch.testing.assert_close(motion_features_torch(torch.from_numpy(j)[None].double())[0].float(), torch.from_numpy(f), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(0)
    jt = torch.from_numpy(j)[None].repeat(64, 1, 1, 1)
    aug = augment_motion(jt, g, mirror=True, rotate=False)
    flipped = [k for k in range(64) if not torch.equal(aug[k], jt[k])]
    assert 10 < len(flipped) < 54
    np.testing.assert_allclose(aug[flipped[0]].numpy(), mirror(j), atol=1e-6)
    rot = augment_motion(jt[:2], g, mirror=False, rotate=True)
    np.testing.assert_allclose(rot[..., 1].numpy(), jt[:2, ..., 1].numpy(), atol=1e-6)  # y untouched
    np.testing.assert_allclose(np.linalg.norm(rot[0, :, 4] - rot[0, :, 7], axis=-1),
                               np.linalg.norm(j[:, 4] - j[:, 7], axis=-1), atol=1e-5)  # rigid
    with pytest.raises(MomuError):
        motion_features(np.zeros((5, 17, 3)))


def test_debug_model_overfits_one_clip():
    torch.manual_seed(0)
    m = debug_vae()
    m_mot, wav = _synthetic_pair(3.0, seed=1, noise=0.0)
    d = pack_pair("clip", m_mot, wav, TB.sample_rate)
    mel = torch.from_numpy(d.mel[:, :128].astype(np.float32))[None]  # (1, 80, 128)
    feats = motion_features_torch(torch.from_numpy(d.motion[:32].astype(np.float32))[None])  # (1, 32, F)
    opt = torch.optim.Adam(m.parameters(), 5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 500)
    first = last = None
    for step in range(500):
        mu, _ = m.encode_music(mel)
        pm = m.decode_music(mu)
        mz, _ = m.encode_motion(feats)
        pf = m.decode_motion(mz)
        loss = (pm - mel).abs().mean() + (pf - feats).abs().mean()
        opt.zero_grad()
        (loss + multires_mel_loss(pm, mel)).backward()
        opt.step()
        sched.step()
        first = loss.item() if first is None else first
        last = loss.item()
        parts = ((pm - mel).abs().mean().item(), (pf - feats).abs().mean().item())
    assert last < first / 10, (first, last, parts)


def test_checkpoint_round_trip_and_errors(tmp_path, vae):
    stats = {"music": {"mean": list(np.linspace(-1, 1, vae.latent_dim)), "std": [2.0] * vae.latent_dim},
             "motion": {"mean": [0.5] * vae.latent_dim, "std": [0.25] * vae.latent_dim}}
    save_checkpoint(tmp_path / "vae", vae, vae.cfg, "vae", {"latent_stats": stats})
    back = load_bicor_vae(tmp_path / "vae.safetensors")
    mel = torch.randn(1, 80, 32) - 5
    with torch.no_grad():
        torch.testing.assert_close(back.encode_music(mel)[0], vae.encode_music(mel)[0])
    z = torch.randn(2, vae.latent_dim, 5)
    zn = back.normalize_latent(z, "motion")
    torch.testing.assert_close(zn, (z - 0.5) / 0.25)
    torch.testing.assert_close(back.denormalize_latent(zn, "motion"), z)
    torch.testing.assert_close(back.latent_shift[0], torch.tensor(stats["music"]["mean"], dtype=torch.float32))
    # mismatched config: the JSON says "small", the weights are "debug"
    doc = json.loads((tmp_path / "vae.json").read_text())
    doc["config"] = {**doc["config"], "latent_dim": 8}
    (tmp_path / "vae.json").write_text(json.dumps(doc))
    with pytest.raises(MomuError, match="does not match"):
        load_bicor_vae(tmp_path / "vae.safetensors")
    # corrupt weights
    save_checkpoint(tmp_path / "c", vae, vae.cfg, "vae", {"latent_stats": stats})
    raw = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MomuError, match="corrupt"):
        load_bicor_vae(tmp_path / "c.safetensors")
    # no latent stats, wrong family, missing file
    save_checkpoint(tmp_path / "n", vae, vae.cfg, "vae", {})
    with pytest.raises(MomuError, match="latent_stats"):
        load_bicor_vae(tmp_path / "n")
    save_checkpoint(tmp_path / "f", vae, vae.cfg, "diffusion", {"latent_stats": stats})
    with pytest.raises(MomuError, match="expected 'vae'"):
        load_bicor_vae(tmp_path / "f")
    with pytest.raises(MomuError, match="not found"):
        load_bicor_vae(tmp_path / "nothing.safetensors")


def test_shipped_weights_load_and_are_small():
    from momu_live.models.vae import default_weights_path

    p = default_weights_path()
    assert p.exists() and p.stat().st_size < 16 * 2**20
    v = load_bicor_vae()
    with torch.no_grad():
        mu, _ = v.encode_music(torch.full((1, 80, 64), -6.0))
    assert mu.shape == (1, v.latent_dim, 8) and torch.isfinite(mu).all()
    assert (v.latent_scale > 0).all()


def test_pack_alignment(synth_pack):
    dances = load_pack(synth_pack)
    assert [d.split for d in dances].count("val") == 2
    for d in dances:
        assert d.mel.dtype == np.float16 and d.motion.dtype == np.float16
        assert d.mel.shape[1] == 8 * d.n_latent and d.motion.shape == (2 * d.n_latent, 18, 3)
    with pytest.raises(MomuError, match="not found"):
        load_pack(synth_pack / "missing")


def test_train_resume_and_eval(tmp_path, synth_pack):
    dances = load_pack(synth_pack)
    tr = [d for d in dances if d.split == "train"]
    va = [d for d in dances if d.split == "val"]
    cfg = TrainConfig(stage=1, size="debug", steps=6, batch=2, clip_latent=8, val_every=6, ckpt_every=3, adv_start=2)
    train(replace_steps(cfg, 3), tr, va, tmp_path / "s1", progress=False)
    figs = train(cfg, tr, va, tmp_path / "s1", resume=True, progress=False)  # continues at step 3
    log = json.loads((tmp_path / "s1" / "log.json").read_text())
    assert [r["step"] for r in log if "val" in r][-1] == 6 and "disc" in [k for r in log for k in r]
    assert figs["mel_l1"] > 0
    c2 = TrainConfig(stage=2, size="debug", steps=4, batch=4, clip_latent=8, val_every=4, ckpt_every=4)
    figs2 = train(c2, tr, va, tmp_path / "s2", init=str(tmp_path / "s1" / "vae"), progress=False)
    v = load_bicor_vae(tmp_path / "s2" / "vae")
    s1 = load_bicor_vae(tmp_path / "s1" / "vae")
    for a, b in zip(v.music.parameters(), s1.music.parameters()):
        assert torch.equal(a, b)  # stage 2 keeps the music VAE frozen
    assert figs2["candidates"] >= 2 and 0 <= figs2["retrieval_top1"] <= 1
    assert figs2["chance_top1"] == pytest.approx(1 / figs2["candidates"])
    ev = evaluate(v, va)
    assert ev["mpjpe_mm"] > 0 and ev["bone_error_mm"] >= 0
    with pytest.raises(MomuError, match="stage-2"):
        train(TrainConfig(stage=1, size="debug", steps=5, batch=2, clip_latent=8), tr, va, tmp_path / "s2", resume=True,
              progress=False)


def test_stage1_pretrains_on_a_music_corpus(tmp_path, synth_pack):
    """Stage 1 with corpus crops: the music VAE learns music-only tracks too (their copy error falls), and the
    validation reports the held-out corpus tracks' copy error."""
    from momu_live.models.train_vae import music_copy_l1

    dances = load_pack(synth_pack)
    tr = [d for d in dances if d.split == "train"]
    va = [d for d in dances if d.split == "val"]
    g = np.random.default_rng(0)
    t = np.arange(8 * 48)
    # music-only tracks unlike the dances' mels: slow tone sweeps over a quiet floor
    corpus = [(-7.0 + 4.0 * (np.abs(np.arange(80)[:, None] - (40 + 30 * np.sin(t / (30 + 7 * k)))[None]) < 3)
               + 0.1 * g.standard_normal((80, len(t)))).astype(np.float16) for k in range(4)]
    cfg = TrainConfig(stage=1, size="debug", steps=40, batch=2, clip_latent=8, val_every=40, ckpt_every=40,
                      adv_start=1000, lr=3e-3, corpus_frac=2.0)
    from momu_live.models.builders import debug_vae

    torch.manual_seed(0)
    before = music_copy_l1(debug_vae(), corpus[3:])
    figs = train(cfg, tr, va, tmp_path / "c", progress=False, corpus=corpus[:3], corpus_val=corpus[3:])
    after = music_copy_l1(load_bicor_vae(tmp_path / "c" / "vae"), corpus[3:])
    assert figs["corpus_val_mel_l1"] == pytest.approx(after, rel=1e-4) and after < 0.7 * before
    meta = json.loads((tmp_path / "c" / "vae.json").read_text())["meta"]
    assert meta["corpus"]["tracks"] == 3 and meta["corpus"]["val_tracks"] == 1 and meta["corpus"]["hours"] > 0


def replace_steps(cfg, n):
    from dataclasses import replace

    return replace(cfg, steps=n)


def test_cli_pack_train_eval(tmp_path, capsys):
    import soundfile as sf

    root = tmp_path / "dwm"
    rows = []
    for k, did in enumerate(["DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6", "DANCE_R_2", "DANCE_C_4"]):
        m, wav = _synthetic_pair(6.0 + k, seed=k)
        m25 = m.resample(25.0)
        (root / did).mkdir(parents=True)
        np.save(root / did / "motion.npy", _to_dwm23(m25.joints))
        sf.write(root / did / "audio.flac", wav[: int(m25.n_frames / 25 * TB.sample_rate)], TB.sample_rate, subtype="PCM_16")
        (root / did / "meta.json").write_text(json.dumps({"fps": 25, "sample_rate": TB.sample_rate, "genre": "synth"}))
        rows.append({"dance_id": did, "genre": "synth"})
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["dance_id", "genre"])
        w.writeheader()
        w.writerows(rows)
    (root / "skeleton.json").write_text(json.dumps({"joint_names": list(DWM_NAMES)}))
    assert momu(["data", "pack", "--data", str(root), "--out", str(tmp_path / "pack"), "--no-progress"]) == 0
    dances = load_pack(tmp_path / "pack")
    assert sorted(d.name for d in dances if d.split == "val") == sorted(["DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6"])
    run = tmp_path / "run"
    assert momu(["train", "vae", "--stage", "both", "--data", str(tmp_path / "pack"), "--size", "debug", "--steps", "3",
                 "--batch", "2", "--clip", "8", "--val-every", "3", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert momu(["eval", "vae", "--data", str(root), "--weights", str(run / "stage2" / "vae.safetensors"), "--json",
                 "--seconds", "5", "--vocoder", "griffinlim", "--vocode-seconds", "1", "--plot", str(tmp_path / "e.png")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("mel_l1", "mel_l1_vocoded", "mpjpe_mm", "bone_error_mm", "retrieval_top1", "retrieval_top5", "candidates",
              "chance_top1", "throughput_x_realtime"):
        assert k in res
    assert res["candidates"] == min(32, res["clips"]) and res["vocoder"] == "griffinlim"
    assert res["mel_l1_vocoded"] > 0 and res["mel_l1_vocoder_floor"] > 0
    assert (tmp_path / "e.png").stat().st_size > 1000
    assert momu(["eval", "vae", "--data", str(tmp_path / "nope"), "--json"]) == 2


def test_corpus_render_and_hours(tmp_path, capsys):
    from momu_live.models.corpus import corpus_hours, corpus_mels, dance_type, dance_tunes, debian_tracks

    assert dance_type("7thRegimentReel.abc") == "reel" and dance_type("HaydnSonata.abc") is None
    tunes = dance_tunes()
    assert len(tunes) > 100 and {"reel", "jig", "hornpipe"} <= {d for _, d in tunes}
    assert momu(["data", "corpus", "--out", str(tmp_path), "--tunes", "1", "--variants", "2", "--json",
                 "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["files"] == 2 and res["hours"]["music21:ryansMammoth"] > 0
    rows = list(csv.DictReader(open(tmp_path / "index.csv")))
    assert len(rows) == 2 and rows[0]["bpm"] != rows[1]["bpm"]  # tempo augmentation
    assert sum(corpus_hours(tmp_path).values()) == pytest.approx(sum(float(r["seconds"]) for r in rows) / 3600)
    name, mel, split = next(corpus_mels(tmp_path, progress=False))
    assert split in ("train", "val") and name == rows[0]["file"]
    assert [s for *_, s in corpus_mels(tmp_path, progress=False, val_every=1)] == ["val", "val"]  # every tune held out
    assert len(list(corpus_mels(tmp_path, progress=False, max_hours=1e-6))) == 1  # stops at the cap
    assert mel.shape[0] == 80 and mel.shape[1] > 86 and mel.dtype == np.float16
    assert mel.astype(np.float32).std() > 0.5  # real rendered audio, not silence
    assert isinstance(debian_tracks(fetch=False), list)
