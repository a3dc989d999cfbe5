"""Rig motion VAE (models/rig_vae.py, models/train_rig_vae.py): shapes, latent rate, streaming (chunked == whole),
bone lengths exact by construction, a few training steps lower the loss, checkpoint round trip, the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _rigdata import BONES_M, random_rig
from momu_live import MomuError
from momu_live.models import rig as R
from momu_live.models.builders import build_rig_vae, debug_rig_vae
from momu_live.models.rig_vae import RigVAE, load_rig_vae
from momu_live.models.skeleton import bone_lengths

FPS = float(R.RigConfig().fps)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def random_features(T: int = 64, seed: int = 0) -> np.ndarray:
    """Rig features (T, 86) of the shared smooth random dance (tests/_rigdata.py), at the model rate."""
    return R.to_features(random_rig(T, seed, fps=FPS))


def _vae(seed: int = 0) -> RigVAE:
    torch.manual_seed(seed)
    vae = debug_rig_vae()
    feats = [random_features(96, s) for s in range(3)]
    vae.set_stats(R.RigStats.fit(feats))
    return vae.eval()


def test_shapes_latent_rate_and_crop_rule():
    vae = _vae()
    x = torch.from_numpy(np.stack([random_features(41, 0), random_features(41, 1)]))  # odd: last frame dropped
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, vae.latent_dim, 20)  # x2 down: the latent rate
    f = vae.decode(mu)
    assert f.shape == (2, 40, R.N_FEATURES)
    c = f[..., R.FEATURE_LAYOUT["contacts"]]
    assert float(c.detach().min()) >= 0 and float(c.detach().max()) <= 1  # probabilities
    with pytest.raises(MomuError):
        vae.encode(x[:, :1])
    with pytest.raises(MomuError):
        vae.encode(torch.zeros(1, 8, 85))
    assert sum(p.numel() for p in build_rig_vae("small").parameters()) > 10 * sum(p.numel() for p in vae.parameters())


def test_streaming_chunked_equals_whole():
    vae = _vae()
    x = torch.from_numpy(random_features(48, 2))[None]
    bones = torch.tensor(BONES_M, dtype=torch.float32)[None]
    start = torch.tensor([[0.3, -0.2, 0.7]])
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        feats = vae.decode(mu)
        pos = vae.positions(feats, bones, start)
        st, mus, lvs = None, [], []
        for a in range(0, 48, 6):  # 3 latent frames per chunk
            m, lv, st = vae.encode_stream(x[:, a:a + 6], st)
            mus.append(m)
            lvs.append(lv)
        assert torch.allclose(torch.cat(mus, -1), mu, atol=1e-5)
        assert torch.allclose(torch.cat(lvs, -1), logvar, atol=1e-5)
        st, fs, ps = None, [], []
        for a, b in ((0, 1), (1, 5), (5, 6), (6, 24)):  # uneven latent chunks
            p, st = vae.decode_positions_stream(mu[..., a:b], bones, st, start=start)
            ps.append(p)
        assert torch.allclose(torch.cat(ps, 1), pos, atol=1e-4)
        st2 = None
        for a in range(0, 24, 4):
            f, st2 = vae.decode_stream(mu[..., a:a + 4], st2)
            fs.append(f)
        assert torch.allclose(torch.cat(fs, 1), feats, atol=1e-5)


def test_bone_lengths_exact_by_construction():
    vae = _vae(1)
    with torch.no_grad():
        z = torch.randn(2, vae.latent_dim, 16) * 3  # any latent, even far from the data
        pos = vae.positions(vae.decode(z), torch.tensor(np.stack([BONES_M, BONES_M * 1.1]), dtype=torch.float32))
    for b, scale in ((0, 1.0), (1, 1.1)):
        bl = bone_lengths(pos[b].double().numpy())  # (T, 17)
        assert bl.std(axis=0).max() < 1e-6
        np.testing.assert_allclose(bl.mean(0), BONES_M * scale, atol=1e-5)


def test_a_few_training_steps_lower_the_loss():
    from momu_live.models.train_rig_vae import TrainConfig, rig_vae_losses

    vae = _vae(2).train()
    cfg = TrainConfig(size="debug")
    x = torch.from_numpy(np.stack([random_features(32, s) for s in range(4)]))
    bones = torch.tensor(np.stack([BONES_M] * 4), dtype=torch.float32)
    opt = torch.optim.Adam(vae.parameters(), 3e-3)
    torch.manual_seed(0)
    with torch.no_grad():
        first, m0 = rig_vae_losses(vae, x, bones, cfg, sample=False)
    for _ in range(40):
        loss, _ = rig_vae_losses(vae, x, bones, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last, m1 = rig_vae_losses(vae, x, bones, cfg, sample=False)
    assert float(last) < 0.7 * float(first)
    assert m1["pos_mm"] < m0["pos_mm"]
    for k in ("rot", "root", "pos_mm", "vel", "acc", "contact_bce", "skate", "kl"):
        assert np.isfinite(m1[k])


def test_checkpoint_round_trip(tmp_path):
    from momu_live.models.checkpoint import save_checkpoint

    vae = _vae(3)
    save_checkpoint(tmp_path / "rig_vae", vae, vae.cfg, "rig_vae", {})
    back = load_rig_vae(tmp_path / "rig_vae")
    x = torch.from_numpy(random_features(16, 4))[None]
    with torch.no_grad():
        assert torch.equal(back.encode(x)[0], vae.encode(x)[0])
    assert torch.equal(back.feat_std, vae.feat_std)


def _tiny_cache(root, dwm_ids):
    """A rig cache (momu data rig layout) of synthetic dances under the DwM validation names + train names."""
    import json

    root.mkdir()
    entries = []
    for k, did in enumerate(dwm_ids):
        rig = R.from_features(random_features(120, k), BONES_M, fps=FPS)
        rig.save(root / f"{did}.npz")
        entries.append({"id": did, "split": "train"})
    feats = [random_features(120, k) for k in range(len(dwm_ids))]
    (root / "index.json").write_text(json.dumps({"config": {}, "dances": entries, "stats": R.RigStats.fit(feats).to_dict()}))


def test_cli_trains_and_validates_on_a_tiny_cache(tmp_path, momu_cli):
    ids = ["DANCE_C_1", "DANCE_C_2", "DANCE_C_6", "DANCE_W_7"]  # C_6, W_7: DwM validation dances
    _tiny_cache(tmp_path / "rig", ids)
    out = tmp_path / "run"
    r = momu_cli("train", "rig-vae", "--rig", str(tmp_path / "rig"), "--size", "debug", "--steps", "4", "--batch", "2",
                 "--clip", "8", "--val-seconds", "5", "--val-every", "4", "--ckpt-every", "4", "--out", str(out),
                 "--no-progress", "--threads", "1")
    assert r.returncode == 0, r.stderr
    import json

    val = json.loads(r.stdout.strip().splitlines()[-1])
    assert val["bone_sd_m"] < 1e-6 and val["mpjpe_rig_mm"] > 0 and np.isfinite(val["kinetic_fd"])
    assert load_rig_vae(out / "rig_vae").latent_dim == 4
    exp = momu_cli("train", "rig-vae", "--rig", str(tmp_path / "rig"), "--export", str(out / "rig_vae"), "--out",
                   str(tmp_path / "w" / "motion_vae"), "--no-progress")
    assert exp.returncode == 0, exp.stderr
    from momu_live.models.motion_codec import RigCodec

    codec = RigCodec(load_rig_vae(tmp_path / "w" / "motion_vae"))  # bones and latent statistics travel in the file
    assert np.allclose(codec.bones, BONES_M) and float(codec.vae.latent_std.min()) > 0
    missing = momu_cli("train", "rig-vae", "--rig", str(tmp_path / "none"), "--out", str(tmp_path / "x"), "--no-progress")
    assert missing.returncode == 2 and "momu data rig" in missing.stderr


def test_real_rig_cache_copy_is_exact_in_bones(dwm_shared):
    """On the shared data (skips naming MOMU_SHARED without it): fit one validation dance's first 4 s, copy it."""
    from momu_live.models.datasets import load_dwm
    from momu_live.models.train_rig_vae import RigDance, evaluate_copy

    pair = load_dwm(dwm_shared, ["DANCE_W_7"])[0]
    joints = pair.motion.resample(FPS).joints[:88]
    rig = R.fit_rig(joints, FPS, ik=R.IkConfig(iters=20))
    d = RigDance("DANCE_W_7", R.to_features(rig), rig.bones, np.asarray(R.rig_start(rig)), "val")
    vae = _vae(4)
    r = evaluate_copy(vae, [d], None, seconds=4.0, real={"DANCE_W_7": joints})
    assert r["bone_sd_m"] < 1e-6 and r["mpjpe_real_mm"] > 0


def _music_for(feats: np.ndarray, seed: int) -> np.ndarray:
    """A log-mel (80, 4T) whose loudness follows the dance's kinematic amplitude (so music and motion share a rhythm),
    plus noise: a learnable pairing for the contrastive stage."""
    from momu_live.models.rhythm import kinematic_amplitude

    pos = R.features_to_positions(torch.from_numpy(feats)[None].double(),
                                  R.rest_offsets_torch(torch.tensor(BONES_M)[None]), FPS)
    q = kinematic_amplitude(pos.float())[0].numpy()  # (T,)
    q = (q - q.mean()) / (q.std() + 1e-6)
    rng = np.random.default_rng(seed)
    env = np.repeat(q, 4)  # 4 mel frames per model-rate frame
    return (-5.0 + 1.5 * env[None] * np.linspace(1.0, 0.2, 80)[:, None]
            + 0.3 * rng.standard_normal((80, len(env)))).astype(np.float16)


def test_contrastive_stage_trains_against_a_frozen_music_vae_and_reports_retrieval(tmp_path):
    """The BiCoR-VAE stage 2 on the rig VAE: the contrastive term is logged and falls, the music VAE is never
    updated, validation carries the retrieval figures, and a run without music refuses the stage."""
    from momu_live.models.builders import debug_vae
    from momu_live.models.train_rig_vae import RigDance, TrainConfig, train

    dances = []
    for s in range(6):
        f = random_features(240, 10 + s)
        dances.append(RigDance(f"D{s}", f, np.asarray(BONES_M), np.zeros(3), "val" if s == 5 else "train",
                               mel=_music_for(f, s)))
    torch.manual_seed(0)
    mvae = debug_vae().eval()
    before = {k: v.clone() for k, v in mvae.state_dict().items()}
    cfg = TrainConfig(size="debug", steps=60, batch=8, clip_latent=16, lr=3e-3, contrastive_weight=1.0, val_seconds=10.0,
                      val_every=60, ckpt_every=60, log_every=10, seed=0)
    val = train(cfg, dances, None, tmp_path / "run", progress=False, music_vae=mvae)
    assert all(torch.equal(before[k], v) for k, v in mvae.state_dict().items())  # frozen
    import json

    log = [e for e in json.loads((tmp_path / "run" / "log.json").read_text()) if "contrast" in e]
    assert len(log) >= 3 and log[-1]["contrast"] < log[0]["contrast"]
    assert val["candidates"] >= 2 and 0.0 <= val["retrieval_top1"] <= 1.0 and val["clips"] >= 2
    assert val["top1_x_chance"] == pytest.approx(val["retrieval_top1"] * val["candidates"])
    with pytest.raises(MomuError, match="music"):
        train(cfg, [RigDance(d.name, d.feats, d.bones, d.start, d.split) for d in dances], None, tmp_path / "r2",
              progress=False, music_vae=mvae)


def test_retrieval_scores_find_identical_clips_and_sit_at_chance_on_unrelated_ones():
    from momu_live.models.rhythm import retrieval_scores

    g = torch.Generator().manual_seed(0)
    za = torch.randn(200, 16, generator=g)
    same = retrieval_scores(za, za.clone() + 0.01 * torch.randn(200, 16, generator=g), candidates=32)
    assert same["retrieval_top1"] == 1.0 and same["top1_x_chance"] == pytest.approx(32.0)
    unrelated = retrieval_scores(za, torch.randn(200, 16, generator=g), candidates=32)
    assert unrelated["top1_x_chance"] < 3.0 and unrelated["chance_top1"] == pytest.approx(1 / 32)


def test_attach_music_gives_each_mirror_its_originals_music(dwm_shared):
    """On the shared data: a mirrored dance gets the same log-mel as its original, 4 mel frames per motion frame."""
    from momu_live.models.train_rig_vae import RigDance, attach_music

    f = random_features(50, 0)
    ds = attach_music([RigDance("DANCE_W_7", f, np.asarray(BONES_M), np.zeros(3), "val"),
                       RigDance("DANCE_W_7_mirror", f, np.asarray(BONES_M), np.zeros(3), "train")], dwm_shared)
    assert ds[0].mel.shape == (80, 200) and np.array_equal(ds[0].mel, ds[1].mel)
    assert float(ds[0].mel.astype(np.float32).std()) > 0.1  # real music, not padding
