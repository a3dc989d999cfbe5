"""Rhythm head: where the music's beats and bars fall, predicted from the dancer's motion latents.

The dancer's grid (``guidance.grid_from_motion``) finds the tempo from the kinematics well (7 of 8 validation
dances within 4 %), but its phase rule (feet slowest on the beat) lands at chance on the DwM dances
(docs/live.md, docs/MODEL_CARD.md).  This head learns the phase from the pairs instead: a small causal
convolutional net over the normalised motion latents (the DiT's motion input, any codec) that regresses the rhythm
control's phase channels of the *true music* (models/rhythm_control.py: sin/cos of the beat phase and of the bar
phase) per latent frame.  The length of the predicted (sin, cos) vector is its confidence.

``head_grid`` turns a prediction into a ``BeatGrid``: the tempo and metre stay the dancer grid's, the beat
offset is the confidence-weighted circular mean of (predicted beat angle - 2 pi t tempo) (closed form, the
phase-locking of models/guidance.py), and the downbeat is the grid beat whose bar phase agrees best with the
predicted bar angle.

Layers: models/vae.py's causal streaming blocks (``CausalConv1d``, ``ResBlock``); receptive field 1 + 2 (1 + 2 +
4 + 8) = 31 latent frames (2.9 s) for ``small``.  Training: ``momu train rhythm-head`` on the latents file of
``momu train diffusion --rhythm --encode-only`` (the same motion latents and true-music rhythm the DiT sees).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.models.training import RunConfig
from momu_live.models.vae import CausalConv1d, ResBlock, StreamSeq

N_OUT = 4  # sin/cos beat phase, sin/cos bar phase: models/rhythm_control.py channels 0-3


@dataclass(frozen=True)
class RhythmHeadConfig:
    latent_dim: int = 16
    channels: int = 64
    dilations: tuple = (1, 2, 4, 8)


SIZES: dict[str, RhythmHeadConfig] = {
    "debug": RhythmHeadConfig(latent_dim=4, channels=8, dilations=(1, 2)),
    "small": RhythmHeadConfig(),
}


class RhythmHead(nn.Module):
    """Motion latents (B, C, L) -> (B, 4, L): sin/cos of the music's beat phase and bar phase (causal)."""

    def __init__(self, cfg: RhythmHeadConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.net = StreamSeq(CausalConv1d(cfg.latent_dim, ch, 3), *[ResBlock(ch, d) for d in cfg.dilations],
                             CausalConv1d(ch, N_OUT, 1))

    def forward(self, z: torch.Tensor, state=None):
        return self.net(z, state)  # (B, 4, L), state


def build_rhythm_head(cfg) -> RhythmHead:
    from momu_live.models.builders import _resolve

    return RhythmHead(_resolve(cfg, SIZES, RhythmHeadConfig, "rhythm head"))


def load_rhythm_head(path, device: str | torch.device = "cpu") -> RhythmHead:
    from momu_live.models.checkpoint import load_checkpoint

    model, doc = load_checkpoint(path, "rhythm_head", build_rhythm_head)
    model.meta = doc.get("meta", {})
    return model.to(device).eval()


def phase_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between predicted and true (sin, cos) pairs (B, 4, L) (target: rhythm control channels 0-3)."""
    return (pred - target).pow(2).mean()


def beat_phase_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean |wrapped beat-phase difference| in beats (0.25 = chance) of (4, L) arrays."""
    a = np.arctan2(pred[0], pred[1]) - np.arctan2(target[0], target[1])
    return float(np.abs(np.angle(np.exp(1j * a))).mean() / (2 * np.pi))


def head_grid(pred: np.ndarray, tempo_grid, seconds: float, start_s: float = 0.0, timebase=DEFAULT_TIMEBASE):
    """A ``BeatGrid`` with ``tempo_grid``'s tempo and metre and the predicted phase (module docstring).

    pred (4, L): the head's output for latent frames from ``start_s``; ``seconds``: the grid's extent."""
    from momu_live.models.guidance import BeatGrid, grid_from_tempo

    p = np.asarray(pred, np.float64)
    if p.ndim != 2 or p.shape[0] != N_OUT or p.shape[1] < 1:
        raise MomuError(f"rhythm head output must be ({N_OUT}, L), got {p.shape}")
    lr = float(timebase.latent_rate)
    t = start_s + (np.arange(p.shape[1]) + 0.5) / lr  # (L,) frame centres (rhythm_control's convention)
    bpm, bpb = float(tempo_grid.bpm), int(tempo_grid.beats_per_bar)
    ibi = 60.0 / bpm
    beat_ang = np.arctan2(p[0], p[1])  # (L,) predicted 2 pi x beat phase
    w = np.hypot(p[0], p[1])  # confidence
    off = np.angle(np.sum(w * np.exp(1j * (beat_ang - 2 * np.pi * t / ibi)))) / (2 * np.pi)  # beats at t = 0
    first = (-off % 1.0) * ibi  # first beat time >= 0: phase(first) integer
    # downbeat: which of the bpb grid beats starts the bar, by the predicted bar angle
    bar_ang = np.arctan2(p[2], p[3])
    wb = np.hypot(p[2], p[3])
    beats_t = (t - first) / ibi  # (L,) beat count from the first beat
    best = max(range(bpb), key=lambda k: float(np.sum(wb * np.cos(bar_ang - 2 * np.pi * (beats_t - k) / bpb))))
    offset = first + best * ibi  # the first downbeat, in [0, one bar): first < ibi and best < bpb
    g = grid_from_tempo(bpm, max(seconds, offset + 2 * ibi), bpb, offset_s=offset)
    return BeatGrid(g.beats, bpb, f"{tempo_grid.source} + rhythm head phase")


@torch.no_grad()
def predict(head: RhythmHead, z: torch.Tensor) -> np.ndarray:
    """Normalised motion latents (1, C, L) -> (4, L) numpy prediction."""
    dev = next(head.parameters()).device
    return head(z.to(dev).float())[0][0].cpu().numpy()


# ---------------------------------------------------------------------------------------------
# training (models/training.py harness)
@dataclass
class TrainConfig(RunConfig):
    size: str = "small"
    steps: int = 3000
    batch: int = 32
    clip: int = 64  # latent frames per crop (5.9 s)
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 1e-3
    no_decay_1d: bool = True
    val_every: int = 250
    ckpt_every: int = 250


def train_head(latents: dict, out_dir, cfg, device: str = "cpu", resume: bool = False, progress: bool = True) -> dict:
    """Fit the head on the train dances of a latents file with a rhythm control; returns the last validation."""
    from dataclasses import asdict

    from momu_live.models.checkpoint import save_checkpoint
    from momu_live.models.train_diffusion import has_rhythm
    from momu_live.models.training import Trainer

    if not has_rhythm(latents):
        raise MomuError("the latents file has no rhythm control; make it with "
                        "`momu train diffusion --data DWM --rhythm --encode-only` (add --motion-vae for rig latents)")
    ids, splits = latents["ids"].tolist(), latents["splits"].tolist()
    tr = [(latents[f"motion/{i}"], latents[f"rhythm/{i}"][:N_OUT]) for i, s in zip(ids, splits) if s == "train"]
    va = [(i, latents[f"motion/{i}"], latents[f"rhythm/{i}"][:N_OUT]) for i, s in zip(ids, splits) if s == "val"]
    C = int(tr[0][0].shape[0])
    hcfg = SIZES[cfg.size] if C == SIZES[cfg.size].latent_dim else RhythmHeadConfig(**{**asdict(SIZES[cfg.size]), "latent_dim": C})
    h = Trainer(cfg, out_dir, "rhythm_head", device, resume, progress, desc="rhythm head")
    head = h.module("model", RhythmHead(hcfg).to(h.device))
    h.optimizer("model", head)
    sampler = h.sampler(tr, cfg.clip, what="train dance", unit="latent frames", hint="--clip")

    def loss(batch, ctx):
        z, target = batch  # (B, C, clip), (B, 4, clip)
        return phase_loss(head(z)[0], target), {}

    def validate(step: int, final: bool) -> dict | None:
        if not va:
            return None
        head.eval()
        errs = {i: beat_phase_error(predict(head, torch.from_numpy(z.astype(np.float32))[None]), r.astype(np.float64))
                for i, z, r in va}
        head.train()
        return {"val_beat_phase_error": float(np.mean(list(errs.values()))), "per_dance": errs}

    def export(step: int, entry: dict | None, is_best: bool) -> None:
        meta = {"step": step, "train_config": asdict(cfg), "validation": entry or {},
                "motion_kind": str(latents.get("motion_kind", "position")),
                "motion_vae_sha256": str(latents.get("motion_vae_sha256", ""))}
        if is_best or not (h.out / "rhythm_head.json").exists():
            save_checkpoint(h.out / "rhythm_head", head, hcfg, "rhythm_head", meta)

    last = h.fit(sampler, loss, validate, export, best="val_beat_phase_error" if va else None)
    return last or {}
