"""Compact training arrays ("packs") of paired dances for the VAE and diffusion trainers.

A pack is one ``pack.npz`` (numpy + torch only to read; no librosa) holding, per dance ``<id>``:
- ``mel/<id>``     float16 (80, 8L)   log-mel (models/audio.py ``log_mel``) at 86.13 Hz
- ``motion/<id>``  float16 (2L, 18, 3) canonical joints (metres, y up) at the model rate 21.53 fps
and the index arrays ``ids``, ``genres``, ``splits`` ("train"/"val", models/datasets.split_dwm).
Both are cropped to the same whole number L of latent frames, so ``mel[:, 8i:8i+8]`` and
``motion[2i:2i+2]`` cover the same audio samples ``[2048 i, 2048 (i+1))``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

PACK_NAME = "pack.npz"


@dataclass
class PackedDance:
    name: str
    mel: np.ndarray  # (80, 8L) float16
    motion: np.ndarray  # (2L, 18, 3) float16
    genre: str = ""
    split: str = "train"

    @property
    def n_latent(self) -> int:
        return self.mel.shape[1] // DEFAULT_TIMEBASE.latent_per_mel


def pack_pair(name: str, motion, wav: np.ndarray, sample_rate: int, genre: str = "", split: str = "train") -> PackedDance:
    """One paired dance (canonical ``Motion`` + waveform) -> aligned fp16 mel and model-rate motion."""
    import torch

    from momu_live.models.audio import log_mel

    tb = DEFAULT_TIMEBASE
    if sample_rate != tb.sample_rate:
        raise MomuError(f"{name}: audio at {sample_rate} Hz, expected {tb.sample_rate}")
    mel = log_mel(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))).numpy()  # (80, N)
    mot = motion.resample(float(tb.motion_rate)).joints  # (T, 18, 3)
    n_lat = min(mel.shape[1] // tb.latent_per_mel, mot.shape[0] // tb.motion_per_latent)
    if n_lat < 1:
        raise MomuError(f"{name}: too short to pack (needs at least {tb.samples_per_latent} samples)")
    return PackedDance(name, mel[:, : n_lat * tb.latent_per_mel].astype(np.float16),
                       mot[: n_lat * tb.motion_per_latent].astype(np.float16), genre, split)


def validation_ids(ids: list[str]) -> set[str]:
    """Validation dances of a DwM-format folder: the fixed DWM_VALIDATION set (split by dance), or, for a
    folder without those dances, every 8th dance."""
    from momu_live.models.datasets import split_dwm

    _, val = split_dwm(ids)
    return set(val) if set(val) & set(ids) else set(ids[7::8])


def pack_dwm(data_dir: str | Path, out_dir: str | Path, progress: bool = True) -> Path:
    """Pack every dance of a DwM-format folder into ``out_dir/pack.npz``; returns its path."""
    from tqdm import tqdm

    from momu_live.models.datasets import dwm_ids, load_dwm

    ids = dwm_ids(data_dir)
    val = validation_ids(ids)
    dances = []
    for did in tqdm(ids, desc="pack", disable=not progress):
        pair = load_dwm(data_dir, [did])[0]
        dances.append(pack_pair(did, pair.motion, pair.wav, pair.sample_rate, pair.genre, "val" if did in val else "train"))
    return save_pack(dances, out_dir, source=str(data_dir))


def save_pack(dances: list[PackedDance], out_dir: str | Path, source: str = "") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"ids": np.array([d.name for d in dances]), "genres": np.array([d.genre for d in dances]),
              "splits": np.array([d.split for d in dances])}
    for d in dances:
        arrays[f"mel/{d.name}"] = d.mel
        arrays[f"motion/{d.name}"] = d.motion
    meta = {"source": source, "mel_rate": str(DEFAULT_TIMEBASE.mel_rate), "motion_rate": str(DEFAULT_TIMEBASE.motion_rate),
            "n_dances": len(dances), "latent_frames": int(sum(d.n_latent for d in dances))}
    arrays["meta"] = np.array(json.dumps(meta))
    path = out / PACK_NAME
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_pack(path: str | Path, split: str | None = None) -> list[PackedDance]:
    """Read a pack (a ``pack.npz`` or the folder holding it); ``split`` keeps only "train" or "val"."""
    p = Path(path)
    if p.is_dir():
        p = p / PACK_NAME
    if not p.exists():
        raise MomuError(f"pack {p} not found; create it with `momu data pack --data DIR --out {p.parent}`")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise MomuError(f"cannot read pack {p} ({exc}); re-create it with `momu data pack`") from None
    with z:
        if "ids" not in z:
            raise MomuError(f"{p} is not a momu pack (no 'ids'); re-create it with `momu data pack`")
        out = []
        for name, genre, sp in zip(z["ids"].tolist(), z["genres"].tolist(), z["splits"].tolist()):
            if split is None or sp == split:
                out.append(PackedDance(name, z[f"mel/{name}"], z[f"motion/{name}"], genre, sp))
    return out


def is_pack(path: str | Path) -> bool:
    p = Path(path)
    return (p / PACK_NAME).exists() or (p.suffix == ".npz" and p.exists())


def load_dances(data: str | Path, split: str | None = None, progress: bool = True) -> list[PackedDance]:
    """A pack, or a DwM-format folder packed in memory (same arrays, same split rule)."""
    if is_pack(data):
        return load_pack(data, split)
    from tqdm import tqdm

    from momu_live.models.datasets import dwm_ids, load_dwm

    ids = dwm_ids(data)
    val = validation_ids(ids)
    out = []
    for did in tqdm(ids, desc="load", disable=not progress):
        sp = "val" if did in val else "train"
        if split is not None and sp != split:
            continue
        pair = load_dwm(data, [did])[0]
        out.append(pack_pair(did, pair.motion, pair.wav, pair.sample_rate, pair.genre, sp))
    return out
