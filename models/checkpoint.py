"""Checkpoints: safetensors weights + a JSON file with the config and metadata.

``save_checkpoint(path, model, config, meta)`` writes ``path.safetensors`` and ``path.json``.
``load_checkpoint(path, build)`` reads the JSON, builds the model from the config with ``build``
and loads the weights strictly; any problem (missing file, corrupt file, shape/key mismatch,
wrong family) raises MomuError naming the file and what to do.  No pickle anywhere.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import torch

from momu_live import MomuError

FORMAT_VERSION = 1


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def config_from_dict(cls: type, d: dict):
    """Build dataclass ``cls`` from ``d``; unknown keys are an error (they mean a version mismatch)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise MomuError(f"config has keys {sorted(unknown)} unknown to {cls.__name__}; the checkpoint is from another version")
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v = d[f.name]
            kw[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
    return cls(**kw)


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: Any, family: str, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    wpath, jpath = _paths(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(wpath), metadata={"family": family, "format": str(FORMAT_VERSION)})
    doc = {"family": family, "format": FORMAT_VERSION, "config": config_to_dict(config), "meta": meta or {}}
    jpath.write_text(json.dumps(doc, indent=1, default=str))
    return wpath


def read_checkpoint_json(path: str | Path, family: str | None = None) -> dict:
    wpath, jpath = _paths(path)
    if not jpath.exists():
        raise MomuError(f"checkpoint config {jpath} not found (a checkpoint is NAME.safetensors + NAME.json)")
    try:
        doc = json.loads(jpath.read_text())
    except json.JSONDecodeError as exc:
        raise MomuError(f"checkpoint config {jpath} is not valid JSON ({exc}); re-export or re-download it") from None
    if family is not None and doc.get("family") != family:
        raise MomuError(f"{jpath} holds a '{doc.get('family')}' checkpoint, expected '{family}'")
    return doc


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath, _ = _paths(path)
    if not wpath.exists():
        raise MomuError(f"weights file {wpath} not found")
    try:
        return load_file(str(wpath))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MomuError(f"weights file {wpath} is corrupt or not safetensors ({exc}); re-download or retrain") from None


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str = "checkpoint") -> torch.nn.Module:
    """Strict load with a readable error listing missing/unexpected/mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if shape:
            parts.append("shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:3]))
        raise MomuError(f"{where} does not match the model config: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(path: str | Path, family: str, build: Callable[[dict], torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """Build from the JSON config with ``build(config_dict)`` and load weights strictly."""
    doc = read_checkpoint_json(path, family)
    model = build(doc["config"])
    load_into(model, load_state(path), where=str(_paths(path)[0]))
    model.eval()
    return model, doc


def init_from(model: torch.nn.Module, path: str | Path, new: tuple[str, ...] = ()) -> list[str]:
    """Initialise ``model`` from a checkpoint of an earlier config (fine-tuning): every tensor of the checkpoint
    must exist in the model with the same shape, and the model's tensors the checkpoint lacks must all start with
    one of the ``new`` prefixes (modules the new config adds, e.g. the DiT's rhythm control).  Returns the names
    of those new tensors (left at their initialisation).  Not a loader: inference loads strictly (``load_into``)."""
    state = load_state(path)
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    fresh = sorted(set(own) - set(state))
    stray = [k for k in fresh if not k.startswith(tuple(new))] if new else fresh
    if unexpected or shape or stray:
        raise MomuError(f"cannot initialise from {path}: unexpected {unexpected[:3]}, shape mismatch {shape[:3]}, "
                        f"missing {stray[:3]} (only modules named {list(new)} may be new)")
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in state.items()}}, strict=True)
    return fresh
