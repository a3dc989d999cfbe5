"""Training and validation of the rig motion VAE (models/rig_vae.py), on models/training.py's harness.

Data: the rig cache (``momu data rig`` -> ``cache/rig/<id>.npz`` + ``index.json``): features (T, 86) at the
model rate, the dancer's bone lengths, the start pose.  Random crops of ``clip_latent`` latent frames
(2 model-rate frames each); no augmentation (the features do not depend on where a dance starts or faces).

Loss on a crop (features x, decoded x^, FK positions P = FK(x), P^ = FK(x^) with the dancer's bones, both
integrated from the same start):
  rot_weight * L1(rot6d channels, normalised) + root_weight * L1(root channels, normalised)
+ pos_weight * mean |P^ - P| root-relative (m) + pos_global_weight * mean |P^ - P| (m; root drift)
+ vel_weight * mean |dP^ - dP| * fps (m/s) + acc_weight * mean |d2P^ - d2P| * fps^2 (m/s^2)
+ contact_weight * BCE(contact logits, contacts)
+ skate_weight * mean over true-contact foot frames of max(0, |v_xz^| - |v_xz|) (m/s: feet sliding faster than
  the real dancer's while planted)
+ heading_weight * mean |integrated heading error| over the crop (rad; the heading is integrated from its
  velocity, so a small bias drifts: 100+ deg over 30 s before this term)
+ kl_weight * KL
+ contrastive_weight * the rhythmic contrastive loss of BiCoR-VAE (MoMu-Diffusion Eq. 3-4, models/rhythm.py) between
  the normalised posterior means of the crop and the frozen music VAE's normalised posterior means of the same
  times' music (``RigDance.mel``; the paper's stage 2, against the music latents the DiT uses).

Validation (``evaluate_copy``): the VAE copy (posterior means) of the first ``seconds`` of every validation
dance, positions by FK: MPJPE root-relative against the rig fit and (when given) the real joints, jitter
(models/kinematics.jitter, m/s^3), bone-length SD (0 by construction: asserted), skating
(kinematics.foot_contact), kinetic FD (models/metrics.fid_k: AIST++ kinetic features of 5-s windows every 1 s,
against a reference set of training-dance windows; the outside table's definition); with music, motion-to-music
clip retrieval (models/rhythm.retrieval_scores: 8-latent-frame clips, 32 candidates) of the copy's latents.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from momu_live import MomuError
from momu_live.models.rig import CONTACT_JOINTS, RigStats, features_to_positions, rest_offsets_torch
from momu_live.models.rig_vae import SL_CON, SL_ROOT, SL_ROT, RigVAE
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.models.training import RunConfig, Trainer
from momu_live.models.vae import kl_divergence, reparameterize

TB = DEFAULT_TIMEBASE
FPS = float(TB.motion_rate)


@dataclass
class TrainConfig(RunConfig):
    size: str = "small"
    steps: int = 20000
    batch: int = 16
    clip_latent: int = 64  # latent frames per crop (128 motion frames, 5.9 s)
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 1e-4
    rot_weight: float = 1.0
    root_weight: float = 1.0
    pos_weight: float = 10.0
    pos_global_weight: float = 2.0
    heading_weight: float = 2.0
    vel_weight: float = 1.0
    acc_weight: float = 0.05
    contact_weight: float = 0.2
    skate_weight: float = 1.0
    kl_weight: float = 1e-4
    contrastive_weight: float = 0.0  # > 0: the rhythmic contrastive stage (needs the dances' music, attach_music)
    contrast_clip: int = 8  # latent frames per contrast clip (0.74 s), as the position VAE's stage 2
    contrast_per_item: int = 4
    temperature: float = 0.1
    val_seconds: float = 30.0
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 50


# ---------------------------------------------------------------------------------------------
# data
@dataclass
class RigDance:
    name: str
    feats: np.ndarray  # (T, 86) float32
    bones: np.ndarray  # (17,)
    start: np.ndarray  # (3,) x0, z0, theta0
    split: str
    genre: str = ""
    mel: np.ndarray | None = None  # (80, 4T) float16 log-mel of the dance's music (attach_music), same start


def music_id(name: str) -> str:
    """The DwM id whose music goes with a rig-cache dance (a mirrored dance keeps its original's music)."""
    return name[: -len("_mirror")] if name.endswith("_mirror") else name


def attach_music(dances: list[RigDance], data: str | Path) -> list[RigDance]:
    """Each dance with the log-mel (80, 4T) of its music from the DwM-format folder ``data`` (music and motion start
    together there; the mel is cut to 4 mel frames per model-rate frame, or padded with the song's quietest level)."""
    import torch

    from dataclasses import replace

    from momu_live.models.audio import log_mel
    from momu_live.models.datasets import load_dwm

    ids = sorted({music_id(d.name) for d in dances})
    mels = {p.name: log_mel(torch.from_numpy(p.wav.astype(np.float32))).numpy() for p in load_dwm(data, ids)}
    per = TB.motion_per_mel  # mel frames per model-rate motion frame
    out = []
    for d in dances:
        m = mels[music_id(d.name)]
        n = per * len(d.feats)
        m = m[:, :n] if m.shape[1] >= n else np.pad(m, ((0, 0), (0, n - m.shape[1])), constant_values=float(m.min()))
        out.append(replace(d, mel=m.astype(np.float16)))
    return out


def load_rig_cache(cache: str | Path) -> tuple[list[RigDance], RigStats | None]:
    """Dances of a ``momu data rig`` folder (split by models/packing.validation_ids) and its train stats."""
    from momu_live.models.packing import validation_ids

    cache = Path(cache)
    index = cache / "index.json"
    if not index.exists():
        raise MomuError(f"no rig cache at {cache} (index.json missing); fit it with "
                        f"`momu data rig --data ../shared/data/dwm --out {cache}` or pass --data to fit on the fly")
    doc = json.loads(index.read_text())
    entries = doc["dances"]
    ids = [e["id"] for e in entries]
    val = validation_ids(ids)
    out = []
    for e in entries:
        with np.load(cache / f"{e['id']}.npz", allow_pickle=False) as z:
            out.append(RigDance(e["id"], z["features"].astype(np.float32), z["bones"].astype(np.float64),
                                np.asarray(z["start"], np.float64), "val" if e["id"] in val else "train",
                                e.get("genre", "")))
    stats = RigStats.from_dict(doc["stats"]) if doc.get("stats") else None
    return out, stats


# ---------------------------------------------------------------------------------------------
# losses
def rig_vae_losses(vae: RigVAE, x: torch.Tensor, bones: torch.Tensor, cfg: TrainConfig, sample: bool = True,
                   extras: dict | None = None):
    """x (B, T, 86) features, bones (B, 17) -> (loss, metrics); ``extras`` (a dict) receives the posterior means
    ``mu`` (B, C, T/2) and the true FK positions ``P`` (B, T, J, 3) for the contrastive term."""
    xn = vae.normalize(x)
    mu, logvar = vae.encode(x)
    z = reparameterize(mu, logvar) if sample else mu
    yn, _ = vae.decode_raw(z)  # (B, T, 86) normalised, contact logits
    T = yn.shape[1]
    xn, x = xn[:, :T], x[:, :T]
    l_rot = F.l1_loss(yn[..., SL_ROT], xn[..., SL_ROT])
    l_root = F.l1_loss(yn[..., SL_ROOT], xn[..., SL_ROOT])
    y = vae.denormalize(yn)
    offsets = rest_offsets_torch(bones)  # (B, J, 3)
    P = features_to_positions(x, offsets, FPS)  # (B, T, J, 3)
    Ph = features_to_positions(y, offsets, FPS)
    rel = lambda p: p - p[:, :, :1]  # noqa: E731
    l_pos = (rel(Ph) - rel(P)).norm(dim=-1).mean()
    l_posg = (Ph - P).norm(dim=-1).mean()
    dP, dPh = P.diff(dim=1) * FPS, Ph.diff(dim=1) * FPS  # (B, T-1, J, 3) m/s
    l_vel = (dPh - dP).norm(dim=-1).mean()
    l_acc = (dPh.diff(dim=1) - dP.diff(dim=1)).norm(dim=-1).mean() * FPS
    c = x[..., SL_CON]  # (B, T, 4) 0/1
    l_con = F.binary_cross_entropy_with_logits(yn[..., SL_CON], c)
    feet = list(CONTACT_JOINTS)
    sp = dPh[:, :, feet][..., [0, 2]].norm(dim=-1)  # (B, T-1, 4)
    sp_true = dP[:, :, feet][..., [0, 2]].norm(dim=-1)
    m = c[:, 1:] * c[:, :-1]
    l_skate = (F.relu(sp - sp_true) * m).sum() / m.sum().clamp_min(1.0)
    l_head = (torch.cumsum(y[:, 1:, 3] - x[:, 1:, 3], dim=1) / FPS).abs().mean()  # rad
    l_kl = kl_divergence(mu, logvar)
    if extras is not None:
        extras.update(mu=mu, P=P)
    loss = (cfg.heading_weight * l_head + cfg.rot_weight * l_rot + cfg.root_weight * l_root + cfg.pos_weight * l_pos + cfg.pos_global_weight * l_posg
            + cfg.vel_weight * l_vel + cfg.acc_weight * l_acc + cfg.contact_weight * l_con + cfg.skate_weight * l_skate
            + cfg.kl_weight * l_kl)
    return loss, {"rot": l_rot.item(), "root": l_root.item(), "pos_mm": 1000 * l_pos.item(), "pos_global_mm": 1000 * l_posg.item(),
                  "vel": l_vel.item(), "acc": l_acc.item(), "contact_bce": l_con.item(), "skate": l_skate.item(),
                  "heading_deg": float(np.degrees(l_head.item())), "kl": l_kl.item()}


# ---------------------------------------------------------------------------------------------
# validation / evaluation
def motion_stats(j: np.ndarray, fps: float = FPS) -> dict:
    """Outside-table realism statistics of one motion (T, 18, 3): jitter m/s^3, bone SD m, skating m/s, contact."""
    from momu_live.models import kinematics as K

    fc = K.foot_contact(j, fps)
    return {"jitter_m_s3": K.jitter(j, fps), "bone_sd_m": K.bone_length_sd(j), "skating_m_s": fc["skating"],
            "contact_fraction": fc["contact_fraction"], "penetration_m": fc["penetration"]}


def kinetic_windows(j: np.ndarray, fps: float = FPS) -> np.ndarray:
    from momu_live.models.kinematics import windowed_kinetic_features

    return windowed_kinetic_features(j, fps, 5.0, 1.0)


def facing_local(p: np.ndarray) -> np.ndarray:
    """Joints (T, J, 3) root-relative in each frame's own facing frame (heading of l_hip - r_hip removed)."""
    from momu_live.models.skeleton import JOINT_INDEX as I

    left = p[:, I["l_hip"]] - p[:, I["r_hip"]]
    th = np.arctan2(-left[:, 2], left[:, 0])[:, None]  # (T, 1)
    c, s = np.cos(th), np.sin(th)
    q = p - p[:, :1]
    return np.stack([c * q[..., 0] - s * q[..., 2], q[..., 1], s * q[..., 0] + c * q[..., 2]], axis=-1)


def heading_of(p: np.ndarray) -> np.ndarray:
    from momu_live.models.skeleton import JOINT_INDEX as I

    left = p[:, I["l_hip"]] - p[:, I["r_hip"]]
    return np.arctan2(-left[:, 2], left[:, 0])


def pose_errors(j: np.ndarray, ref: np.ndarray) -> dict:
    """MPJPE (mm) of j against ref: root-relative in the world frame (the outside table's; includes heading drift),
    root-relative in each motion's own facing frame (pose only), and the mean absolute heading difference (deg)."""
    m = min(len(j), len(ref))
    j, ref = j[:m], ref[:m]
    rel = lambda p: p - p[:, :1]  # noqa: E731
    dh = np.angle(np.exp(1j * (heading_of(j) - heading_of(ref))))
    return {"world": 1000 * float(np.linalg.norm(rel(j) - rel(ref), axis=-1).mean()),
            "local": 1000 * float(np.linalg.norm(facing_local(j) - facing_local(ref), axis=-1).mean()),
            "heading_deg": float(np.degrees(np.abs(dh)).mean())}


def crop_frames(seconds: float, n: int) -> int:
    """Model-rate frames of the first ``seconds`` (whole latent frames), at most ``n`` (even)."""
    return min(2 * int(seconds * float(TB.latent_rate)), n // 2 * 2)


@torch.no_grad()
def rig_positions(d: RigDance, frames: int | None = None, device="cpu") -> np.ndarray:
    """FK of a cached rig (the fit), float64, (T, 18, 3)."""
    f = torch.from_numpy(d.feats[:frames].astype(np.float64))[None].to(device)
    off = rest_offsets_torch(torch.from_numpy(d.bones)[None].to(device))
    return features_to_positions(f, off, FPS, torch.from_numpy(d.start)[None].to(device))[0].cpu().numpy()


@torch.no_grad()
def vae_copy(vae: RigVAE, d: RigDance, frames: int, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """The VAE copy (posterior means) of a dance's first ``frames``: (joints (T, 18, 3) float64, features (T, 86))."""
    vae.eval()
    x = torch.from_numpy(d.feats[:frames])[None].to(device)
    f = vae.decode(vae.encode(x)[0])  # (1, T, 86)
    bones = torch.from_numpy(d.bones).float()[None].to(device)
    pos = vae.positions(f, bones, torch.from_numpy(d.start).float()[None].to(device))
    return pos[0].double().cpu().numpy(), f[0].cpu().numpy()


def evaluate_copy(vae: RigVAE, dances: list[RigDance], ref_kin: np.ndarray | None, seconds: float = 30.0, device="cpu",
                  real: dict | None = None) -> dict:
    """VAE-copy figures on the first ``seconds`` of ``dances`` (see the module docstring); ``real``: {name: joints
    (T, 18, 3) at the model rate} for MPJPE against the real data; ``ref_kin``: reference kinetic windows."""
    from momu_live.models.metrics import fid_k

    per, kins, con_err = [], [], []
    for d in dances:
        n = crop_frames(seconds, len(d.feats))
        pos, f = vae_copy(vae, d, n, device)
        rig = rig_positions(d, n, device)
        bsd = motion_stats(pos)["bone_sd_m"]
        assert bsd < 1e-4, f"rig VAE copy of {d.name}: bone-length SD {bsd} m (must be exact by construction)"
        e = pose_errors(pos, rig)
        it = {"dance": d.name, "mpjpe_rig_mm": e["world"], "mpjpe_rig_local_mm": e["local"], "heading_err_deg": e["heading_deg"],
              "mpjpe_rig_global_mm": 1000 * float(np.linalg.norm(pos - rig, axis=-1).mean()), **motion_stats(pos)}
        if real is not None and d.name in real:
            e = pose_errors(pos, real[d.name][:n])
            it["mpjpe_real_mm"], it["mpjpe_real_local_mm"] = e["world"], e["local"]
        con_err.append(float(np.abs((f[:, SL_CON] > 0.5) - d.feats[:n, SL_CON]).mean()))
        per.append(it)
        kins.append(kinetic_windows(pos))
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0] if k != "dance" and all(k in p for p in per)}
    out["contact_error"] = float(np.mean(con_err))
    if ref_kin is not None:
        out["kinetic_fd"] = fid_k(ref_kin, np.concatenate(kins))
    out["per_dance"] = per
    return out


@torch.no_grad()
def latent_stats(vae: RigVAE, dances: list[RigDance], device="cpu") -> dict:
    """Per-channel mean and std of the posterior means over whole dances: the DiT's latent normalisation
    (``RigVAE.normalize_latent``), stored in the checkpoint's meta like the position VAE's."""
    was = vae.training
    vae.eval()
    mus = [vae.encode(torch.from_numpy(d.feats.astype(np.float32))[None].to(device))[0][0] for d in dances]  # (C, L)
    vae.train(was)
    z = torch.cat(mus, dim=-1)  # (C, sum L)
    return {"mean": z.mean(-1).tolist(), "std": z.std(-1).clamp_min(1e-4).tolist()}


def export_for_pipeline(ckpt, dances: list[RigDance], out, device="cpu") -> Path:
    """A trained checkpoint -> the pipeline's motion VAE (``OUT.safetensors + .json``, family "rig_vae"): latent
    statistics and default bones (median of the training dances') recomputed from the rig cache ``dances``."""
    from momu_live.models.checkpoint import read_checkpoint_json, save_checkpoint
    from momu_live.models.rig_vae import load_rig_vae

    tr = [d for d in dances if d.split == "train"]
    if not tr:
        raise MomuError("the rig cache has no training dances to take the bones and latent statistics from")
    vae = load_rig_vae(ckpt, device)
    lstats = latent_stats(vae, tr, device)
    vae.set_latent_stats(lstats)
    meta = {**read_checkpoint_json(ckpt, "rig_vae").get("meta", {}), "latent_stats": lstats,
            "bones": np.median(np.stack([d.bones for d in tr]), axis=0).tolist(), "exported_from": str(ckpt)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, vae.cpu(), vae.cfg, "rig_vae", meta)
    return out.with_suffix(".safetensors")


# ---------------------------------------------------------------------------------------------
# training
def copy_retrieval(vae: RigVAE, music_vae, dances: list[RigDance], seconds: float = 30.0, device="cpu",
                   clip_len: int = 8, candidates: int = 32, seed: int = 0) -> dict:
    """Motion-to-music clip retrieval (models/rhythm.retrieval_scores) of the posterior means of the first ``seconds``
    of ``dances`` (each with ``mel``) against ``music_vae``'s posterior means of their music, both normalised as the
    DiT sees them; clips of ``clip_len`` latent frames every ``clip_len``."""
    from momu_live.models.rhythm import aligned_clips, retrieval_scores

    was = vae.training
    vae.eval()
    pa, pm = [], []
    with torch.no_grad():
        for d in dances:
            if d.mel is None:
                raise MomuError(f"{d.name} has no music attached (train_rig_vae.attach_music)")
            n = crop_frames(seconds, len(d.feats))
            zm = vae.normalize_latent(vae.encode(torch.from_numpy(d.feats[:n])[None].to(device))[0])  # (1, C, L)
            mel = torch.from_numpy(d.mel[:, : TB.motion_per_mel * n].astype(np.float32))[None].to(device)
            za = music_vae.normalize_latent(music_vae.encode_music(mel)[0], "music")  # (1, C, L')
            a, m = aligned_clips(za, zm, clip_len)  # (N, C) each
            pa.append(a)
            pm.append(m)
    vae.train(was)
    return retrieval_scores(torch.cat(pa), torch.cat(pm), candidates, seed)


def train(cfg: TrainConfig, dances: list[RigDance], stats: RigStats | None, out_dir: str | Path, device: str = "cpu",
          resume: bool = False, progress: bool = True, init: str | Path | None = None, music_vae=None) -> dict:
    """Train the rig VAE; returns the last validation figures.  Writes OUT/rig_vae.safetensors+json, the train
    state and OUT/log.json.  ``init``: start from this rig-VAE checkpoint (fine-tuning; its feature and latent
    statistics come with it); ``music_vae``: the frozen BiCoR-VAE whose music latents the contrastive stage
    (``cfg.contrastive_weight`` > 0) aligns to, with every dance's ``mel`` attached (``attach_music``)."""
    from momu_live.models.builders import build_rig_vae
    from momu_live.models.checkpoint import init_from, save_checkpoint
    from momu_live.models.rhythm import latent_amplitude, rhythmic_contrastive_loss

    tr = [d for d in dances if d.split == "train"]
    va = [d for d in dances if d.split == "val"]
    if not tr:
        raise MomuError("the rig cache has no training dances")
    contrast = cfg.contrastive_weight > 0
    if contrast and (music_vae is None or any(d.mel is None for d in dances)):
        raise MomuError("the contrastive stage needs the dances' music: pass --data (the DwM folder) and --music-vae")
    stats = stats or RigStats.fit([d.feats for d in tr])
    h = Trainer(cfg, out_dir, "rig_vae", device, resume, progress, desc="rig vae")
    dev = h.device
    vae = build_rig_vae(cfg.size)
    vae.set_stats(stats)
    if init is not None and h.saved is None:
        init_from(vae, init)  # its feature normalisation (buffers) replaces the cache's
    vae = h.module("model", vae.to(dev))
    h.optimizer("model", vae)
    if music_vae is not None:
        music_vae = music_vae.to(dev).eval().requires_grad_(False)
    # time-last items: features (86, T) and the bones tiled (17, T), both 2 frames per latent frame [+ mel (80, 4T)]
    items = [(d.feats.T, np.repeat(d.bones.astype(np.float32)[:, None], len(d.feats), axis=1))
             + ((d.mel,) if contrast else ()) for d in tr]
    rates = (TB.motion_per_latent, TB.motion_per_latent) + ((TB.latent_per_mel,) if contrast else ())
    sampler = h.sampler(items, cfg.clip_latent, rates, 0.0, what="dance", unit="latent frames", hint="--clip")
    net = h.wrap(vae)
    ref_kin = None
    if va:
        ref_kin = np.concatenate([kinetic_windows(rig_positions(d, crop_frames(cfg.val_seconds, len(d.feats))))
                                  for d in tr])

    def losses(batch, ctx):
        feats, bones = batch[:2]  # (B, 86, T), (B, 17, T)
        x = feats.transpose(1, 2)
        model = net if isinstance(net, RigVAE) else net.module
        ex: dict = {}
        loss, rec = rig_vae_losses(model, x, bones[..., 0], cfg, extras=ex if contrast else None)
        if contrast:
            with torch.no_grad():
                za = music_vae.normalize_latent(music_vae.encode_music(batch[2])[0], "music")  # (B, C, Lc) frozen
                q = latent_amplitude(ex["P"].float())  # (B, Lc)
            zm = model.normalize_latent(ex["mu"])  # (B, C, Lc)
            L = min(za.shape[-1], zm.shape[-1], q.shape[-1])
            l_c = rhythmic_contrastive_loss(za[..., :L], zm[..., :L], q[:, :L], cfg.contrast_clip,
                                            per_item=cfg.contrast_per_item, temperature=cfg.temperature, generator=ctx.gen)
            loss = loss + cfg.contrastive_weight * l_c
            rec["contrast"] = l_c.item()
        return loss, rec

    def validate(step: int, final: bool) -> dict | None:
        if not va:
            return None
        r = evaluate_copy(vae, va, ref_kin, cfg.val_seconds, dev)
        if music_vae is not None and all(d.mel is not None for d in va):
            r.update(copy_retrieval(vae, music_vae, va, cfg.val_seconds, dev))
        return {"val_mpjpe_mm": r["mpjpe_rig_local_mm"], "val": {k: v for k, v in r.items() if k != "per_dance"}}

    def export(step: int, entry: dict | None, is_best: bool) -> None:
        lstats = latent_stats(vae, tr, dev)
        vae.set_latent_stats(lstats)  # buffers: the DiT's normalisation travels with the weights
        meta = {"step": step, "train_config": asdict(cfg), "validation": (entry or {}).get("val"),
                "rig_stats": RigStats(vae.feat_mean.cpu().numpy(), vae.feat_std.cpu().numpy()).to_dict(),
                "latent_stats": lstats, "fps": FPS,
                "bones": np.median(np.stack([d.bones for d in tr]), axis=0).tolist(),  # generated dances' skeleton
                "timebase": {"motion_rate": str(TB.motion_rate), "latent_rate": str(TB.latent_rate)},
                **({"init": str(init)} if init is not None else {})}
        save_checkpoint(h.out / "rig_vae", vae, vae.cfg, "rig_vae", meta)
        if is_best:
            save_checkpoint(h.out / "rig_vae_best", vae, vae.cfg, "rig_vae", meta)

    last = h.fit(sampler, losses, validate, export, best="val_mpjpe_mm" if va else None)
    return (last or {}).get("val") or {}


# ---------------------------------------------------------------------------------------------
# the VAE-copy table (outside-the-loop statistics, docs/MODEL_CARD.md's definitions)
ROWS = ("real dance (held out)", "rig fit (FK of momu data rig)", "position VAE copy (models/weights/vae)",
        "rig-VAE copy", "frozen pose")


def copy_table(vae: RigVAE, dances: list[RigDance], data: str | Path, seconds: float = 30.0, device="cpu",
               position_vae: str | Path | None = None) -> dict:
    """Rows ``ROWS`` on the first ``seconds`` of the validation dances, against the real DwM joints at the model rate:
    MPJPE root-relative (mm) against the real joints and against the rig fit, jitter (m/s^3), bone-length SD (mm),
    skating (cm/s), contact %, kinetic FD (fid_k against the training dances' real windows; the held-out real dances
    are the floor).  Returns {"rows": {row: figures}, "per_dance": ..., "fig": joints of the first dance per row}."""
    from momu_live.models.datasets import load_dwm
    from momu_live.models.metrics import fid_k
    from momu_live.models.vae import features_to_joints, load_bicor_vae, motion_features

    va = [d for d in dances if d.split == "val"]
    tr = [d for d in dances if d.split == "train" and not d.name.endswith("_mirror")]  # real dances only
    pairs = {p.name: p for p in load_dwm(data, [d.name for d in va + tr], canonical=True)}
    real = {k: p.motion.resample(FPS).joints.astype(np.float64) for k, p in pairs.items()}
    n_of = {d.name: min(crop_frames(seconds, len(d.feats)), len(real[d.name]) // 2 * 2) for d in va + tr}
    ref_kin = np.concatenate([kinetic_windows(real[d.name][: n_of[d.name]]) for d in tr])
    pvae = load_bicor_vae(position_vae).to(device)
    items = {r: [] for r in ROWS}
    fig = {}
    for d in va:
        n = n_of[d.name]
        J = real[d.name][:n]
        rig = rig_positions(d, n, device)
        rv, _ = vae_copy(vae, d, n, device)
        with torch.no_grad():
            f = torch.from_numpy(motion_features(J.astype(np.float32)))[None].to(device)
            pv = features_to_joints(pvae.decode_motion(pvae.encode_motion(f)[0])[0], FPS).astype(np.float64)[:n]
        frozen = np.repeat(J[:1], n, axis=0)
        for row, j in zip(ROWS, (J, rig, pv, rv, frozen)):
            e_real, e_rig = pose_errors(j, J), pose_errors(j, rig)
            it = {"dance": d.name, **motion_stats(j), "_kin": kinetic_windows(j),
                  "mpjpe_real_mm": e_real["world"], "mpjpe_real_local_mm": e_real["local"],
                  "heading_err_deg": e_real["heading_deg"], "mpjpe_rig_mm": e_rig["world"],
                  "mpjpe_rig_local_mm": e_rig["local"]}
            items[row].append(it)
        if not fig:
            fig = {"dance": d.name, "real": J, "rig": rig, "position_vae": pv, "rig_vae": rv}
    rows = {}
    for row, its in items.items():
        r = {k: float(np.nanmean([x[k] for x in its])) for k in its[0] if not k.startswith("_") and k != "dance"}
        r["kinetic_fd"] = fid_k(ref_kin, np.concatenate([x["_kin"] for x in its]))
        rows[row] = r
    per = {row: [{k: v for k, v in x.items() if not k.startswith("_")} for x in its] for row, its in items.items()}
    return {"rows": rows, "per_dance": per, "fig": fig, "seconds": seconds, "dances": [d.name for d in va],
            "reference": f"{len(tr)} training dances, first {seconds:g} s, 5-s windows every 1 s"}


def table_markdown(rows: dict) -> str:
    head = ("| row | MPJPE vs real mm (world, root-rel.) | MPJPE vs real mm (facing frame) | heading error deg | "
            "MPJPE vs rig fit mm (facing frame) | jitter m/s^3 | bone SD mm | skating cm/s | contact % | kinetic FD |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for row, r in rows.items():
        lines.append(f"| {row} | {r['mpjpe_real_mm']:.1f} | {r['mpjpe_real_local_mm']:.1f} | {r['heading_err_deg']:.1f} | "
                     f"{r['mpjpe_rig_local_mm']:.1f} | {r['jitter_m_s3']:.0f} | "
                     f"{1000 * r['bone_sd_m']:.1f} | {100 * r['skating_m_s']:.1f} | {100 * r['contact_fraction']:.0f} | "
                     f"{r['kinetic_fd']:.1f} |")
    return head + "\n".join(lines) + "\n"


def plot_copy(fig: dict, path: str | Path, times=(4.0, 4.5, 5.0, 5.5, 6.0, 6.5)) -> None:
    """Stick figures, real / rig fit / position VAE copy / rig-VAE copy overlaid: front and side views of each pose in
    its own facing frame (heading removed, pelvis at x = z = 0, heights absolute)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momu_live.models.skeleton import BONES
    from momu_live.render import stick_panel

    rows = [("real dance", fig["real"]), ("rig fit", fig["rig"]), ("position VAE copy", fig["position_vae"]),
            ("rig-VAE copy", fig["rig_vae"])]
    f, axes = plt.subplots(2, len(times), figsize=(1.9 * len(times), 6.0), squeeze=False)
    for r, ax_i in enumerate((0, 2)):
        for c, t in enumerate(times):
            ax = axes[r, c]
            k = int(round(t * FPS))
            styles = zip(rows, ("0.55", "tab:green", "tab:red", "tab:blue"), (4, 1.5, 1.5, 2), ("-", ":", "--", "-"))
            for (_, j), col, lw, ls in styles:
                p = facing_local(j[k:k + 1])[0]  # pose in its own facing frame, pelvis at x = z = 0
                x, y = p[:, ax_i], p[:, 1] + j[k, 0, 1]
                for a, b in BONES:
                    ax.plot([x[a], x[b]], [y[a], y[b]], color=col, lw=lw, ls=ls, alpha=0.9)
            stick_panel(ax, f"{t:.1f} s" if r == 0 else None,
                        (("front view: left-right" if ax_i == 0 else "side view: forward") + " / height") if c == 0 else None)
    f.suptitle(f"{fig['dance']}: real (thick grey), rig fit (green dotted), position-VAE copy (red dashed), rig-VAE copy "
               "(blue);\neach pose in its own facing frame (heading removed), pelvis at 0, grey line = floor", fontsize=8)
    f.tight_layout()
    f.savefig(path, dpi=90)
    plt.close(f)
