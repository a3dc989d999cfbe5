"""The training harness (models/training.py): crops, LR schedule, a tiny model learning, bitwise resume, and
resuming the format-1 train states the three trainers wrote before the harness (converted on the fly)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from momu_live import MomuError
from momu_live.models.builders import debug_dit
from momu_live.models.dit import flow_matching_loss
from momu_live.models.train_diffusion import TrainConfig as DiTConfig
from momu_live.models.train_diffusion import make_batch, train as train_dit
from momu_live.models.training import CropSampler, RunConfig, Trainer, lr_at


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread (conftest)."""


def _ramps(lengths, rates=(8, 2)):
    """Per item: arrays (2, T * r) whose value is the time in base frames (so a crop shows where it came from)."""
    return [tuple(np.tile(np.arange(n * r, dtype=np.float32) / r, (2, 1)) + 1000 * i for r in rates)
            for i, n in enumerate(lengths)]


def test_crop_sampler_aligned_lengths_and_seeded():
    items = _ramps([20, 5, 40])  # the 5-frame item is too short for 8-frame crops
    s = CropSampler(items, 8, rates=(8, 2), seed=3)
    assert len(s) == 2
    a, b = s.sample(64)
    assert a.shape == (64, 2, 64) and b.shape == (64, 2, 16)
    assert torch.equal(a[:, :, ::4], b)  # both arrays cover the same base frames
    start = a[:, 0, 0]
    assert torch.equal(start, start.round()) and ((start % 1000) <= 40 - 8).all()  # whole-frame starts, inside
    assert torch.equal(a[:, 0, -1] - start, torch.full_like(start, 8 - 1 / 8))  # contiguous, no resampling
    assert set((start // 1000).long().tolist()) == {0, 2}
    again = CropSampler(items, 8, rates=(8, 2), seed=3).sample(64)
    other = CropSampler(items, 8, rates=(8, 2), seed=4).sample(64)
    assert torch.equal(again[0], a) and not torch.equal(other[0], a)
    g = torch.Generator().manual_seed(9)
    assert torch.equal(s.sample(4, torch.Generator().manual_seed(9))[0], s.sample(4, g)[0])  # explicit generator
    # tempo warp: resampled, still aligned, spanning (1 +- w) * 8 base frames
    w = CropSampler(items, 8, rates=(8, 2), warp=0.25, seed=0)
    wa, wb = w.sample(32)
    assert torch.allclose(wa[:, :, 0], wb[:, :, 0], atol=1e-4)
    span = (wa[:, 0, 1] - wa[:, 0, 0]) * 64
    assert (span > 6 - 1e-3).all() and (span < 10 + 1e-3).all() and span.std() > 0.1
    with pytest.raises(MomuError, match="no dance is long enough.*lower --clip"):
        CropSampler(items, 50, rates=(8, 2), what="dance", hint="--clip")


def test_lr_schedule_warmup_cosine_floor_and_time_budget():
    cfg = RunConfig(steps=110, lr=1.0, warmup=10, lr_floor=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0) and lr_at(cfg, 60) == pytest.approx(0.55)
    assert lr_at(cfg, 110) == pytest.approx(0.1) and lr_at(cfg, 500) == pytest.approx(0.1)
    timed = dataclasses.replace(cfg, max_minutes=2.0)
    assert lr_at(timed, 20, minutes=1.0) == pytest.approx(0.55) and lr_at(timed, 20, minutes=3.0) == pytest.approx(0.1)


def _latents(n_dances: int = 3, L: int = 48, C: int = 4) -> dict:
    """Music latents = smooth random waves; motion = the music shifted and negated (a learnable conditional map)."""
    rng = np.random.default_rng(0)
    lat = {"ids": np.array([f"d{i}" for i in range(n_dances)]),
           "splits": np.array(["val" if i == n_dances - 1 else "train" for i in range(n_dances)])}
    t = np.arange(L + 3)
    for i in range(n_dances):
        f, ph = rng.uniform(0.1, 0.4, (C, 1)), rng.uniform(0, 6.3, (C, 1))
        wave = np.sin(f * t + ph).astype(np.float32)
        lat[f"music/d{i}"], lat[f"motion/d{i}"] = wave[:, 3:], -wave[:, :-3]
    return lat


def test_tiny_dit_loss_goes_down(tmp_path):
    cfg = DiTConfig(size="debug", steps=40, batch=8, clip=16, lr=3e-3, warmup=2, val_every=5, ckpt_every=40)
    train_dit(_latents(), tmp_path / "run", cfg, progress=False)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [e["step"] for e in log] == list(range(5, 45, 5))
    assert log[-1]["val_loss"] < 0.8 * log[0]["val_loss"], [e["val_loss"] for e in log]
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["lr"] < log[1]["lr"]
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["family"] == "train_state" and state["format"] == 2 and state["step"] == 40
    assert state["best"] == min(e["val_loss"] for e in log)


class _Crash(Exception):
    pass


def _dit_run(out, steps: int, resume: bool = False, crash_after: int | None = None):
    """The DiT trainer's loop on the harness (debug DiT, EMA, two generators, AdamW groups); raises after
    ``crash_after`` steps (a killed run)."""
    cfg = DiTConfig(size="debug", steps=steps, batch=4, clip=16, warmup=3, val_every=3, ckpt_every=3)
    h = Trainer(cfg, out, "dit", resume=resume, progress=False)
    model = h.module("model", debug_dit(4))
    ema = h.ema(model)
    h.optimizer("model", model)
    lat = _latents()
    sampler = h.sampler([(lat[f"music/d{i}"], lat[f"motion/d{i}"]) for i in range(2)], cfg.clip)

    def loss(batch, ctx):
        if crash_after is not None and ctx.step == crash_after:
            raise _Crash
        x0, cond, task = make_batch(*batch, ctx.gen)
        return flow_matching_loss(model, x0, cond, task, ctx.device_gen), {}

    def validate(step, final):
        return {"val_loss": float(flow_matching_loss(ema, *make_batch(*sampler.sample(8, torch.Generator().manual_seed(1)),
                                                                       torch.Generator().manual_seed(2))))}

    h.fit(sampler, loss, validate, best="val_loss")
    return model, ema


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    m_full, e_full = _dit_run(tmp_path / "full", 9)
    with pytest.raises(_Crash):
        _dit_run(tmp_path / "cut", 9, crash_after=7)  # checkpoint at step 6, killed in step 8
    assert json.loads((tmp_path / "cut" / "train_state.json").read_text())["step"] == 6
    m_res, e_res = _dit_run(tmp_path / "cut", 9, resume=True)
    for a, b in zip(list(m_full.state_dict().values()) + list(e_full.state_dict().values()),
                    list(m_res.state_dict().values()) + list(e_res.state_dict().values())):
        assert torch.equal(a, b)
    full = json.loads((tmp_path / "full" / "log.json").read_text())
    res = json.loads((tmp_path / "cut" / "log.json").read_text())
    assert [e["step"] for e in res] == [3, 6, 9]
    assert res[-1]["val_loss"] == full[-1]["val_loss"] and res[-1]["loss"] == pytest.approx(full[-1]["loss"])
    s_full, s_res = load_file(str(tmp_path / "full" / "train_state.safetensors")), load_file(str(tmp_path / "cut" / "train_state.safetensors"))
    assert s_full.keys() == s_res.keys() and all(torch.equal(s_full[k], s_res[k]) for k in s_full if not k.startswith("rng/"))


# ------------------------------------------------------------------------------------------------ format 1


def _state(out):
    return json.loads((out / "train_state.json").read_text()), load_file(str(out / "train_state.safetensors"))


def _write_format1(out, doc: dict, tensors: dict) -> None:
    save_file(tensors, str(out / "train_state.safetensors"))
    (out / "train_state.json").write_text(json.dumps(doc))


def _assert_round_trip(out, t: dict) -> None:
    """The converted format-1 state holds the weights and optimiser moments of the state it was made from."""
    _, conv = _state(out)
    keys = [k for k in t if not k.startswith("rng/")]
    assert sorted(k for k in conv if not k.startswith("rng/")) == sorted(keys)
    for k in keys:
        assert torch.equal(conv[k], t[k].to(conv[k].dtype)), k


def _opt_tensors(tensors, name):
    p = f"opt/{name}/"
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def test_format1_dit_state_resumes(tmp_path):
    """The DiT's old layout (model./ema./opt.<param name>.<key> + JSON with rng) converts and resumes."""
    lat, out = _latents(), tmp_path / "run"
    cfg = DiTConfig(size="debug", steps=3, batch=4, clip=16, warmup=2, val_every=3, ckpt_every=3)
    train_dit(lat, out, cfg, progress=False)
    doc, t = _state(out)
    m = debug_dit(4)
    names = [n for n, p in m.named_parameters() if p.dim() >= 2] + [n for n, p in m.named_parameters() if p.dim() < 2]
    old = {f"{w}.{k[len(f'module/{n}/'):]}": v for n, w in (("model", "model"), ("ema", "ema"))
           for k, v in t.items() if k.startswith(f"module/{n}/")}
    old.update({f"opt.{names[int(k.split('/')[0])]}.{k.split('/')[1]}": v.float() for k, v in _opt_tensors(t, "model").items()})
    _write_format1(out, {"step": 3, "train_config": doc["train_config"], "log": [], "rng": [0] * 16}, old)
    train_dit(lat, out, cfg, resume=True, progress=False)  # nothing left to train: converts only
    _assert_round_trip(out, t)
    train_dit(lat, out, dataclasses.replace(cfg, steps=6), resume=True, progress=False)
    back = load_file(str(out / "train_state.format1.safetensors"))
    assert back.keys() == old.keys()  # the old files are kept
    new_doc, _ = _state(out)
    assert new_doc["format"] == 2 and new_doc["step"] == 6
    assert [e["step"] for e in json.loads((out / "log.json").read_text())] == [3, 6]


def test_format1_vocoder_state_converts_through_the_cli(tmp_path, momu_cli):
    """The vocoder's old layout (<i>.<key> tensors, scalar steps in JSON, weights in OUT/vocoder_fast) resumes
    with `momu train vocoder --resume` and its moments arrive unchanged."""
    from momu_live.models.train_vocoder import pack_audio

    t_ = np.arange(22050, dtype=np.float32) / 22050
    pack = pack_audio(tmp_path / "p.npz", {"a": 0.3 * np.sin(2 * np.pi * 220 * t_), "b": 0.3 * np.sin(2 * np.pi * 330 * t_)},
                      {"c": 0.3 * np.sin(2 * np.pi * 440 * t_[:11025])})
    out = tmp_path / "run"
    common = ("train", "vocoder", "--data", pack, "--size", "debug", "--batch", "2", "--segment", "16", "--val-every", "2",
              "--ckpt-every", "2", "--out", out, "--threads", "1", "--no-progress")
    assert momu_cli(*common, "--steps", "2").returncode == 0
    doc, t = _state(out)
    moments = _opt_tensors(t, "model")
    old = {k.replace("/", "."): v for k, v in moments.items() if v.dim() > 0}
    scalars = {k.replace("/", "."): float(v) for k, v in moments.items() if v.dim() == 0}
    _write_format1(out, {"step": 2, "scalars": scalars, "config": doc["train_config"], "minutes": 0.01}, old)
    assert momu_cli(*common, "--steps", "2", "--resume").returncode == 0  # converts only
    _assert_round_trip(out, t)
    assert load_file(str(out / "train_state.format1.safetensors")).keys() == old.keys()  # the old files are kept
    r = momu_cli(*common, "--steps", "3", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    new_doc, new_t = _state(out)
    assert new_doc["step"] == 3 and new_doc["minutes"] > 0.01
    assert [e["step"] for e in json.loads((out / "log.json").read_text())] == [2, 3]
    assert int(new_t["opt/model/0/step"]) == 3


def test_format1_vae_state_resumes_and_checks_the_stage(tmp_path):
    """The VAE's old layout (family vae_train_state: opt/, disc/, opt_d/; weights in OUT/vae) resumes."""
    from momu_live.models.motion import synthetic_dance
    from momu_live.models.packing import PackedDance
    from momu_live.models.timebase import DEFAULT_TIMEBASE as TB
    from momu_live.models.train_vae import TrainConfig, train

    rng = np.random.default_rng(0)
    dances = []
    for i in range(2):
        j = synthetic_dance(2 * 24 / float(TB.motion_rate) + 0.2, fps=float(TB.motion_rate), seed=i).joints[: 48]
        dances.append(PackedDance(f"d{i}", (rng.normal(size=(80, 192)) - 5).astype(np.float16), j.astype(np.float16), "pop", "train"))
    out = tmp_path / "run"
    cfg = TrainConfig(stage=1, size="debug", steps=2, batch=2, clip_latent=8, val_every=2, ckpt_every=2, adv_start=0)
    train(cfg, dances, [], out, progress=False)
    doc, t = _state(out)
    old = {f"opt/{k}": v for k, v in _opt_tensors(t, "model").items()}
    old.update({f"opt_d/{k}": v for k, v in _opt_tensors(t, "disc").items()})
    old.update({f"disc/{k[len('module/disc/'):]}": v for k, v in t.items() if k.startswith("module/disc/")})
    meta = {"step": 2, "train_config": doc["train_config"], "opt": doc["optimizers"]["model"], "opt_d": doc["optimizers"]["disc"]}
    _write_format1(out, {"family": "vae_train_state", "format": 1, "config": {}, "meta": meta}, old)
    with pytest.raises(MomuError, match="stage-1"):
        train(dataclasses.replace(cfg, stage=2), dances, [], out, resume=True, progress=False)
    train(cfg, dances, [], out, resume=True, progress=False)  # converts only
    _assert_round_trip(out, t)
    train(dataclasses.replace(cfg, steps=3), dances, [], out, resume=True, progress=False)
    new_doc, new_t = _state(out)
    assert new_doc["step"] == 3 and (out / "train_state.format1.json").exists()
    assert int(new_t["opt/model/0/step"]) == 3 and int(new_t["opt/disc/0/step"]) == 3
