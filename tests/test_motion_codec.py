"""Motion codecs (models/motion_codec.py), the rhythm control (models/rhythm_control.py, DiT ``rhythm_dim``) and a
pipeline on the rig codec: streaming equals whole, bones exact, the control reaches the network."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from momu_live import MomuError
from momu_live.models import rig as R
from momu_live.models.builders import build_dit, debug_rig_vae, debug_vae
from momu_live.models.dit import SIZES
from momu_live.models.motion_codec import PositionCodec, RigCodec, causal_contacts
from momu_live.models.rhythm_control import RHYTHM_DIM, rhythm_features
from momu_live.models.timebase import DEFAULT_TIMEBASE as TB
from tests._rigdata import BONES_M, random_rig


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _joints(T: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random dance (T, 18, 3) at the model rate with exact bone lengths BONES_M."""
    return random_rig(T, seed, fps=float(TB.motion_rate)).positions().astype(np.float32)


def _rig_codec(seed: int = 0) -> RigCodec:
    torch.manual_seed(seed)
    vae = debug_rig_vae()
    vae.set_stats(R.RigStats.fit([R.to_features(random_rig(96, s, fps=float(TB.motion_rate))) for s in range(3)]))
    vae.set_latent_stats({"mean": [0.1, -0.2, 0.0, 0.3], "std": [0.5, 2.0, 1.0, 1.5]})
    vae.meta = {"bones": BONES_M.tolist()}
    return RigCodec(vae.eval())


@pytest.mark.parametrize("make", [lambda: PositionCodec(debug_vae().eval()), _rig_codec], ids=["position", "rig"])
def test_chunked_equals_whole(make):
    codec = make()
    j = _joints(64)
    z = codec.encode(j)  # (1, C, 32)
    assert z.shape == (1, codec.latent_dim, 32)
    st, zs = None, []
    for a, b in ((0, 2), (2, 20), (20, 22), (22, 64)):
        zz, st = codec.encode_stream(j[a:b], st)
        zs.append(zz)
    assert torch.allclose(torch.cat(zs, -1), z, atol=1e-5)
    whole = codec.decode(z)  # (64, 18, 3)
    assert whole.shape == (64, 18, 3) and np.isfinite(whole).all()
    st, parts = None, []
    for a, b in ((0, 1), (1, 9), (9, 9), (9, 32)):
        jj, st = codec.decode_stream(z[..., a:b], st)
        parts.append(jj)
    assert np.allclose(np.concatenate(parts), whole, atol=1e-4)
    jt = codec.joints_torch(z)  # differentiable twin, same root start
    assert np.allclose(jt[0].detach().numpy(), whole, atol=1e-4)


def test_rig_codec_decodes_with_exact_bones_and_round_trips_features():
    codec = _rig_codec()
    z = torch.randn(1, codec.latent_dim, 40, generator=torch.Generator().manual_seed(1)) * 2  # any latents
    j = codec.decode(z)  # (80, 18, 3)
    sd = R.bone_lengths_of(j).std(axis=0)
    assert sd.max() < 1e-5 and np.allclose(R.bone_lengths_of(j)[0], BONES_M, atol=1e-5)
    # the encoder side: analytic IK + causal contacts -> features whose FK reproduces the joints' bone directions
    x = _joints(48, seed=3)
    f, _ = codec.features(x)
    start = R.rig_start(R.RigMotion(rot6d=R.ik_analytic(x, BONES_M), root=x[:, 0].astype(np.float64), bones=BONES_M,
                                    fps=float(TB.motion_rate)))
    rig = R.from_features(f, BONES_M, float(TB.motion_rate), start=start)
    err_mm = 1000 * np.linalg.norm(rig.positions() - x, axis=-1).mean()
    assert err_mm < 10.0, err_mm  # features -> FK give the dance back (analytic IK error only)
    assert np.abs(f[:, 2] - x[:, 0, 1]).max() < 1e-5  # root height channel is the pelvis height


def test_causal_contacts_do_not_look_ahead():
    rng = np.random.default_rng(0)
    feet = np.cumsum(rng.normal(0, 0.01, (50, 4, 3)), axis=0) + [0, 0.05, 0]
    whole, floor = causal_contacts(feet, 21.5)
    a, f1 = causal_contacts(feet[:20], 21.5)
    b, f2 = causal_contacts(feet[20:], 21.5, last_feet=feet[19:20], floor=f1)
    assert np.array_equal(np.concatenate([a, b]), whole) and np.allclose(f2, floor)
    still = np.zeros((10, 4, 3))
    assert causal_contacts(still, 21.5)[0].all()  # on the floor and not moving: contact


def test_rig_codec_needs_bones_and_checks_input():
    vae = debug_rig_vae()
    with pytest.raises(MomuError, match="bone lengths"):
        RigCodec(vae)
    codec = _rig_codec()
    with pytest.raises(MomuError, match=r"\(2k, 18, 3\)"):
        codec.encode_stream(_joints(8)[:3])
    bad = _joints(8)
    bad[2, 3, 0] = np.nan
    with pytest.raises(MomuError, match="NaN"):
        codec.encode(bad)


def test_rhythm_features_follow_the_grid():
    from momu_live.models.guidance import grid_from_tempo

    lr = float(TB.latent_rate)
    g = grid_from_tempo(120.0, 30.0, 3, offset_s=0.0)
    r = rhythm_features(g, 64, start_s=2.0)  # (6, 64)
    assert r.shape == (RHYTHM_DIM, 64) and r.dtype == np.float32
    t = 2.0 + (np.arange(64) + 0.5) / lr
    assert np.allclose(np.arctan2(r[0], r[1]) % (2 * np.pi), (2 * np.pi * t * 2.0) % (2 * np.pi), atol=1e-3)
    assert np.allclose(np.arctan2(r[2], r[3]) % (2 * np.pi), (2 * np.pi * t * 2.0 / 3) % (2 * np.pi), atol=1e-3)
    assert np.allclose(r[4], 0.0) and np.allclose(r[5], 1.0)  # 120 BPM, triple metre
    assert np.allclose(rhythm_features(grid_from_tempo(60.0, 30.0), 4)[4], -1.0)


def test_dit_rhythm_control_starts_neutral_and_reaches_the_output():
    cfg = dataclasses.replace(SIZES["debug"], rhythm_dim=RHYTHM_DIM)
    torch.manual_seed(0)
    m = build_dit(cfg).eval()
    torch.nn.init.normal_(m.out.weight, std=0.1)  # a non-zero output layer (adaLN-zero starts at 0)
    for blk in m.blocks:
        torch.nn.init.normal_(blk.ada[1].weight, std=0.1)
    x, t, task = torch.randn(2, 4, 20), torch.rand(2), torch.tensor([0, 1])
    rho = torch.randn(2, RHYTHM_DIM, 20)
    with torch.no_grad():
        base = m(x, t, task)
        same = m(x, t, task, rhythm=rho)  # W_r = 0 and null = 0: the control starts neutral
        assert torch.allclose(base, same)
        torch.nn.init.normal_(m.r_in.weight, std=0.5)
        moved = m(x, t, task, rhythm=rho)
        dropped = m(x, t, task, rhythm=rho, rhythm_mask=torch.tensor([False, False]))
    assert (moved - base).abs().max() > 1e-3 and torch.allclose(dropped, base)


def test_init_from_allows_only_the_named_new_modules(tmp_path):
    from momu_live.models.checkpoint import init_from, save_checkpoint

    old = build_dit("debug")
    save_checkpoint(tmp_path / "old", old, old.cfg, "dit")
    new = build_dit(dataclasses.replace(SIZES["debug"], rhythm_dim=RHYTHM_DIM))
    fresh = init_from(new, tmp_path / "old", new=("r_in.", "null_rhythm"))
    assert set(fresh) == {"r_in.weight", "r_in.bias", "null_rhythm"}
    assert torch.equal(new.x_in.weight, old.x_in.weight)
    with pytest.raises(MomuError, match="only modules named"):
        init_from(build_dit(dataclasses.replace(SIZES["debug"], rhythm_dim=RHYTHM_DIM)), tmp_path / "old")
    with pytest.raises(MomuError, match="shape mismatch"):
        init_from(build_dit(dataclasses.replace(SIZES["debug"], dim=48)), tmp_path / "old")


def test_pipeline_on_the_rig_codec_with_rhythm_control():
    """All three tasks through the rig codec and a rhythm-conditioned DiT; windows == live steps; bones exact."""
    from momu_live.models.generation import Pipeline, SamplerSpec
    from momu_live.models.guidance import BeatSpec, grid_from_tempo

    codec = _rig_codec()
    torch.manual_seed(0)
    dit = build_dit(dataclasses.replace(SIZES["debug"], rhythm_dim=RHYTHM_DIM))
    torch.nn.init.normal_(dit.out.weight, std=0.1)
    torch.nn.init.normal_(dit.r_in.weight, std=0.5)
    for blk in dit.blocks:
        torch.nn.init.normal_(blk.ada[1].weight, std=0.1)
    pipe = Pipeline(debug_vae(), dit, None, motion=codec)
    spec = SamplerSpec(steps=2, beat=BeatSpec().scaled(0.0))
    grid = grid_from_tempo(100.0, 10.0)
    j = _joints(48)
    a = pipe.motion2music(j, 0, spec, grid=grid)["latents"]
    b = pipe.motion2music(j, 0, spec)["latents"]
    c = pipe.motion2music(j, 0, dataclasses.replace(spec, rhythm=False), grid=grid)["latents"]
    assert not torch.allclose(a, b) and torch.allclose(b, c)  # the grid reaches the DiT only through the control
    w = pipe.motion2music(j, 0, spec, grid=grid, window=6, overlap=2)["latents"]
    st = pipe.init_stream("motion2music", overlap=2, seed=0)
    outs = []
    for k in range(0, 48, 12):
        out, st = pipe.motion2music_step(j[k:k + 12], st, spec, grid=grid, vocode=False)
        outs.append(out.latents)
    assert torch.allclose(torch.cat(outs, -1), w, atol=1e-5)
    dance = pipe.joint(3.0, 0, spec, grid=grid)["joints"]
    assert R.bone_lengths_of(dance).std(axis=0).max() < 1e-5
    wav = np.sin(np.arange(3 * TB.sample_rate) * 2 * np.pi * 220 / TB.sample_rate).astype(np.float32) * 0.3
    assert pipe.music2motion(wav, 0, spec, grid=grid)["joints"].shape[1:] == (18, 3)


def test_head_grid_recovers_tempo_phase_and_downbeat():
    """A perfect prediction of a known grid gives that grid back (tempo from the tempo grid, phase from the head)."""
    from momu_live.models.guidance import grid_from_tempo
    from momu_live.models.rhythm_head import head_grid

    true = grid_from_tempo(96.0, 30.0, 3, offset_s=0.37)
    pred = rhythm_features(true, 200)[:4]  # what a perfect head outputs
    rough = grid_from_tempo(96.0, 30.0, 3, offset_s=0.0)  # the dancer grid: right tempo and metre, wrong phase
    g = head_grid(pred, rough, 18.0)
    beats = np.asarray(g.beats)
    assert g.beats_per_bar == 3 and abs(g.bpm - 96.0) < 1e-6
    n = (beats[:5] - 0.37) / (60 / 96.0)  # beat numbers of the true grid
    assert np.allclose(n, np.round(n), atol=1e-3)  # on the true beats
    assert round(n[0]) % 3 == 0  # the first beat is a true downbeat
    with pytest.raises(MomuError, match=r"\(4, L\)"):
        head_grid(pred[:2], rough, 18.0)


def test_rhythm_head_trains_on_a_latents_file_and_learns_a_phase(tmp_path, momu_cli):
    """Synthetic latents whose channel 0 pulses on the beat: the head learns the phase (error well under chance)."""
    from momu_live.models.guidance import grid_from_tempo
    from momu_live.models.rhythm_head import beat_phase_error, load_rhythm_head, predict
    from momu_live.models.train_diffusion import save_latents

    lat = {"ids": [], "splits": []}
    rng = np.random.default_rng(0)
    for k in range(6):
        g = grid_from_tempo(float(rng.uniform(90, 130)), 40.0, 4, offset_s=float(rng.uniform(0, 0.5)))
        r = rhythm_features(g, 300)
        z = rng.normal(0, 0.3, (4, 300)).astype(np.float32)
        z[0] += 2 * r[1]  # cos of the beat phase
        z[1] += 2 * r[0]
        lat["ids"].append(f"d{k}")
        lat["splits"].append("val" if k == 5 else "train")
        lat[f"motion/d{k}"], lat[f"music/d{k}"], lat[f"rhythm/d{k}"] = z, z, r
    lat["ids"], lat["splits"] = np.array(lat["ids"]), np.array(lat["splits"])
    save_latents(lat, tmp_path / "lat.npz")
    r = momu_cli("train", "rhythm-head", "--data", str(tmp_path / "lat.npz"), "--size", "debug", "--steps", "150",
                 "--clip", "32", "--val-every", "150", "--ckpt-every", "150", "--out", str(tmp_path / "rh"),
                 "--no-progress", "--threads", "1")
    assert r.returncode == 0, r.stderr
    head = load_rhythm_head(tmp_path / "rh" / "rhythm_head")
    err = beat_phase_error(predict(head, torch.from_numpy(lat["motion/d5"])[None]), lat["rhythm/d5"])
    assert err < 0.1, err  # chance: 0.25
    lat2 = {k: v for k, v in lat.items() if not k.startswith("rhythm/")}
    save_latents(lat2, tmp_path / "norhythm.npz")
    bad = momu_cli("train", "rhythm-head", "--data", str(tmp_path / "norhythm.npz"), "--out", str(tmp_path / "x"),
                   "--no-progress")
    assert bad.returncode == 2 and "--rhythm --encode-only" in bad.stderr


def test_corpus_crops_train_the_music_branch_without_a_condition(tmp_path):
    """cond_keep=False drops the condition exactly like cond_drop=1; a run mixing paired and corpus crops trains."""
    import json

    from momu_live.models.dit import flow_matching_loss
    from momu_live.models.guidance import grid_from_tempo
    from momu_live.models.train_diffusion import TrainConfig, train

    torch.manual_seed(0)
    m = build_dit(dataclasses.replace(SIZES["debug"], rhythm_dim=RHYTHM_DIM))
    torch.nn.init.normal_(m.out.weight, std=0.1)
    x0, cond, task = torch.randn(3, 4, 16), torch.randn(3, 4, 16), torch.tensor([0, 1, 0])
    rho = torch.randn(3, RHYTHM_DIM, 16)

    def loss(**kw):
        return flow_matching_loss(m, x0, cond, task, torch.Generator().manual_seed(5), rhythm=rho, rhythm_drop=0.0, **kw)

    dropped = loss(cond_drop=1.0)
    assert torch.allclose(loss(cond_drop=0.0, cond_keep=torch.zeros(3, dtype=torch.bool)), dropped)
    assert not torch.allclose(loss(cond_drop=0.0), dropped)
    rng = np.random.default_rng(0)

    def lat_file(n, music_only: bool):
        lat = {"ids": np.array([f"d{k}" for k in range(n)]), "splits": np.array(["train"] * (n - 1) + ["val"])}
        for k in range(n):
            lat[f"music/d{k}"] = rng.normal(size=(4, 40)).astype(np.float16)
            lat[f"rhythm/d{k}"] = rhythm_features(grid_from_tempo(100.0 + k, 10.0), 40).astype(np.float16)
            if not music_only:
                lat[f"motion/d{k}"] = rng.normal(size=(4, 40)).astype(np.float16)
        return lat

    cfg = TrainConfig(size="debug", steps=4, batch=4, clip=16, val_every=2, ckpt_every=2, warmup=1, corpus_frac=0.5)
    train(lat_file(3, False), tmp_path / "run", cfg, progress=False, corpus=lat_file(4, True))
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["val_loss"]) for r in log)
    with pytest.raises(MomuError, match="rhythm control or neither"):
        no_rhythm = {k: v for k, v in lat_file(4, True).items() if not k.startswith("rhythm/")}
        train(lat_file(3, False), tmp_path / "run2", cfg, progress=False, corpus=no_rhythm)
