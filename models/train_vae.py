"""Training and validation of BiCoR-VAE (MoMu-Diffusion Sec. 3.1): one loop, two stages.

Stage 1 (music VAE): L = L1(mel) + multi-resolution spectral loss + beta * KL + lambda_adv * LSGAN
(the adversarial loss fights over-smoothed mels; patch discriminator ``MelDiscriminator`` with
feature matching), the discriminator starting after ``adv_start`` steps.
Stage 2 (motion VAE against the frozen music encoder): L = L1(features) (positions + velocities,
plus root-relative joint positions in metres) + beta * KL + lambda_c * rhythmic contrastive loss
(models/rhythm.py, Eq. 1-4) between motion and music posterior means.

Data: a pack (models/packing.py) or a DwM folder; random crops of ``clip_latent`` latent frames with
augmentation applied to motion and music together: tempo warp (both resampled by the same factor),
mirroring (``skeleton.MIRROR_PERM`` + negated x) and rotation about the vertical axis.

Runs on CPU or CUDA; under ``torchrun`` (WORLD_SIZE > 1) the trainable modules are wrapped in
DistributedDataParallel and only rank 0 validates, logs and writes checkpoints.  Outputs in OUT:
``vae.safetensors/.json`` (model + latent stats; loadable with ``load_bicor_vae``),
``train_state.safetensors/.json`` (optimisers, discriminator, step: for ``--resume``), ``log.json``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from momu_live import MomuError
from momu_live.models.packing import PackedDance
from momu_live.models.rhythm import cut_clips, latent_amplitude, retrieval_ranks, rhythmic_contrastive_loss
from momu_live.models.skeleton import BONES, MIRROR_PERM
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.models.vae import (
    SL_REL, SL_VEL, BiCoRVAE, MelDiscriminator, features_to_joints_torch, kl_divergence, motion_features_torch,
    reparameterize,
)

TB = DEFAULT_TIMEBASE


@dataclass
class TrainConfig:
    stage: int = 1
    size: str = "small"
    steps: int = 2000
    batch: int = 32
    clip_latent: int = 32  # latent frames per training crop (2.97 s)
    lr: float = 3e-4
    kl_weight: float = 1e-4
    spectral_weight: float = 1.0
    adv_weight: float = 0.05
    adv_start: int = 500
    contrastive: bool = True
    contrastive_weight: float = 0.2
    contrast_clip: int = 8  # latent frames per contrast clip (0.74 s)
    temperature: float = 0.1
    tempo_warp: float = 0.1  # uniform factor in [1 - w, 1 + w]
    mirror: bool = True
    rotate: bool = True
    seed: int = 0
    val_every: int = 250
    ckpt_every: int = 500
    grad_clip: float = 1.0
    max_minutes: float = 0.0  # > 0: stop (validate, save) after this wall time


# ---------------------------------------------------------------------------------------------
# data
class CropSampler:
    """Random aligned crops (mel (B, 80, 8Lc), joints (B, 2Lc, 18, 3)) with tempo warps."""

    def __init__(self, dances: list[PackedDance], clip_latent: int, tempo_warp: float, seed: int):
        self.clip = clip_latent
        self.warp = tempo_warp
        need = math.ceil(clip_latent * (1 + tempo_warp)) + 1
        self.dances = [d for d in dances if d.n_latent >= need]
        if not self.dances:
            raise MomuError(f"no dance is long enough for {need} latent frames ({need / float(TB.latent_rate):.1f} s)")
        w = np.array([d.n_latent for d in self.dances], dtype=np.float64)
        self.p = w / w.sum()
        self.rng = np.random.default_rng(seed)
        self.mels = [torch.from_numpy(d.mel.astype(np.float32)) for d in self.dances]
        self.mots = [torch.from_numpy(d.motion.astype(np.float32)) for d in self.dances]

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        mels, mots = [], []
        for _ in range(batch):
            i = self.rng.choice(len(self.dances), p=self.p)
            f = self.rng.uniform(1 - self.warp, 1 + self.warp) if self.warp > 0 else 1.0
            src_lat = self.clip * f  # latent frames of source material
            start = self.rng.uniform(0, self.dances[i].n_latent - src_lat - 1)
            mels.append(_warp(self.mels[i], start * TB.latent_per_mel, src_lat * TB.latent_per_mel, self.clip * TB.latent_per_mel))
            mo = self.mots[i].reshape(self.mots[i].shape[0], -1).t()  # (54, T)
            mots.append(_warp(mo, start * TB.motion_per_latent, src_lat * TB.motion_per_latent,
                              self.clip * TB.motion_per_latent).t().reshape(-1, 18, 3))
        return torch.stack(mels), torch.stack(mots)  # (B, 80, 8Lc), (B, 2Lc, 18, 3)


def _warp(x: torch.Tensor, start: float, length: float, n_out: int) -> torch.Tensor:
    """Linear resampling of x (C, T) over [start, start + length) onto n_out frames (a tempo warp)."""
    pos = start + torch.arange(n_out, dtype=torch.float64) * (length / n_out)  # (n_out,)
    i0 = pos.floor().long().clamp(0, x.shape[1] - 2)
    w = (pos - i0).float()[None]
    return x[:, i0] * (1 - w) + x[:, i0 + 1] * w  # (C, n_out)


def augment_motion(joints: torch.Tensor, gen: torch.Generator, mirror: bool, rotate: bool) -> torch.Tensor:
    """Mirror (p = 0.5) and rotate about y (uniform angle) a batch (B, T, 18, 3)."""
    B = joints.shape[0]
    out = joints
    if mirror:
        flip = torch.rand(B, generator=gen) < 0.5
        m = out[:, :, list(MIRROR_PERM)].clone()
        m[..., 0] = -m[..., 0]
        out = torch.where(flip.to(out.device)[:, None, None, None], m, out)
    if rotate:
        a = (torch.rand(B, generator=gen) * 2 * math.pi).to(out.device)
        c, s = torch.cos(a)[:, None, None], torch.sin(a)[:, None, None]
        x, z = out[..., 0], out[..., 2]
        out = torch.stack([c * x + s * z, out[..., 1], -s * x + c * z], dim=-1)
    return out


# ---------------------------------------------------------------------------------------------
# losses
def multires_mel_loss(pred: torch.Tensor, target: torch.Tensor, scales=(1, 2, 4)) -> torch.Tensor:
    """Multi-resolution spectral loss on log-mels (B, 80, T): L1 of 2-D average-pooled mels at
    several time/frequency resolutions plus L1 of their temporal and spectral differences (onsets and
    harmonics, which plain L1 smooths away)."""
    loss = pred.new_zeros(())
    for s in scales:
        p = F.avg_pool2d(pred[:, None], s) if s > 1 else pred[:, None]  # (B, 1, 80/s, T/s)
        t = F.avg_pool2d(target[:, None], s) if s > 1 else target[:, None]
        loss = loss + F.l1_loss(p, t)
        loss = loss + F.l1_loss(p.diff(dim=-1), t.diff(dim=-1)) + F.l1_loss(p.diff(dim=-2), t.diff(dim=-2))
    return loss / len(scales)


class MusicStep(nn.Module):
    def __init__(self, vae: BiCoRVAE):
        super().__init__()
        self.vae = vae

    def forward(self, mel):
        mu, logvar = self.vae.encode_music(mel)  # (B, C, L)
        return self.vae.decode_music(reparameterize(mu, logvar)), mu, logvar  # (B, 80, 8L)


class MotionStep(nn.Module):
    def __init__(self, vae: BiCoRVAE):
        super().__init__()
        self.vae = vae

    def forward(self, feats):
        mu, logvar = self.vae.encode_motion(feats)  # (B, C, L)
        return self.vae.decode_motion(reparameterize(mu, logvar)), mu, logvar  # (B, 2L, F)


def motion_recon_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 over features (positions + velocities) + L1 of root-relative joints in metres."""
    l_feat = F.l1_loss(pred, target) + F.l1_loss(pred[..., SL_VEL], target[..., SL_VEL])
    l_pos = F.l1_loss(features_to_joints_torch(pred), features_to_joints_torch(target))
    return l_feat + 2.0 * l_pos


# ---------------------------------------------------------------------------------------------
# checkpoints of the training state (safetensors + JSON; no pickle)
def _opt_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}/{pid}/{k}"] = v.detach().cpu().contiguous()
                meta["state"][str(pid)][k] = "tensor"
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def _opt_load(opt: torch.optim.Optimizer, tensors: dict, meta: dict, prefix: str, device) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"{prefix}/{pid}/{k}"].to(device) if v == "tensor" else v) for k, v in st.items()}
    opt.load_state_dict({"param_groups": meta["param_groups"], "state": state})


# ---------------------------------------------------------------------------------------------
# validation / evaluation
@torch.no_grad()
def latent_stats(vae: BiCoRVAE, dances: list[PackedDance], device) -> dict:
    """Per-channel mean/std of posterior means over whole dances, per modality."""
    out = {}
    zs = {"music": [], "motion": []}
    for d in dances:
        mel, feats = _whole(d, device)
        zs["music"].append(vae.encode_music(mel)[0][0])  # (C, L)
        zs["motion"].append(vae.encode_motion(feats)[0][0])
    for m, lst in zs.items():
        z = torch.cat(lst, dim=1)  # (C, sum L)
        out[m] = {"mean": z.mean(1).cpu().tolist(), "std": z.std(1).clamp_min(1e-4).cpu().tolist()}
    return out


def _whole(d: PackedDance, device):
    mel = torch.from_numpy(d.mel.astype(np.float32))[None].to(device)  # (1, 80, 8L)
    joints = torch.from_numpy(d.motion.astype(np.float32))[None].to(device)  # (1, 2L, 18, 3)
    return mel, motion_features_torch(joints)


@torch.no_grad()
def evaluate(vae: BiCoRVAE, dances: list[PackedDance], device="cpu", clip_len: int = 8, clip_hop: int = 8,
             vocoder=None, candidates: int = 32, seed: int = 0, vocode_frames: int = 1723) -> dict:
    """Validation figures on whole dances (posterior means, no sampling).

    mel_l1: mean |log-mel - reconstruction|; mel_l1_vocoded: the same between the original audio's
    log-mel and the log-mel of the vocoded reconstruction (needs ``vocoder(mel (1,80,N)) -> wav``),
    over the first ``vocode_frames`` mel frames of each dance; mel_l1_vocoder_floor: the
    vocoder's own error on the original mels (what a perfect VAE would score);
    mpjpe_mm: mean joint error of root-relative joints; bone_error_mm: mean |bone length error|;
    retrieval: each motion clip (``clip_len`` latent frames every ``clip_hop``) against its own music
    clip and ``candidates - 1`` music clips drawn at random (seeded) from all other times and dances
    (max-pooled posterior means, centred, cosine); ``*_all`` keys rank against every clip.
    """
    vae.eval()
    mel_err, voc_err, voc_floor, n_voc, n_mel, joint_err, bone_err, n_j = 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, 0
    pm, pa = [], []
    bp = torch.tensor([b[0] for b in BONES], device=device)
    bc = torch.tensor([b[1] for b in BONES], device=device)
    for d in dances:
        mel, feats = _whole(d, device)
        mu_a, _ = vae.encode_music(mel)
        rec = vae.decode_music(mu_a)  # (1, 80, 8L)
        mel_err += (rec - mel).abs().sum().item()
        n_mel += mel.numel()
        if vocoder is not None:
            from momu_live.models.audio import log_mel

            n = min(vocode_frames, mel.shape[-1])
            ref = mel[0, :, :n].cpu()  # (80, n)
            for src, acc in ((rec, "rec"), (mel, "floor")):
                mv = log_mel(vocoder(src[..., :n]).reshape(-1).float().cpu())[..., :n]  # (80, n)
                err = (mv - ref[:, : mv.shape[-1]]).abs().sum().item()
                if acc == "rec":
                    voc_err += err
                    n_voc += mv.numel()
                else:
                    voc_floor += err
        mu_m, _ = vae.encode_motion(feats)
        fr = vae.decode_motion(mu_m)  # (1, 2L, F)
        jp, jt = features_to_joints_torch(fr), features_to_joints_torch(feats)  # (1, T, 18, 3)
        joint_err += (jp - jt).norm(dim=-1).sum().item()
        n_j += jp.shape[1] * jp.shape[2]
        bl_p = (jp[..., bc, :] - jp[..., bp, :]).norm(dim=-1)
        bl_t = (jt[..., bc, :] - jt[..., bp, :]).norm(dim=-1)
        bone_err += (bl_p - bl_t).abs().mean().item() * jp.shape[1] * jp.shape[2]
        L = mu_a.shape[-1]
        starts = torch.arange(0, L - clip_len + 1, clip_hop, device=device)
        st = torch.stack([torch.zeros_like(starts), starts], 1)
        pa.append(cut_clips(mu_a, st, clip_len))
        pm.append(cut_clips(mu_m, st, clip_len))
    out = {"mel_l1": mel_err / max(n_mel, 1), "mel_l1_vocoded": (voc_err / n_voc) if vocoder is not None else None,
           "mel_l1_vocoder_floor": (voc_floor / n_voc) if vocoder is not None else None,
           "mpjpe_mm": 1000 * joint_err / max(n_j, 1), "bone_error_mm": 1000 * bone_err / max(n_j, 1)}
    za, zm = torch.cat(pa), torch.cat(pm)  # (N, C)
    N = len(za)
    ranks_all = retrieval_ranks(za, zm)  # (N,)
    K = min(candidates, N)
    za_c = torch.nn.functional.normalize(za - za.mean(0, keepdim=True), dim=-1)
    zm_c = torch.nn.functional.normalize(zm - zm.mean(0, keepdim=True), dim=-1)
    sim = zm_c @ za_c.t()  # (N, N) motion i vs music j
    g = torch.Generator().manual_seed(seed)
    ranks = torch.empty(N, dtype=torch.long)
    for i in range(N):
        others = torch.randperm(N - 1, generator=g)[: K - 1]
        others = others + (others >= i).long()  # skip i
        ranks[i] = (sim[i, others.to(sim.device)] > sim[i, i]).sum().cpu()
    out.update({"retrieval_top1": (ranks < 1).float().mean().item(), "retrieval_top5": (ranks < 5).float().mean().item(),
                "candidates": int(K), "chance_top1": 1.0 / K, "chance_top5": min(1.0, 5.0 / K), "clips": int(N),
                "retrieval_top1_all": (ranks_all < 1).float().mean().item(),
                "retrieval_top5_all": (ranks_all < 5).float().mean().item()})
    return out


# ---------------------------------------------------------------------------------------------
# the loop
def _lr(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Warm-up (100 steps) then cosine to 5 %, over steps or over ``max_minutes``, whichever ends first."""
    p = step / cfg.steps
    if cfg.max_minutes > 0:
        p = max(p, elapsed / (60 * cfg.max_minutes))
    return cfg.lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def _dist():
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if ws > 1 else 0
    return ws, rank


def train(cfg: TrainConfig, train_dances: list[PackedDance], val_dances: list[PackedDance], out_dir: str | Path,
          device: str = "cpu", resume: bool = False, init: str | None = None, progress: bool = True,
          vocoder=None) -> dict:
    """Train one stage; returns the last validation figures.  See the module docstring."""
    from tqdm import tqdm

    from momu_live.models.builders import build_vae
    from momu_live.models.checkpoint import load_into, load_state, read_checkpoint_json, save_checkpoint

    ws, rank = _dist()
    if ws > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + rank)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * rank)

    state_path = out / "train_state"
    start_step, log, history = 0, [], []
    if resume and (out / "train_state.json").exists():
        st_doc = read_checkpoint_json(state_path, "vae_train_state")
        saved = st_doc["meta"]
        if saved["train_config"]["stage"] != cfg.stage:
            raise MomuError(f"{out} holds a stage-{saved['train_config']['stage']} run; resume it with --stage "
                            f"{saved['train_config']['stage']} or use another --out")
        vae_cfg = read_checkpoint_json(out / "vae", "vae")["config"]
        vae = build_vae(vae_cfg)
        load_into(vae, load_state(out / "vae"), str(out / "vae.safetensors"))
        start_step = saved["step"]
        history = read_checkpoint_json(out / "vae", "vae")["meta"].get("history", [])
        log = json.loads((out / "log.json").read_text()) if (out / "log.json").exists() else []
    elif init is not None:
        doc = read_checkpoint_json(init, "vae")
        m0 = doc.get("meta", {})
        history = m0.get("history", []) + ([{"stage": m0["stage"], "step": m0.get("step"), "train_config": m0.get("train_config"),
                                              "init": str(init)}] if "stage" in m0 else [])
        vae = build_vae(doc["config"])
        load_into(vae, load_state(init), str(init))
    else:
        vae = build_vae(cfg.size)
    vae.to(device)

    if cfg.stage == 1:
        step_mod = MusicStep(vae)
        params = list(vae.music.parameters())
        disc = MelDiscriminator(vae.cfg.disc_channels, vae.cfg.n_mels, vae.cfg.mel_mean, vae.cfg.mel_std).to(device)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    else:
        step_mod = MotionStep(vae)
        params = list(vae.motion.parameters())
        for p in vae.music.parameters():
            p.requires_grad_(False)
        disc, opt_d = None, None
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    if resume and start_step > 0:
        tens = load_state(state_path)
        _opt_load(opt, tens, saved["opt"], "opt", device)
        if disc is not None:
            load_into(disc, {k[5:]: v for k, v in tens.items() if k.startswith("disc/")}, "discriminator state")
            _opt_load(opt_d, tens, saved["opt_d"], "opt_d", device)
        gen.manual_seed(cfg.seed + 7919 * start_step + rank)
    train_mod = step_mod
    if ws > 1:
        # stage 1 leaves the (trainable) motion VAE unused
        train_mod = nn.parallel.DistributedDataParallel(step_mod, device_ids=[device] if device.startswith("cuda") else None,
                                                        find_unused_parameters=cfg.stage == 1)
        if disc is not None:
            disc = nn.parallel.DistributedDataParallel(disc, device_ids=[device] if device.startswith("cuda") else None)
    sampler = CropSampler(train_dances, cfg.clip_latent, cfg.tempo_warp, cfg.seed + 7919 * start_step + rank)

    def save(step: int, figures: dict | None):
        if rank != 0:
            return
        vae.eval()
        stats = latent_stats(vae, train_dances, device)
        vae.set_latent_stats(stats)
        meta = {"latent_stats": stats, "stage": cfg.stage, "step": step, "train_config": asdict(cfg),
                "validation": figures, "history": history, "timebase": {"mel_rate": str(TB.mel_rate), "motion_rate": str(TB.motion_rate),
                                                    "latent_rate": str(TB.latent_rate)}}
        save_checkpoint(out / "vae", vae, vae.cfg, "vae", meta)
        tens, om = _opt_tensors(opt, "opt")
        smeta = {"step": step, "train_config": asdict(cfg), "opt": om}
        if disc is not None:
            dm = disc.module if isinstance(disc, nn.parallel.DistributedDataParallel) else disc
            tens.update({f"disc/{k}": v for k, v in dm.state_dict().items()})
            t2, smeta["opt_d"] = _opt_tensors(opt_d, "opt_d")
            tens.update(t2)
        from safetensors.torch import save_file

        save_file(tens, str(out / "train_state.safetensors"))
        (out / "train_state.json").write_text(json.dumps({"family": "vae_train_state", "format": 1, "config": {},
                                                           "meta": smeta}, default=str))
        (out / "log.json").write_text(json.dumps(log, indent=0))
        vae.train()

    figures = None
    bar = tqdm(range(start_step, cfg.steps), desc=f"vae stage {cfg.stage}", disable=not progress or rank != 0,
               initial=start_step, total=cfg.steps)
    t0 = time.time()
    vae.train()
    for step in bar:
        mel, joints = sampler.sample(cfg.batch)
        mel, joints = mel.to(device), joints.to(device)  # (B, 80, 8Lc), (B, 2Lc, 18, 3)
        rec = {}
        if cfg.stage == 1:
            pred, mu, logvar = train_mod(mel)  # (B, 80, 8Lc)
            l_rec = F.l1_loss(pred, mel)
            l_spec = multires_mel_loss(pred, mel)
            l_kl = kl_divergence(mu, logvar)
            loss = l_rec + cfg.spectral_weight * l_spec + cfg.kl_weight * l_kl
            adv_on = step >= cfg.adv_start and cfg.adv_weight > 0
            if adv_on:
                logits_f, feat_f = disc(pred)
                with torch.no_grad():
                    _, feat_r = disc(mel)
                l_adv = (logits_f - 1).pow(2).mean()
                l_fm = sum(F.l1_loss(a, b) for a, b in zip(feat_f, feat_r)) / len(feat_f)
                loss = loss + cfg.adv_weight * (l_adv + l_fm)
                rec.update(adv=l_adv.item(), fm=l_fm.item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if adv_on:
                lr_, lf_ = disc(mel)[0], disc(pred.detach())[0]
                l_d = (lr_ - 1).pow(2).mean() + lf_.pow(2).mean()
                opt_d.zero_grad(set_to_none=True)
                l_d.backward()
                opt_d.step()
                rec["disc"] = l_d.item()
            rec.update(mel_l1=l_rec.item(), spec=l_spec.item(), kl=l_kl.item())
        else:
            joints = augment_motion(joints, gen, cfg.mirror, cfg.rotate)
            feats = motion_features_torch(joints)  # (B, 2Lc, F)
            pred, mu, logvar = train_mod(feats)
            l_rec = motion_recon_loss(pred, feats)
            l_kl = kl_divergence(mu, logvar)
            loss = l_rec + cfg.kl_weight * l_kl
            if cfg.contrastive and cfg.contrastive_weight > 0:
                with torch.no_grad():
                    mu_a, _ = vae.encode_music(mel)  # (B, C, Lc) frozen
                    q = latent_amplitude(joints)  # (B, Lc)
                l_c = rhythmic_contrastive_loss(mu_a, mu, q, cfg.contrast_clip, per_item=4,
                                                temperature=cfg.temperature, generator=gen)
                loss = loss + cfg.contrastive_weight * l_c
                rec["contrast"] = l_c.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            rec.update(motion_l1=l_rec.item(), kl=l_kl.item())
        lr = _lr(cfg, step, time.time() - t0)
        for g in opt.param_groups:
            g["lr"] = lr
        rec.update(step=step + 1, loss=loss.item(), lr=lr, t=round(time.time() - t0, 1))
        if rank == 0 and ((step + 1) % 10 == 0 or step + 1 == cfg.steps):
            log.append(rec)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        last = step + 1 == cfg.steps or (cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes)
        if rank == 0 and val_dances and ((step + 1) % cfg.val_every == 0 or last):
            figures = evaluate(vae, val_dances, device, vocoder=vocoder if last else None)
            log.append({"step": step + 1, "val": figures})
            vae.train()
        if (step + 1) % cfg.ckpt_every == 0 or last:
            save(step + 1, figures)
        if last:
            break
    if ws > 1:
        torch.distributed.barrier()
    return figures or {}
