"""Paired motion/music datasets and windowing.

``load_dwm`` reads the shared Dance-with-Melody format (``<root>/<dance_id>/{motion.npy,audio.flac,meta.json}``,
``index.csv``, ``skeleton.json``); see that folder's README.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momu_live import MomuError

# Dances that share bit-identical motion stretches (DwM README): keep each group on one side of a split.
DWM_SHARED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("DANCE_W_1", "DANCE_W_3", "DANCE_W_6", "DANCE_W_11", "DANCE_W_21", "DANCE_W_26", "DANCE_W_27",
     "DANCE_W_30", "DANCE_W_31", "DANCE_W_32", "DANCE_W_33"),
    ("DANCE_W_15", "DANCE_W_17", "DANCE_W_25", "DANCE_W_28", "DANCE_W_5"),
    ("DANCE_W_10", "DANCE_W_14", "DANCE_W_7"),
    ("DANCE_W_20", "DANCE_W_8"),
)
# Fixed validation dances (documented in README): one shared-motion-free waltz group member set,
# plus one rumba and one cha-cha with medium/high alignment confidence.
DWM_VALIDATION: tuple[str, ...] = ("DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6")


@dataclass
class DancePair:
    name: str
    motion: "Motion"  # noqa: F821  (momu_live.models.motion.Motion)
    wav: np.ndarray  # (N,) float32
    sample_rate: int
    genre: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate


def dwm_ids(root: str | Path) -> list[str]:
    root = Path(root)
    index = root / "index.csv"
    if not index.exists():
        raise MomuError(f"{root} is not a DwM-format folder: index.csv missing (see ../shared/data/dwm/README.md)")
    with open(index) as f:
        return [row["dance_id"] for row in csv.DictReader(f)]


def load_dwm(root: str | Path, ids: list[str] | None = None, sample_rate: int = 22050, canonical: bool = True) -> list[DancePair]:
    """Load DwM-format dances; motion mapped to the canonical skeleton when ``canonical``."""
    from momu_live.models.audio import load_audio
    from momu_live.models.motion import Motion

    root = Path(root)
    ids = ids or dwm_ids(root)
    names = json.loads((root / "skeleton.json").read_text())["joint_names"]
    out = []
    for did in ids:
        d = root / did
        meta = json.loads((d / "meta.json").read_text())
        joints = np.load(d / "motion.npy").astype(np.float32)  # (T, 23, 3)
        motion = Motion(joints=joints, fps=float(meta["fps"]), joint_names=tuple(names), meta={"source": "dwm", "id": did})
        if canonical:
            from momu_live.models.skeleton import to_canonical

            motion = to_canonical(motion)
        wav, sr = load_audio(d / "audio.flac", sample_rate)
        out.append(DancePair(did, motion, wav, sr, meta.get("genre", ""), meta))
    return out


def split_dwm(ids: list[str], validation: tuple[str, ...] = DWM_VALIDATION) -> tuple[list[str], list[str]]:
    """Train/validation split by dance, keeping shared-motion groups on one side."""
    val = set(validation)
    for group in DWM_SHARED_GROUPS:
        if val & set(group) and not set(group) <= val:
            raise MomuError(f"validation set splits shared-motion group {group}; include the whole group or none")
    return [i for i in ids if i not in val], [i for i in ids if i in val]
