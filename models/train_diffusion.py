"""Training of the latent DiT (rectified flow, both directions in one network).

1. ``encode_pack``: every dance of a pack (models/packing.py) is encoded ONCE with the frozen
   BiCoR-VAE into normalised posterior means, music and motion (C, L) each, saved as one compact
   ``latents.npz`` (fp16; travels to a GPU box in a few MB).
2. ``train``: random aligned crops of ``clip`` latent frames; each item picks a task (music|motion)
   at random, the target is that modality, the condition the other one (dropped with probability
   ``cond_drop`` for CFG); loss: models/dit.flow_matching_loss.  The harness (models/training.py) runs it:
   AdamW + warmup + cosine to 10 %, EMA weights, bf16 autocast on CUDA, seeded, resumable
   (``train_state.safetensors`` + JSON), JSON log; checkpoints ``OUT/dit.safetensors + dit.json`` (EMA weights
   with the best validation loss) and ``OUT/dit_last`` (models/checkpoint.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from momu_live import MomuError
from momu_live.models.training import CropSampler, RunConfig, Trainer

FAMILY = "dit"


def encode_pack(data, vae, device="cpu", progress: bool = True, rig=None, rhythm: bool = False) -> dict:
    """Pack (or DwM folder) -> {"ids", "splits", "music/<id>", "motion/<id>"[, "rhythm/<id>"]} latents (C, L) fp16.

    Motion latents: the BiCoR-VAE's motion half, or with ``rig`` = (RigVAE, rig cache folder of ``momu data rig``)
    the rig VAE's on the cached (refined-IK) rig features.  ``rhythm``: also the rhythm control (R, L) of the beat
    tracker's grid on the true music (models/rhythm_control.py; needs a DwM folder, the pack has no waveforms)."""
    from tqdm import tqdm

    from momu_live.models.packing import is_pack, load_dances
    from momu_live.models.timebase import DEFAULT_TIMEBASE
    from momu_live.models.vae import motion_features

    if rhythm and is_pack(data):
        raise MomuError("the rhythm control needs the music's beats: pass the DwM folder as --data, not a pack")
    dances = load_dances(data, None, progress)
    rigs = {}
    if rig is not None:
        from momu_live.models.train_rig_vae import load_rig_cache

        rig_vae, rig_dir = rig
        rigs = {d.name: d for d in load_rig_cache(rig_dir)[0]}
        rig_vae = rig_vae.to(device).eval()
    out = {"ids": [], "splits": []}
    vae = vae.to(device).eval()
    with torch.no_grad():
        for d in tqdm(dances, desc="encode", disable=not progress):
            mel = torch.from_numpy(d.mel.astype(np.float32))[None].to(device)  # (1, 80, 8L)
            zm = vae.normalize_latent(vae.encode_music(mel)[0], "music")[0]  # (C, L)
            if rig is None:
                f = torch.from_numpy(motion_features(d.motion.astype(np.float32), DEFAULT_TIMEBASE.motion_rate))[None]
                zo = vae.normalize_latent(vae.encode_motion(f.to(device))[0], "motion")[0]  # (C, L)
            else:
                if d.name not in rigs:
                    raise MomuError(f"{d.name} is not in the rig cache {rig[1]}; run `momu data rig --out {rig[1]}`")
                rf = rigs[d.name].feats
                rf = torch.from_numpy(rf[: len(rf) // 2 * 2].astype(np.float32))[None].to(device)  # (1, 2L', 86)
                zo = rig_vae.normalize_latent(rig_vae.encode(rf)[0])[0]  # (C, L')
            L = min(zm.shape[-1], zo.shape[-1])
            out["ids"].append(d.name)
            out["splits"].append(d.split)
            out[f"music/{d.name}"] = zm[:, :L].cpu().numpy().astype(np.float16)
            out[f"motion/{d.name}"] = zo[:, :L].cpu().numpy().astype(np.float16)
            mirror = rigs.get(f"{d.name}_mirror")
            if mirror is not None and d.split == "train":  # the dance's mirror image on the same music (augmentation)
                mf = torch.from_numpy(mirror.feats[: len(mirror.feats) // 2 * 2].astype(np.float32))[None].to(device)
                zmi = rig_vae.normalize_latent(rig_vae.encode(mf)[0])[0]  # (C, L'')
                Lm = min(L, zmi.shape[-1])
                out["ids"].append(mirror.name)
                out["splits"].append("train")
                out[f"music/{mirror.name}"] = out[f"music/{d.name}"][:, :Lm]
                out[f"motion/{mirror.name}"] = zmi[:, :Lm].cpu().numpy().astype(np.float16)
    if rhythm:
        src = [i for i in out["ids"] if not i.endswith("_mirror")]
        out.update(music_rhythm(data, src, {i: out[f"music/{i}"].shape[-1] for i in src}, progress))
        for i in out["ids"]:
            if i.endswith("_mirror"):
                out[f"rhythm/{i}"] = out[f"rhythm/{i[:-len('_mirror')]}"][:, : out[f"music/{i}"].shape[-1]]
    out["ids"] = np.array(out["ids"])
    out["splits"] = np.array(out["splits"])
    out["vae_sha256"] = np.array(getattr(vae, "source_sha256", ""))
    out["motion_kind"] = np.array("rig" if rig is not None else "position")
    out["motion_vae_sha256"] = np.array(getattr(rig[0], "source_sha256", "") if rig is not None else "")
    return out


def music_rhythm(data, ids, lengths: dict, progress: bool = True) -> dict:
    """{"rhythm/<id>": (R, L) fp16} of each dance's true music: the beat tracker's grid (genre tempo prior) as the
    rhythm control (models/rhythm_control.py), L from ``lengths``."""
    from tqdm import tqdm

    from momu_live.models.datasets import load_dwm
    from momu_live.models.guidance import grid_from_music
    from momu_live.models.rhythm_control import rhythm_features

    out = {}
    for i in tqdm(list(ids), desc="beats", disable=not progress):
        pair = load_dwm(data, [i])[0]
        grid = grid_from_music(pair.wav, pair.sample_rate, pair.genre)
        out[f"rhythm/{i}"] = rhythm_features(grid, lengths[i]).astype(np.float16)
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
class TrainConfig(RunConfig):
    size: str = "small"
    steps: int = 20000
    batch: int = 64
    clip: int = 64  # latent frames per crop (5.9 s)
    lr: float = 3e-4
    warmup: int = 500
    lr_floor: float = 0.1
    weight_decay: float = 0.01
    no_decay_1d: bool = True
    ema: float = 0.999
    init: str = ""  # fine-tune: start from this DiT checkpoint (new modules, e.g. the rhythm control, start at zero)
    corpus_frac: float = 0.5  # with a music corpus: corpus crops per step as a fraction of ``batch`` (music task, no motion)
    amp: bool = True  # bf16 autocast on CUDA
    val_every: int = 1000
    ckpt_every: int = 2000


def has_rhythm(lat: dict) -> bool:
    return any(k.startswith("rhythm/") for k in lat)


def latent_items(lat: dict, split: str) -> list[tuple[np.ndarray, ...]]:
    """(music, motion[, rhythm]) arrays (C, L) of every ``split`` dance, for ``training.CropSampler``."""
    r = has_rhythm(lat)
    return [(lat[f"music/{i}"], lat[f"motion/{i}"]) + ((lat[f"rhythm/{i}"],) if r else ())
            for i, s in zip(lat["ids"].tolist(), lat["splits"].tolist()) if s == split]


def latent_sampler(lat: dict, split: str, clip: int, device="cpu", seed: int = 0) -> CropSampler:
    """Random aligned crops (music, motion) (B, C, clip) of the ``split`` dances."""
    return CropSampler(latent_items(lat, split), clip, seed=seed, device=device, what=f"{split} dance",
                       unit="latent frames", hint="--clip")


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


@torch.no_grad()
def val_loss(model, sampler: CropSampler, n: int = 256, seed: int = 1234) -> float:
    from momu_live.models.dit import flow_matching_loss

    g = torch.Generator().manual_seed(seed)
    mu, mo, *rho = sampler.sample(n, g)
    x0, cond, task = make_batch(mu, mo, g)
    gd = torch.Generator(device=mu.device).manual_seed(seed)
    return float(flow_matching_loss(model, x0, cond, task, gd, cond_drop=0.0, rhythm=rho[0] if rho else None,
                                    rhythm_drop=0.0))


def train(latents: dict, out_dir, cfg: TrainConfig, device="cpu", resume: bool = False, progress: bool = True,
          dit_config=None, meta: dict | None = None, corpus: dict | None = None) -> Path:
    """Train (or resume) a DiT on encoded latents; returns the path of ``OUT/dit.safetensors``.

    ``corpus``: music-only latents (models/corpus.encode_corpus: "music/<id>", "rhythm/<id>"): every step adds
    ``corpus_frac * batch`` corpus crops, denoised as music with the motion condition dropped (the music branch
    learns music beyond the paired songs, with the rhythm control of the score or the beat tracker)."""
    from momu_live.models.builders import build_dit
    from momu_live.models.checkpoint import config_to_dict, init_from, save_checkpoint
    from momu_live.models.dit import SIZES, flow_matching_loss
    from momu_live.models.rhythm_control import RHYTHM_DIM

    h = Trainer(cfg, out_dir, FAMILY, device, resume, progress)
    out = h.out
    C = int(latents[f"music/{latents['ids'][0]}"].shape[0])
    dcfg = dit_config or replace(SIZES[cfg.size], latent_dim=C, rhythm_dim=RHYTHM_DIM if has_rhythm(latents) else 0)
    model = build_dit(dcfg)
    if cfg.init and not resume:
        fresh = init_from(model, cfg.init, new=("r_in.", "null_rhythm"))
        print(f"initialised from {cfg.init}" + (f"; new: {', '.join(fresh)}" if fresh else ""), flush=True)
    model = h.module("model", model.to(h.device))
    ema = h.ema(model)
    h.optimizer("model", model)
    net = h.wrap(model)
    train_s = h.sampler(latent_items(latents, "train"), cfg.clip, what="train dance", unit="latent frames", hint="--clip")
    try:
        val_s = latent_sampler(latents, "val", cfg.clip, h.device)
    except MomuError:
        val_s = None

    corpus_s, n_corpus = None, 0
    if corpus is not None:
        if has_rhythm(latents) != has_rhythm(corpus):
            raise MomuError("the paired latents and the corpus latents must both have a rhythm control or neither")
        items = [(corpus[f"music/{i}"],) + ((corpus[f"rhythm/{i}"],) if has_rhythm(corpus) else ())
                 for i, s in zip(corpus["ids"].tolist(), corpus["splits"].tolist()) if s == "train"]
        corpus_s = h.sampler(items, cfg.clip, what="corpus track", unit="latent frames", hint="--clip")
        n_corpus = max(1, round(cfg.corpus_frac * cfg.batch))

    def loss(batch, ctx):
        music, motion, *rho = batch  # (B, C, clip) x2 [, (B, R, clip)]
        x0, cond, task = make_batch(music, motion, ctx.gen)  # (B, C, clip) x2, (B,)
        rhythm, keep = (rho[0] if rho else None), None
        if corpus_s is not None:
            cm, *cr = corpus_s.sample(n_corpus)  # (Bc, C, clip) [, (Bc, R, clip)]
            from momu_live.models.dit import TASK_MUSIC

            keep = torch.cat([torch.ones(len(x0), dtype=torch.bool), torch.zeros(len(cm), dtype=torch.bool)])
            x0, cond = torch.cat([x0, cm]), torch.cat([cond, torch.zeros_like(cm)])  # (B + Bc, C, clip)
            task = torch.cat([task, torch.full((len(cm),), TASK_MUSIC, dtype=task.dtype, device=task.device)])
            rhythm = torch.cat([rhythm, cr[0]]) if rhythm is not None else None
        return flow_matching_loss(net, x0, cond, task, ctx.device_gen, cond_drop=dcfg.cond_drop, rhythm=rhythm,
                                  cond_keep=keep), {}

    def validate(step: int, final: bool) -> dict | None:
        if val_s is None:
            return None
        ema.eval()
        return {"val_loss": val_loss(ema, val_s)}

    def export(step: int, entry: dict | None, is_best: bool) -> None:
        ck_meta = {"step": step, "train_config": config_to_dict(cfg), "val_loss": (entry or {}).get("val_loss"),
                   "objective": "rectified_flow_v", "dtype": "float16", **(meta or {})}
        half = copy.deepcopy(ema).half()
        save_checkpoint(out / "dit_last", half, dcfg, FAMILY, ck_meta)
        if is_best or not (out / "dit.json").exists():
            # OUT/dit = the EMA weights with the best validation loss so far (small data overfits early)
            save_checkpoint(out / "dit", half, dcfg, FAMILY, ck_meta)

    h.fit(train_s, loss, validate, export, best="val_loss")
    return out / "dit.safetensors"
