"""Inference objects from shipped weights (no training code here).

``load_pipeline(weights_dir=None, device="cpu", vocoder="fast")`` composes the BiCoR-VAE
(``vae.safetensors``), the motion codec the DiT was trained on (its JSON's ``meta.motion_kind``: "rig" = the
rig motion VAE ``motion_vae.safetensors``, models/motion_codec.RigCodec; else the BiCoR-VAE's motion half), the
rhythm head when there is one (``rhythm_head.safetensors``, models/rhythm_head.py: the dancer grid's phase), the
diffusion transformer (``dit.safetensors``) and a vocoder
(models/vocoder.py ``load_vocoder``) into a models/generation.Pipeline.  ``weights_dir`` defaults to
models/weights/.  Every file is loaded strictly (models/checkpoint.py); a missing file raises
MomuError naming it and the command that creates it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from momu_live import MomuError
from momu_live.models.checkpoint import read_checkpoint_json

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
log = logging.getLogger(__name__)


def load_dit(path=None, device: str | torch.device = "cpu"):
    """The diffusion transformer (default ``models/weights/dit``), strict load, eval mode."""
    from momu_live.models.builders import build_dit
    from momu_live.models.checkpoint import load_checkpoint

    p = Path(path) if path else WEIGHTS_DIR / "dit"
    if p.is_dir():
        p = p / "dit"
    if not p.with_suffix(".json").exists():
        raise MomuError(f"diffusion weights {p}.safetensors/.json not found; train them with `momu train diffusion` "
                        "or pass --weights DIR holding dit.safetensors + dit.json")
    model, _ = load_checkpoint(p, "dit", build_dit)
    return model.to(device).eval()


WEIGHT_FILES = ("vae", "dit", "motion_vae", "rhythm_head")  # NAME.safetensors + NAME.json in a weights folder


def check_weights_dir(weights, flag: str = "--weights") -> None:
    """A weights folder must hold at least one complete model (NAME.safetensors + NAME.json) and no half one.

    Models it lacks come from the shipped weights (a DiT trained on the shipped VAE's latents is a
    complete folder); an empty or unrelated folder is an error naming ``flag``, never a silent fallback.
    """
    if weights is None:
        return
    wd = Path(weights)
    if not wd.is_dir():
        raise MomuError(f"{flag} {wd} is not a folder; pass the folder `momu train diffusion --out` wrote, "
                        f"or leave out {flag} for the shipped weights")
    found = []
    for name in WEIGHT_FILES:
        have = [wd / f"{name}{ext}" for ext in (".safetensors", ".json") if (wd / f"{name}{ext}").exists()]
        if len(have) == 1:
            other = have[0].with_suffix(".json" if have[0].suffix == ".safetensors" else ".safetensors")
            raise MomuError(f"{flag} {wd}: {have[0].name} is there but {other.name} is missing; a model is "
                            f"{name}.safetensors + {name}.json: copy both from where it was trained")
        if have:
            found.append(name)
    if not found:
        want = ", ".join(f"{n}.safetensors + {n}.json" for n in WEIGHT_FILES)
        raise MomuError(f"{flag} {wd} holds no model files (missing {want}); train them with "
                        "`momu train diffusion --out DIR` (and `momu train vae --out DIR`), "
                        f"or leave out {flag} for the shipped weights")


def load_pipeline(weights_dir=None, device: str | torch.device = "cpu", vocoder: str | None = "fast",
                  flag: str = "--weights"):
    """VAE + DiT + vocoder from ``weights_dir`` (files missing there are taken from models/weights/).

    ``weights_dir`` is checked first (``check_weights_dir``): an empty or half-filled folder is an error
    that names ``flag`` (the CLI option the user gave it with)."""
    from momu_live.models.generation import Pipeline
    from momu_live.models.vae import load_bicor_vae

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MomuError("--device cuda asked but CUDA is not available here; use --device cpu")
    check_weights_dir(weights_dir, flag)
    wd = Path(weights_dir) if weights_dir else WEIGHTS_DIR

    def pick(name: str) -> Path:
        p = wd / name
        return p if p.with_suffix(".json").exists() else WEIGHTS_DIR / name

    vae_path = pick("vae").with_suffix(".safetensors")
    vae = load_bicor_vae(vae_path, dev)
    dit = load_dit(pick("dit"), dev)
    _check_pair(pick("dit"), vae_path)
    motion = None
    dit_meta = read_checkpoint_json(pick("dit"), "dit").get("meta", {})
    if dit_meta.get("motion_kind") == "rig":
        from momu_live.models.motion_codec import RigCodec
        from momu_live.models.rig_vae import load_rig_vae

        mpath = pick("motion_vae")
        if not mpath.with_suffix(".json").exists():
            raise MomuError(f"{pick('dit')} was trained on rig motion latents but there is no motion_vae.safetensors + "
                            f".json beside it; copy the rig VAE it was trained with (momu train rig-vae) there")
        motion = RigCodec(load_rig_vae(mpath, dev))
        _check_pair(pick("dit"), mpath.with_suffix(".safetensors"), "motion_vae_sha256")
    voc = None
    if vocoder:
        from momu_live.models.vocoder import load_vocoder

        try:
            voc = load_vocoder(vocoder, dev)
        except MomuError as exc:
            if vocoder != "fast":
                raise
            log.warning("fast vocoder unavailable (%s); falling back to Griffin-Lim (audible phase artefacts)", exc)
            voc = load_vocoder("griffinlim", dev)
    head = None
    hpath = pick("rhythm_head")
    if hpath.with_suffix(".json").exists():
        from momu_live.models.rhythm_head import load_rhythm_head

        head = load_rhythm_head(hpath, dev)
        kind = (motion.kind if motion is not None else "position")
        same = head.meta.get("motion_kind", "position") == kind and (
            kind != "rig" or head.meta.get("motion_vae_sha256", "") == dit_meta.get("motion_vae_sha256", ""))
        if not same:  # trained on other motion latents (e.g. the shipped head beside a user's DiT): the kinematic rule
            (log.warning if hpath.parent == wd else log.debug)(
                "%s was trained on other motion latents than %s (%s vs %s): the dancer grid's phase comes from the "
                "kinematic rule", hpath, pick("dit"), head.meta.get("motion_kind"), kind)
            head = None
    return Pipeline(vae, dit, voc, dev, motion=motion, rhythm_head=head)


def _check_pair(dit_path: Path, vae_path: Path, key: str = "vae_sha256") -> None:
    """Warn when the DiT was trained on latents of another VAE file (its JSON records the VAE's SHA-256)."""
    import hashlib

    want = read_checkpoint_json(dit_path, "dit").get("meta", {}).get(key)
    if want and vae_path.exists():
        have = hashlib.sha256(vae_path.read_bytes()).hexdigest()
        if have != want:
            log.warning("%s was trained on latents of another VAE (sha256 %s..., loaded %s...); retrain it with "
                        "`momu train diffusion` for best results", dit_path, want[:12], have[:12])
