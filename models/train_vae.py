"""Training and validation of BiCoR-VAE (MoMu-Diffusion Sec. 3.1): one loop, two stages.

Stage 1 (music VAE): L = L1(mel) + multi-resolution spectral loss + beta * KL + lambda_adv * LSGAN
(the adversarial loss fights over-smoothed mels; patch discriminator ``MelDiscriminator`` with
feature matching), the discriminator starting after ``adv_start`` steps.
Stage 2 (motion VAE against the frozen music encoder): L = L1(features) (positions + velocities,
plus root-relative joint positions in metres) + beta * KL + lambda_c * rhythmic contrastive loss
(models/rhythm.py, Eq. 1-4) between motion and music posterior means.

Stage 1 can also pre-train on a music corpus (models/corpus.py, ``corpus_mels``): every step adds
``corpus_frac * batch`` corpus crops (music only) to the dances' crops; validation then also reports the copy's mel
L1 on held-out corpus tunes (``corpus_val_mel_l1``).

Data: a pack (models/packing.py) or a DwM folder; random crops of ``clip_latent`` latent frames with
augmentation applied to motion and music together: tempo warp (both resampled by the same factor,
models/training.CropSampler), mirroring (``skeleton.MIRROR_PERM`` + negated x) and rotation about the vertical axis.

The loop, optimisers, LR schedule, resume, log, progress and DDP (``torchrun``: the trainable modules in
DistributedDataParallel, rank 0 validates, logs and writes) are models/training.py's.  Outputs in OUT:
``vae.safetensors/.json`` (model + latent stats; loadable with ``load_bicor_vae``),
``train_state.safetensors/.json`` (weights, optimisers, discriminator, RNG, step: for ``--resume``), ``log.json``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from momu_live import MomuError
from momu_live.models.packing import PackedDance
from momu_live.models.rhythm import aligned_clips, latent_amplitude, retrieval_scores, rhythmic_contrastive_loss
from momu_live.models.skeleton import BONES, MIRROR_PERM
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.models.training import RunConfig, Trainer
from momu_live.models.vae import (
    SL_VEL, BiCoRVAE, MelDiscriminator, features_to_joints_torch, kl_divergence, motion_features_torch,
    reparameterize,
)

TB = DEFAULT_TIMEBASE


@dataclass
class TrainConfig(RunConfig):
    stage: int = 1
    size: str = "small"
    steps: int = 2000
    batch: int = 32
    clip_latent: int = 32  # latent frames per training crop (2.97 s)
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 1e-4
    kl_weight: float = 1e-4
    spectral_weight: float = 1.0
    adv_weight: float = 0.05
    adv_start: int = 500
    corpus_frac: float = 0.0  # stage 1 with a music corpus: corpus crops per step as a fraction of ``batch``
    contrastive: bool = True
    contrastive_weight: float = 0.2
    contrast_clip: int = 8  # latent frames per contrast clip (0.74 s)
    temperature: float = 0.1
    tempo_warp: float = 0.1  # uniform factor in [1 - w, 1 + w]
    mirror: bool = True
    rotate: bool = True
    val_every: int = 250
    ckpt_every: int = 500
    log_every: int = 10


# ---------------------------------------------------------------------------------------------
# data
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
        a, m = aligned_clips(mu_a, mu_m, clip_len, clip_hop)  # (N, C) each
        pa.append(a)
        pm.append(m)
    out = {"mel_l1": mel_err / max(n_mel, 1), "mel_l1_vocoded": (voc_err / n_voc) if vocoder is not None else None,
           "mel_l1_vocoder_floor": (voc_floor / n_voc) if vocoder is not None else None,
           "mpjpe_mm": 1000 * joint_err / max(n_j, 1), "bone_error_mm": 1000 * bone_err / max(n_j, 1)}
    za, zm = torch.cat(pa), torch.cat(pm)  # (N, C)
    out.update(retrieval_scores(za, zm, candidates, seed))
    return out


# ---------------------------------------------------------------------------------------------
# training
@torch.no_grad()
def music_copy_l1(vae: BiCoRVAE, mels: list, device="cpu", max_frames: int = 8 * 512) -> float:
    """Mean |log-mel - VAE copy| (posterior means) over the first ``max_frames`` mel frames of each of ``mels``
    ((80, N) arrays): the music VAE's reconstruction on music-only data (the corpus's held-out tunes)."""
    was = vae.training
    vae.eval()
    err, n = 0.0, 0
    for m in mels:
        k = min(m.shape[-1], max_frames) // TB.latent_per_mel * TB.latent_per_mel
        if k == 0:
            continue
        x = torch.as_tensor(np.asarray(m[:, :k], np.float32), device=device)[None]  # (1, 80, k)
        rec = vae.decode_music(vae.encode_music(x)[0])  # (1, 80, k)
        err += (rec - x).abs().sum().item()
        n += x.numel()
    vae.train(was)
    return err / max(n, 1)


def train(cfg: TrainConfig, train_dances: list[PackedDance], val_dances: list[PackedDance], out_dir: str | Path,
          device: str = "cpu", resume: bool = False, init: str | None = None, progress: bool = True,
          vocoder=None, corpus: list | None = None, corpus_val: list | None = None) -> dict:
    """Train one stage; returns the last validation figures.  See the module docstring.  ``corpus`` /
    ``corpus_val``: log-mels (80, N) of music-only tracks for stage 1 (training crops / held-out copy error)."""
    from momu_live.models.builders import build_vae
    from momu_live.models.checkpoint import load_into, load_state, read_checkpoint_json, save_checkpoint

    h = Trainer(cfg, out_dir, "vae", device, resume, progress, desc=f"vae stage {cfg.stage}", weights="vae")
    out, dev = h.out, h.device
    history: list = []
    if h.saved is not None:
        saved_stage = (h.saved_config or {}).get("stage")
        if saved_stage != cfg.stage:
            raise MomuError(f"{out} holds a stage-{saved_stage} run; resume it with --stage {saved_stage} or use another --out")
        doc = read_checkpoint_json(out / "vae", "vae")
        vae = build_vae(doc["config"])  # weights: from the train state
        history = doc["meta"].get("history", [])
    elif init is not None:
        doc = read_checkpoint_json(init, "vae")
        m0 = doc.get("meta", {})
        history = m0.get("history", []) + ([{"stage": m0["stage"], "step": m0.get("step"), "train_config": m0.get("train_config"),
                                              "init": str(init)}] if "stage" in m0 else [])
        vae = build_vae(doc["config"])
        load_into(vae, load_state(init), str(init))
    else:
        vae = build_vae(cfg.size)
    vae = h.module("model", vae.to(dev))
    if cfg.stage == 1:
        net: nn.Module = MusicStep(vae)
        h.optimizer("model", vae.music.parameters())
        disc = h.module("disc", MelDiscriminator(vae.cfg.disc_channels, vae.cfg.n_mels, vae.cfg.mel_mean, vae.cfg.mel_std).to(dev))
        h.optimizer("disc", disc.parameters(), betas=(0.5, 0.9), weight_decay=0.01, scheduled=False)
        disc_t = h.wrap(disc)
    else:
        net = MotionStep(vae)
        vae.music.requires_grad_(False)
        h.optimizer("model", vae.motion.parameters())
    net = h.wrap(net, find_unused=cfg.stage == 1)  # stage 1 leaves the (trainable) motion VAE unused
    # motion (2L, 18, 3) as time-last (54, 2L): crops of clip_latent latent frames = 8x mel frames, 2x motion frames
    items = [(d.mel, d.motion.reshape(d.motion.shape[0], -1).T) for d in train_dances]
    sampler = h.sampler(items, cfg.clip_latent, (TB.latent_per_mel, TB.motion_per_latent), cfg.tempo_warp,
                        what="dance", unit="latent frames", hint="--clip")
    corpus_s, n_corpus, corpus_meta = None, 0, {}
    if corpus and cfg.stage == 1 and cfg.corpus_frac > 0:
        hours = lambda ms: sum(m.shape[-1] for m in ms) / float(TB.mel_rate) / 3600  # noqa: E731
        corpus_meta = {"corpus": {"tracks": len(corpus), "hours": hours(corpus), "val_tracks": len(corpus_val or []),
                                  "val_hours": hours(corpus_val or [])}}
        corpus_s = h.sampler([(m,) for m in corpus], cfg.clip_latent, (TB.latent_per_mel,), cfg.tempo_warp,
                             what="corpus track", unit="latent frames", hint="--clip")
        n_corpus = max(1, round(cfg.corpus_frac * cfg.batch))

    def losses(batch, ctx):
        mel, mots = batch  # (B, 80, 8Lc), (B, 54, 2Lc)
        if cfg.stage == 1 and corpus_s is not None:
            mel = torch.cat([mel, corpus_s.sample(n_corpus)[0]])  # (B + Bc, 80, 8Lc): music only in stage 1
        if cfg.stage == 1:
            pred, mu, logvar = net(mel)  # (B, 80, 8Lc)
            l_rec = F.l1_loss(pred, mel)
            l_spec = multires_mel_loss(pred, mel)
            l_kl = kl_divergence(mu, logvar)
            loss = l_rec + cfg.spectral_weight * l_spec + cfg.kl_weight * l_kl
            rec = {"mel_l1": l_rec.item(), "spec": l_spec.item(), "kl": l_kl.item()}
            adv_on = ctx.step >= cfg.adv_start and cfg.adv_weight > 0
            if adv_on:
                logits_f, feat_f = disc_t(pred)
                with torch.no_grad():
                    _, feat_r = disc_t(mel)
                l_adv = (logits_f - 1).pow(2).mean()
                l_fm = sum(F.l1_loss(a, b) for a, b in zip(feat_f, feat_r)) / len(feat_f)
                loss = loss + cfg.adv_weight * (l_adv + l_fm)
                rec.update(adv=l_adv.item(), fm=l_fm.item())
            yield "model", loss, rec
            if adv_on:
                lr_, lf_ = disc_t(mel)[0], disc_t(pred.detach())[0]
                l_d = (lr_ - 1).pow(2).mean() + lf_.pow(2).mean()
                yield "disc", l_d, {"disc": l_d.item()}
        else:
            joints = mots.transpose(1, 2).reshape(mots.shape[0], -1, 18, 3)  # (B, 2Lc, 18, 3)
            joints = augment_motion(joints, ctx.gen, cfg.mirror, cfg.rotate)
            feats = motion_features_torch(joints)  # (B, 2Lc, F)
            pred, mu, logvar = net(feats)
            l_rec = motion_recon_loss(pred, feats)
            l_kl = kl_divergence(mu, logvar)
            loss = l_rec + cfg.kl_weight * l_kl
            rec = {"motion_l1": l_rec.item(), "kl": l_kl.item()}
            if cfg.contrastive and cfg.contrastive_weight > 0:
                with torch.no_grad():
                    mu_a, _ = vae.encode_music(mel)  # (B, C, Lc) frozen
                    q = latent_amplitude(joints)  # (B, Lc)
                l_c = rhythmic_contrastive_loss(mu_a, mu, q, cfg.contrast_clip, per_item=4,
                                                temperature=cfg.temperature, generator=ctx.gen)
                loss = loss + cfg.contrastive_weight * l_c
                rec["contrast"] = l_c.item()
            yield "model", loss, rec

    def validate(step: int, final: bool) -> dict | None:
        if not val_dances:
            return None
        val = evaluate(vae, val_dances, dev, vocoder=vocoder if final else None)
        if corpus_val and cfg.stage == 1:
            val["corpus_val_mel_l1"] = music_copy_l1(vae, corpus_val, dev)
        return {"val": val}

    def export(step: int, entry: dict | None, is_best: bool) -> None:
        vae.eval()
        stats = latent_stats(vae, train_dances, dev)
        vae.set_latent_stats(stats)
        meta = {"latent_stats": stats, "stage": cfg.stage, "step": step, "train_config": asdict(cfg), **corpus_meta,
                "validation": (entry or {}).get("val"), "history": history,
                "timebase": {"mel_rate": str(TB.mel_rate), "motion_rate": str(TB.motion_rate),
                             "latent_rate": str(TB.latent_rate)}}
        save_checkpoint(out / "vae", vae, vae.cfg, "vae", meta)

    last = h.fit(sampler, losses, validate, export)
    return (last or {}).get("val") or {}
