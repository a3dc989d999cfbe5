"""Training of the latent DiT (rectified flow, both directions in one network).

1. ``encode_pack``: every dance of a pack (models/packing.py) is encoded ONCE with the frozen
   BiCoR-VAE into normalised posterior means, music and motion (C, L) each, saved as one compact
   ``latents.npz`` (fp16; travels to a GPU box in a few MB).
2. ``train``: random aligned crops of ``clip`` latent frames; each item picks a task (music|motion)
   at random, the target is that modality, the condition the other one (dropped with probability
   ``cond_drop`` for CFG); loss: models/dit.flow_matching_loss.  AdamW + warmup, EMA weights, bf16
   autocast on CUDA, seeded, resumable (``train_state.safetensors`` + JSON), JSON log, checkpoints
   ``OUT/dit.safetensors + dit.json`` (EMA weights; models/checkpoint.py).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from momu_live import MomuError

FAMILY = "dit"


def encode_pack(data, vae, device="cpu", progress: bool = True) -> dict:
    """Pack (or DwM folder) -> {"ids", "splits", "music/<id>", "motion/<id>"} normalised latents (C, L) fp16."""
    from tqdm import tqdm

    from momu_live.models.packing import load_dances
    from momu_live.models.timebase import DEFAULT_TIMEBASE
    from momu_live.models.vae import motion_features

    dances = load_dances(data, None, progress)
    out = {"ids": [], "splits": []}
    vae = vae.to(device).eval()
    with torch.no_grad():
        for d in tqdm(dances, desc="encode", disable=not progress):
            mel = torch.from_numpy(d.mel.astype(np.float32))[None].to(device)  # (1, 80, 8L)
            f = torch.from_numpy(motion_features(d.motion.astype(np.float32), DEFAULT_TIMEBASE.motion_rate))[None].to(device)
            zm = vae.normalize_latent(vae.encode_music(mel)[0], "music")[0]  # (C, L)
            zo = vae.normalize_latent(vae.encode_motion(f)[0], "motion")[0]  # (C, L)
            L = min(zm.shape[-1], zo.shape[-1])
            out["ids"].append(d.name)
            out["splits"].append(d.split)
            out[f"music/{d.name}"] = zm[:, :L].cpu().numpy().astype(np.float16)
            out[f"motion/{d.name}"] = zo[:, :L].cpu().numpy().astype(np.float16)
    out["ids"] = np.array(out["ids"])
    out["splits"] = np.array(out["splits"])
    out["vae_sha256"] = np.array(getattr(vae, "source_sha256", ""))
    return out


def save_latents(lat: dict, path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        np.savez_compressed(f, **lat)
    return p


def load_latents(path) -> dict:
    p = Path(path)
    if not p.exists():
        raise MomuError(f"latents file {p} not found; create it with `momu train diffusion --data PACK --encode-only`")
    z = np.load(p, allow_pickle=False)
    if "ids" not in z:
        raise MomuError(f"{p} is not a latents file (no 'ids')")
    return {k: z[k] for k in z.files}


@dataclass
class TrainConfig:
    size: str = "small"
    steps: int = 20000
    batch: int = 64
    clip: int = 64  # latent frames per crop (5.9 s)
    lr: float = 3e-4
    warmup: int = 500
    weight_decay: float = 0.01
    ema: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int = 1000
    ckpt_every: int = 2000
    max_minutes: float = 0.0


class CropSampler:
    """Random aligned crops (music, motion) (B, C, clip) from a dict of per-dance latents."""

    def __init__(self, lat: dict, split: str, clip: int, device):
        ids = [i for i, s in zip(lat["ids"].tolist(), lat["splits"].tolist()) if s == split]
        ids = [i for i in ids if lat[f"music/{i}"].shape[-1] >= clip]
        if not ids:
            raise MomuError(f"no {split} dance has {clip} latent frames; lower --clip")
        self.music = [torch.from_numpy(lat[f"music/{i}"].astype(np.float32)).to(device) for i in ids]
        self.motion = [torch.from_numpy(lat[f"motion/{i}"].astype(np.float32)).to(device) for i in ids]
        w = np.array([m.shape[-1] - clip + 1 for m in self.music], dtype=np.float64)
        self.p = torch.from_numpy(w / w.sum())
        self.clip, self.ids = clip, ids

    def __call__(self, batch: int, g: torch.Generator):
        di = torch.multinomial(self.p, batch, replacement=True, generator=g).tolist()
        mus, mos = [], []
        for d in di:
            n = self.music[d].shape[-1] - self.clip + 1
            a = int(torch.randint(n, (1,), generator=g))
            mus.append(self.music[d][:, a:a + self.clip])
            mos.append(self.motion[d][:, a:a + self.clip])
        return torch.stack(mus), torch.stack(mos)  # (B, C, clip) each


def make_batch(music: torch.Tensor, motion: torch.Tensor, g: torch.Generator):
    """Random task per item: target x0, condition, task ids."""
    from momu_live.models.dit import TASK_MOTION, TASK_MUSIC

    B = music.shape[0]
    is_motion = (torch.rand(B, generator=g) < 0.5).to(music.device)  # (B,)
    m = is_motion[:, None, None]
    x0 = torch.where(m, motion, music)
    cond = torch.where(m, music, motion)
    task = torch.where(is_motion, TASK_MOTION, TASK_MUSIC).long()
    return x0, cond, task


def _opt_state_tensors(opt: torch.optim.Optimizer, model: torch.nn.Module) -> dict:
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                out[f"opt.{names[id(p)]}.{k}"] = torch.as_tensor(v).detach().cpu().float()
    return out


def _load_opt_state(opt, model, tensors: dict) -> None:
    for n, p in model.named_parameters():
        st = {}
        for k in ("step", "exp_avg", "exp_avg_sq"):
            key = f"opt.{n}.{k}"
            if key in tensors:
                st[k] = tensors[key].to(p.device) if k != "step" else tensors[key].clone()
        if st:
            opt.state[p] = st


@torch.no_grad()
def val_loss(model, sampler: CropSampler, n: int = 256, seed: int = 1234) -> float:
    from momu_live.models.dit import flow_matching_loss

    g = torch.Generator().manual_seed(seed)
    mu, mo = sampler(n, g)
    x0, cond, task = make_batch(mu, mo, g)
    gd = torch.Generator(device=mu.device).manual_seed(seed)
    return float(flow_matching_loss(model, x0, cond, task, gd, cond_drop=0.0))


def train(latents: dict, out_dir, cfg: TrainConfig, device="cpu", resume: bool = False, progress: bool = True,
          dit_config=None, meta: dict | None = None) -> Path:
    """Train (or resume) a DiT on encoded latents; returns the path of ``OUT/dit.safetensors``."""
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from momu_live.models.builders import build_dit
    from momu_live.models.checkpoint import config_to_dict, save_checkpoint
    from momu_live.models.dit import SIZES, flow_matching_loss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    C = int(latents[f"music/{latents['ids'][0]}"].shape[0])
    dcfg = dit_config or replace(SIZES[cfg.size], latent_dim=C)
    model = build_dit(dcfg).to(dev)
    ema = build_dit(dcfg).to(dev)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.99))
    step, log = 0, []
    state_path, state_json = out / "train_state.safetensors", out / "train_state.json"
    if resume and state_path.exists():
        tens = load_file(str(state_path))
        model.load_state_dict({k[6:]: v for k, v in tens.items() if k.startswith("model.")}, strict=True)
        ema.load_state_dict({k[4:]: v for k, v in tens.items() if k.startswith("ema.")}, strict=True)
        _load_opt_state(opt, model, tens)
        smeta = json.loads(state_json.read_text())
        step, log = smeta["step"], smeta.get("log", [])
        g_state = torch.tensor(smeta["rng"], dtype=torch.uint8)
    else:
        g_state = None
    train_s = CropSampler(latents, "train", cfg.clip, dev)
    try:
        val_s = CropSampler(latents, "val", cfg.clip, dev)
    except MomuError:
        val_s = None
    g = torch.Generator().manual_seed(cfg.seed)
    if g_state is not None:
        g.set_state(g_state)
    gd = torch.Generator(device=dev).manual_seed(cfg.seed + step)
    amp = dev.type == "cuda"
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="dit", disable=not progress)
    run_loss = None

    best = min((r["val_loss"] for r in log if "val_loss" in r), default=float("inf"))

    def save_all(final: bool = False):
        smeta = {"step": step, "train_config": config_to_dict(cfg), "log": log[-200:], "rng": g.get_state().tolist()}
        tens = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tens.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
        tens.update(_opt_state_tensors(opt, model))
        save_file(tens, str(state_path))
        state_json.write_text(json.dumps(smeta))
        vl = log[-1].get("val_loss") if log else None
        import copy

        nonlocal best
        ck_meta = {"step": step, "train_config": config_to_dict(cfg), "val_loss": vl, "objective": "rectified_flow_v",
                   "dtype": "float16", **(meta or {})}
        save_checkpoint(out / "dit_last", copy.deepcopy(ema).half(), dcfg, FAMILY, ck_meta)
        if vl is None or vl <= best or not (out / "dit.json").exists():
            # OUT/dit = the EMA weights with the best validation loss so far (small data overfits early)
            best = vl if vl is not None else best
            save_checkpoint(out / "dit", copy.deepcopy(ema).half(), dcfg, FAMILY, ck_meta)
        (out / "log.json").write_text(json.dumps(log, indent=0))

    model.train()
    while step < cfg.steps:
        frac = step / cfg.steps  # cosine decay over steps, or over the time budget when that ends first
        if cfg.max_minutes > 0:
            frac = max(frac, (time.time() - t0) / (60 * cfg.max_minutes))
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * 0.9 + 0.1)
        for grp in opt.param_groups:
            grp["lr"] = lr
        mu, mo = train_s(cfg.batch, g)
        x0, cond, task = make_batch(mu, mo, g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = flow_matching_loss(model, x0, cond, task, gd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        step += 1
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{run_loss:.4f}")
        last = step == cfg.steps
        timeout = cfg.max_minutes > 0 and (time.time() - t0) > 60 * cfg.max_minutes
        if step % cfg.val_every == 0 or last or timeout:
            rec = {"step": step, "loss": run_loss, "lr": lr, "elapsed_s": round(time.time() - t0, 1)}
            if val_s is not None:
                ema.eval()
                rec["val_loss"] = val_loss(ema, val_s)
            log.append(rec)
        improved = bool(log) and log[-1]["step"] == step and log[-1].get("val_loss", float("inf")) < best
        if step % cfg.ckpt_every == 0 or last or timeout or improved:
            save_all()
        if timeout:
            break
    bar.close()
    return out / "dit.safetensors"
