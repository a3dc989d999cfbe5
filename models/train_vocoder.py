"""Training of the fast iSTFT vocoder (models/vocoder.py ``FastVocoder``) on music.

Loss (per random crop of ``segment`` mel frames; the model sees ``log_mel`` of the crop):
- log-mel L1 between ``log_mel(generated)`` and ``log_mel(target)`` (HiFi-GAN eq. 5, weight 45),
- multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN eq. 4-6): spectral convergence +
  log-magnitude L1 at (n_fft, hop) = (512, 128), (1024, 256), (2048, 512).
No adversarial loss and no distillation from HiFi-GAN yet (see README "Vocoder": known gaps).

Data: an audio pack (``.npz`` with int16 arrays ``train/<name>`` and ``val/<name>`` at 22.05 kHz, written by
``pack_audio``) or a DwM-format folder (train/validation split of models/datasets.split_dwm).
The loop, AdamW, warm-up + cosine LR, crops, resume, log and progress are models/training.py's.
Checkpoints: ``OUT/vocoder_fast.{safetensors,json}`` (models/checkpoint.py) + ``OUT/train_state.{safetensors,json}``
(weights, optimizer moments, RNG and step, for ``resume``) + ``OUT/log.json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from momu_live import MomuError
from momu_live.models.training import RunConfig, Trainer
from momu_live.models.vocoder import FAMILY_FAST, SIZES

SAMPLE_RATE = 22050


@dataclass
class TrainConfig(RunConfig):
    size: str = "small"
    steps: int = 20000
    batch: int = 16
    segment: int = 128  # mel frames per crop (x 256 samples)
    lr: float = 5e-4
    warmup: int = 300
    betas: tuple = (0.8, 0.99)
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    mel_weight: float = 45.0
    stft_weight: float = 2.5
    gain_min: float = 0.25  # random level augmentation (crop * U[gain_min, 1] / peak)
    val_every: int = 500
    ckpt_every: int = 1000
    device: str = "cpu"


# ------------------------------------------------------------------------------------------------
# data


@dataclass
class PackConfig:
    """What ``pack_training_audio`` takes from each source (seconds at 22.05 kHz)."""
    seconds_per_dance: float = 28.0  # DwM training dances: this much from ``offset_s``
    val_seconds: float = 10.0  # DwM validation dances (``val/<id>``) and held-out corpus tracks (``corpus_val/<name>``)
    offset_s: float = 8.0
    corpus_seconds: float = 30.0  # cap per corpus training track (a sounding excerpt near its middle)
    corpus_tracks: int = 0  # training tracks per corpus source (seeded choice; 0: all)
    corpus_val: int = 4  # tunes held out per corpus source into ``corpus_val/`` (never in train)
    seed: int = 0
    max_mib: float = 64.0  # refuse to write a larger pack (0: no limit)


PACK_MANIFEST = "manifest.json"  # uint8 JSON array inside the pack: source/seconds/origin of every track


def pack_audio(out: str | Path, train: dict[str, np.ndarray], val: dict[str, np.ndarray],
               groups: dict[str, dict[str, np.ndarray]] | None = None, manifest: dict | None = None) -> Path:
    """Write an int16 audio pack (``train/<name>``, ``val/<name>``, ``<group>/<name>`` for extra ``groups``;
    float32 in [-1, 1] in, 22.05 kHz) with an optional JSON ``manifest``."""
    arrs = {}
    for split, d in (("train", train), ("val", val), *(groups or {}).items()):
        for k, w in d.items():
            arrs[f"{split}/{k}"] = np.clip(np.round(np.asarray(w, np.float32) * 32767), -32768, 32767).astype(np.int16)
    if manifest is not None:
        arrs[PACK_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrs)
    return out


def folder_kind(root: str | Path) -> str:
    """The kind of a data folder: "dwm" (DwM format) or "corpus" (``momu data corpus``); MomuError otherwise."""
    import csv

    root = Path(root)
    if not root.is_dir():
        raise MomuError(f"{root} not found or not a folder; give a DwM-format folder or a music corpus folder "
                        "(from `momu data corpus --out DIR`)")
    fields: list[str] = []
    if (root / "index.csv").is_file():
        with open(root / "index.csv", newline="") as f:
            fields = next(csv.reader(f), [])
    if "dance_id" in fields:
        return "dwm"
    if {"file", "source", "title"} <= set(fields) and (root / "wav").is_dir():
        return "corpus"
    raise MomuError(f"{root} is neither a DwM-format folder (index.csv with a dance_id column) nor a music corpus "
                    "folder (index.csv with file,source,title columns + wav/, written by `momu data corpus --out DIR`); "
                    "point at one of those")


SILENT_RMS = 1e-3  # a 1024-sample frame below -60 dBFS RMS counts as silent


def active_excerpt(wav: np.ndarray, seconds: float, max_silent: float = 0.05, frame: int = 1024) -> np.ndarray | None:
    """The ``seconds`` excerpt (frame-aligned, all of ``wav`` when shorter) nearest the middle of ``wav`` with at most
    ``max_silent`` of its frames silent; None when there is none.  (Digital silence in a target crop makes the
    MR-STFT spectral convergence ||S_t - S_p|| / ||S_t|| explode: one game-music track with thunder and pauses gave
    crop losses of 4e4 against ~2 elsewhere.)"""
    nf = len(wav) // frame
    w = min(nf, int(seconds * SAMPLE_RATE) // frame)  # excerpt length in frames
    if w < 1:
        return None
    rms = np.sqrt((wav[: nf * frame].reshape(nf, frame).astype(np.float64) ** 2).mean(1))  # (nf,)
    silent = np.concatenate([[0], np.cumsum(rms < SILENT_RMS)])  # (nf + 1,)
    starts = np.arange(nf - w + 1)  # (S,) candidate first frames
    ok = starts[(silent[starts + w] - silent[starts]) / w <= max_silent]  # (K,)
    if len(ok) == 0:
        return None
    a = int(ok[np.argmin(np.abs(ok - (nf - w) / 2))]) * frame
    return wav[a : a + min(len(wav), int(seconds * SAMPLE_RATE))]


def _corpus_split(root: Path, cfg: PackConfig) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) of a corpus index: per source, ``corpus_val`` seeded titles held out whole
    (every variant of a held-out tune), then at most ``corpus_tracks`` seeded training rows."""
    import csv

    with open(root / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [r["file"] for r in rows if not (root / r["file"]).is_file()]
    if missing:
        raise MomuError(f"{root}/index.csv lists {len(missing)} missing files (first: {missing[0]}); re-run "
                        f"`momu data corpus --out {root}`")
    rng = np.random.default_rng(cfg.seed)
    train, held = [], []
    for src in sorted({r["source"] for r in rows}):
        rs = sorted((r for r in rows if r["source"] == src), key=lambda r: r["file"])
        titles = sorted({r["title"] for r in rs})
        k = min(cfg.corpus_val, max(0, len(titles) - 1))  # always leave a title for training
        out_titles = {titles[i] for i in rng.permutation(len(titles))[:k]}
        held += [r for r in rs if r["title"] in out_titles]
        tr = [r for r in rs if r["title"] not in out_titles]
        if cfg.corpus_tracks > 0 and len(tr) > cfg.corpus_tracks:
            tr = [tr[i] for i in sorted(rng.permutation(len(tr))[: cfg.corpus_tracks])]
        train += tr
    return train, held


def pack_training_audio(out: str | Path, dwm: str | Path | None = None, corpora: list[str | Path] | tuple = (),
                        cfg: PackConfig | None = None, progress: bool = True) -> Path:
    """An audio pack from a DwM folder and/or music corpus folders (``momu data corpus``).

    DwM: ``train/<id>`` = ``seconds_per_dance`` of each training dance from ``offset_s``; ``val/<id>`` =
    ``val_seconds`` of each validation dance (models/datasets.split_dwm), exactly as ``pack_dwm_audio``.
    Corpus: ``train/<stem>`` = ``corpus_seconds`` of each training track; ``corpus_val/<stem>`` = ``val_seconds``
    of the held-out tracks (``_corpus_split``); both the excerpt nearest the middle that is not silent
    (``active_excerpt``; tracks without one are skipped and listed in the manifest).  The pack's manifest records the source,
    seconds and origin of every track (``pack_sources`` sums it)."""
    from tqdm import tqdm

    from momu_live.models.audio import load_audio
    from momu_live.models.datasets import dwm_ids, split_dwm

    cfg = cfg or PackConfig()
    if dwm is None and not corpora:
        raise MomuError("nothing to pack: give a DwM folder and/or --corpus folders")
    jobs: list[tuple[str, str, str, Path, float, str]] = []  # (split, name, source, file, seconds, where)
    if dwm is not None:
        root = Path(dwm)
        if folder_kind(root) != "dwm":
            raise MomuError(f"{root} is a music corpus folder, not a DwM folder; pass it with --corpus")
        tr_ids, va_ids = split_dwm(dwm_ids(root))
        jobs += [("train", i, "dwm", root / i / "audio.flac", cfg.seconds_per_dance, "offset") for i in tr_ids]
        jobs += [("val", i, "dwm", root / i / "audio.flac", cfg.val_seconds, "offset") for i in va_ids]
    for c in corpora:
        root = Path(c)
        if folder_kind(root) != "corpus":
            raise MomuError(f"{root} is a DwM folder, not a music corpus folder; pass it with --data")
        tr_rows, va_rows = _corpus_split(root, cfg)
        jobs += [("train", Path(r["file"]).stem, r["source"], root / r["file"], cfg.corpus_seconds, "middle") for r in tr_rows]
        jobs += [("corpus_val", Path(r["file"]).stem, r["source"], root / r["file"], cfg.val_seconds, "middle") for r in va_rows]
    seen: dict[str, Path] = {}
    for split, name, _, path, _, _ in jobs:
        key = f"{split}/{name}"
        if key in seen:
            raise MomuError(f"two tracks would both be stored as {key} ({seen[key]} and {path}); rename one corpus file")
        seen[key] = path
    groups: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}, "corpus_val": {}}
    tracks, skipped, nbytes = {}, {}, 0
    for split, name, source, path, secs, where in tqdm(jobs, desc="pack audio", disable=not progress):
        wav, _ = load_audio(path, SAMPLE_RATE)  # (T,)
        if where == "offset":
            a = min(int(cfg.offset_s * SAMPLE_RATE), max(0, len(wav) - int(secs * SAMPLE_RATE)))
            wav = wav[a : a + int(secs * SAMPLE_RATE)]  # (<= secs * sr,)
        else:
            wav = active_excerpt(wav, secs)  # (<= secs * sr,) or None
            if wav is None:
                skipped[f"{split}/{name}"] = f"{path}: no {secs:g} s excerpt without silence"
                continue
        groups[split][name] = wav
        tracks[f"{split}/{name}"] = {"source": source, "seconds": round(len(wav) / SAMPLE_RATE, 3), "origin": str(path)}
        nbytes += 2 * len(wav)
        if cfg.max_mib > 0 and nbytes > cfg.max_mib * 2**20:
            raise MomuError(f"the pack would exceed {cfg.max_mib:g} MiB ({nbytes / 2**20:.1f} MiB after "
                            f"{len(tracks)} of {len(jobs)} tracks); lower --corpus-seconds / --corpus-tracks / "
                            "--seconds-per-dance, or raise --pack-max-mib")
    manifest = {"format": 1, "sample_rate": SAMPLE_RATE, "pack": asdict(cfg),
                "dwm": str(dwm) if dwm is not None else None, "corpora": [str(c) for c in corpora], "tracks": tracks,
                "skipped": skipped}
    extra = {"corpus_val": groups["corpus_val"]} if groups["corpus_val"] else None
    return pack_audio(out, groups["train"], groups["val"], extra, manifest)


def pack_dwm_audio(root: str | Path, out: str | Path, seconds_per_dance: float = 28.0, val_seconds: float = 10.0,
                   offset_s: float = 8.0, progress: bool = True) -> Path:
    """A compact audio pack from a DwM folder: ``seconds_per_dance`` of each training dance (from ``offset_s``),
    ``val_seconds`` of each validation dance."""
    cfg = PackConfig(seconds_per_dance=seconds_per_dance, val_seconds=val_seconds, offset_s=offset_s)
    return pack_training_audio(out, dwm=root, cfg=cfg, progress=progress)


def pack_manifest(pack: str | Path) -> dict | None:
    """The manifest of an audio pack (None for packs written before manifests existed)."""
    with np.load(pack) as z:
        if PACK_MANIFEST not in z.files:
            return None
        return json.loads(z[PACK_MANIFEST].tobytes().decode())


def pack_sources(pack: str | Path) -> dict:
    """Which audio a pack holds: {split: {source: {"tracks": n, "hours": h, "names": [...]}}} (source "unknown"
    for packs without a manifest)."""
    man = pack_manifest(pack)
    if man is None:
        with np.load(pack) as z:
            tracks = {k: {"source": "unknown", "seconds": z[k].shape[0] / SAMPLE_RATE} for k in z.files if "/" in k}
    else:
        tracks = man["tracks"]
    out: dict = {}
    for key, t in sorted(tracks.items()):
        split, name = key.split("/", 1)
        s = out.setdefault(split, {}).setdefault(t["source"], {"tracks": 0, "seconds": 0.0, "names": []})
        s["tracks"] += 1
        s["seconds"] += t["seconds"]
        s["names"].append(name)
    for by in out.values():
        for s in by.values():
            s["hours"] = round(s.pop("seconds") / 3600, 5)
    return out


def load_pack_group(pack: str | Path, group: str) -> dict[str, np.ndarray]:
    """{name: float32 waveform} of one group (``train``, ``val``, ``corpus_val``) of an audio pack."""
    with np.load(pack) as z:
        return {k.split("/", 1)[1]: z[k].astype(np.float32) / 32767 for k in sorted(z.files) if k.startswith(group + "/")}


def data_sources(data: str | Path) -> dict:
    """``pack_sources`` of an audio pack, or the DwM split of a DwM folder (for the checkpoint JSON)."""
    p = Path(data)
    if p.is_file():
        return pack_sources(p)
    from momu_live.models.datasets import dwm_ids, split_dwm

    tr, va = split_dwm(dwm_ids(p))
    return {"train": {"dwm": {"tracks": len(tr), "names": tr}}, "val": {"dwm": {"tracks": len(va), "names": va}}}


def load_audio_sets(data: str | Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train waveforms, validation waveforms) float32 from an audio pack or a DwM folder (``corpus_val/`` is
    not part of either; see ``load_pack_group``)."""
    p = Path(data)
    if not p.exists():
        raise MomuError(f"training data {p} not found; give an audio pack (.npz) or a DwM-format folder")
    if p.is_file():
        try:
            z = np.load(p)
        except (OSError, ValueError) as exc:
            raise MomuError(f"{p} is not an audio pack ({exc})") from None
        tr = [z[k].astype(np.float32) / 32767 for k in sorted(z.files) if k.startswith("train/")]
        va = [z[k].astype(np.float32) / 32767 for k in sorted(z.files) if k.startswith("val/")]
    else:
        from momu_live.models.audio import load_audio
        from momu_live.models.datasets import dwm_ids, split_dwm

        if folder_kind(p) == "corpus":
            raise MomuError(f"{p} is a music corpus folder; pack it first (`momu train vocoder --make-pack OUT.npz "
                            f"--corpus {p} [--data DWM]`) and train on the pack")
        tr_ids, va_ids = split_dwm(dwm_ids(p))
        tr = [load_audio(p / i / "audio.flac", SAMPLE_RATE)[0] for i in tr_ids]
        va = [load_audio(p / i / "audio.flac", SAMPLE_RATE)[0] for i in va_ids]
    if not tr:
        raise MomuError(f"{p} holds no training audio")
    return tr, va


def random_gain(x: torch.Tensor, gain_min: float, gen: torch.Generator) -> torch.Tensor:
    """Crops (B, n) peak-normalised to a random level in [gain_min, 1] (never clipped), amplified at most 10x."""
    gain = gain_min + (1 - gain_min) * torch.rand(x.shape[0], 1, generator=gen).to(x.device)
    peak = x.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    return x * torch.minimum(gain / peak, torch.full_like(peak, 10.0))


# ------------------------------------------------------------------------------------------------
# losses


STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


def _mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device)
    s = torch.stft(x, n_fft, hop, window=win, return_complex=True)  # (B, bins, frames)
    return s.abs().clamp(min=1e-7)


def mr_stft_loss(pred: torch.Tensor, target: torch.Tensor, resolutions=STFT_RESOLUTIONS) -> torch.Tensor:
    """Multi-resolution STFT loss (Parallel WaveGAN eq. 4-6): mean over resolutions of
    ||S_t - S_p||_F / ||S_t||_F + mean |log S_t - log S_p|."""
    total = pred.new_zeros(())
    for n_fft, hop in resolutions:
        p, t = _mag(pred, n_fft, hop), _mag(target, n_fft, hop)
        sc = torch.linalg.norm(t - p, dim=(-2, -1)) / torch.linalg.norm(t, dim=(-2, -1)).clamp(min=1e-5)
        total = total + sc.mean() + (t.log() - p.log()).abs().mean()
    return total / len(resolutions)


def mel_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from momu_live.models.audio import log_mel

    return (log_mel(pred) - log_mel(target)).abs().mean()


# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, val: list[np.ndarray], device, max_seconds: float = 10.0) -> dict:
    """Validation log-mel L1 and MR-STFT distance of the whole-mode output on each validation clip."""
    from momu_live.models.audio import log_mel

    model.eval()
    mels, stfts = [], []
    for w in val:
        x = torch.from_numpy(w[: int(max_seconds * SAMPLE_RATE)]).to(device)[None]  # (1, n)
        n = (x.shape[-1] // 256) * 256
        x = x[:, :n]
        y = model(log_mel(x))  # (1, n)
        mels.append(float((log_mel(y) - log_mel(x)).abs().mean()))
        stfts.append(float(mr_stft_loss(y, x)))
    model.train()
    return {"val_mel_l1": float(np.mean(mels)) if mels else float("nan"), "val_mr_stft": float(np.mean(stfts)) if stfts else float("nan")}


def train(data: str | Path, out: str | Path, cfg: TrainConfig, resume: bool = False, progress: bool = True,
          init: str | Path | None = None) -> dict:
    """Train (or resume) a FastVocoder; returns the last validation log entry."""
    from momu_live.models.audio import log_mel
    from momu_live.models.builders import build_vocoder_fast
    from momu_live.models.checkpoint import load_checkpoint, save_checkpoint

    if cfg.size not in SIZES:
        raise MomuError(f"unknown vocoder size {cfg.size!r}; choose one of {sorted(SIZES)}")
    h = Trainer(cfg, out, "vocoder", cfg.device, resume, progress, desc="train vocoder", weights="vocoder_fast")
    out, device = h.out, h.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tr, va = load_audio_sets(data)
    corpus_va = list(load_pack_group(data, "corpus_val").values()) if Path(data).is_file() else []
    sources = data_sources(data)
    model = h.module("model", build_vocoder_fast(cfg.size).to(device))
    if init and h.saved is None:
        m0, _ = load_checkpoint(init, FAMILY_FAST, build_vocoder_fast)
        model.load_state_dict(m0.state_dict())
    h.optimizer("model", model)
    net = h.wrap(model)
    sampler = h.sampler([(w,) for w in tr], cfg.segment * 256, what="training clip", unit="samples", hint="--segment")

    def loss(batch, ctx):
        x = random_gain(batch[0], cfg.gain_min, ctx.gen)  # (B, n)
        with torch.no_grad():
            mel = log_mel(x)  # (B, 80, F)
        y = net(mel)  # (B, n)
        l_mel = (log_mel(y) - mel).abs().mean()
        l_stft = mr_stft_loss(y, x)
        return cfg.mel_weight * l_mel + cfg.stft_weight * l_stft, {"mel_l1": l_mel.item(), "mr_stft": l_stft.item()}

    def validate(step: int, final: bool) -> dict:
        entry = evaluate(model, va, device)
        if corpus_va:
            entry.update({f"corpus_{k}": v for k, v in evaluate(model, corpus_va, device).items()})
        return entry

    def export(step: int, entry: dict | None, is_best: bool) -> None:
        meta = {"step": step, "train": asdict(cfg), "data": str(data), "data_sources": sources, "val": entry or {}}
        save_checkpoint(out / "vocoder_fast", model, model.cfg, FAMILY_FAST, meta)

    return h.fit(sampler, loss, validate, export) or {}


def evaluate_checkpoint(ckpt: str | Path, data: str | Path, device: str = "cpu") -> dict:
    """``evaluate`` of a vocoder_fast checkpoint on every validation group of ``data``: ``val`` (DwM validation
    dances) and, for packs with a corpus, ``corpus_val`` overall and per corpus source."""
    from momu_live.models.builders import build_vocoder_fast
    from momu_live.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt, FAMILY_FAST, build_vocoder_fast)
    model = model.float().to(device)
    _, va = load_audio_sets(data)
    res: dict = {"checkpoint": str(ckpt), "val": {"clips": len(va), **evaluate(model, va, device)}}
    if Path(data).is_file():
        cva = load_pack_group(data, "corpus_val")
        if cva:
            res["corpus_val"] = {"clips": len(cva), **evaluate(model, list(cva.values()), device)}
            man = pack_manifest(data) or {"tracks": {}}
            by: dict[str, list[np.ndarray]] = {}
            for name, w in cva.items():
                by.setdefault(man["tracks"].get(f"corpus_val/{name}", {}).get("source", "unknown"), []).append(w)
            for src, ws in sorted(by.items()):
                res[f"corpus_val[{src}]"] = {"clips": len(ws), **evaluate(model, ws, device)}
    return res


def export_weights(src: str | Path, dst: str | Path | None = None, note: str = "") -> Path:
    """Copy a trained checkpoint to the shipped location (models/weights/vocoder_fast) with fp16 storage
    (half the size; ``load_fast`` loads it back as float32)."""
    from momu_live.models.builders import build_vocoder_fast
    from momu_live.models.checkpoint import load_checkpoint, save_checkpoint
    from momu_live.models.vocoder import FAST_WEIGHTS

    model, doc = load_checkpoint(src, FAMILY_FAST, build_vocoder_fast)
    meta = dict(doc.get("meta", {}), dtype="float16 storage (loaded as float32)", exported_from=str(src))
    if note:
        meta["trained_on"] = note
    return save_checkpoint(dst or FAST_WEIGHTS, model.half(), model.cfg, FAMILY_FAST, meta)
