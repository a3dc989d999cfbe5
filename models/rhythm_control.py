"""Rhythm control: a beat grid as per-latent-frame conditioning features of the DiT (beyond MoMu-Diffusion).

The paper's DiT sees only the other modality's latents.  Trained on 30 dances, that carries almost nothing of
the tempo (docs/MODEL_CARD.md, outside-the-loop table).  A rhythm control tells the network where the beats
and bars are, per latent frame, so the tempo and the beat phase come from the model itself rather than from
guidance at sampling time (models/guidance.py):

| channel | what |
|---|---|
| 0, 1 | sin, cos of 2 pi x beat phase |
| 2, 3 | sin, cos of 2 pi x bar phase (beat phase / beats per bar; the grid's first beat is a downbeat) |
| 4 | log2(tempo / 120 BPM) |
| 5 | 1 for triple metre (3 beats per bar), else 0 |

Phases are taken at the centre of each latent frame: frame i covers [i, i + 1) / latent_rate s from
``start_s``.  In training the grid is the beat tracker's on the true music (models/beats.py, the dance's genre
as tempo prior); at sampling it is whatever grid the task has: the input music's (music -> motion), the
dancer's (motion -> music, ``guidance.grid_from_motion``), ``--bpm`` or the live beat clock.  The DiT drops
the control with probability ``DiTConfig.rhythm_drop`` in training, so it also generates without one (a
learned null embedding), and CFG leaves the control on in both passes.
"""
from __future__ import annotations

import math

import numpy as np

from momu_live.models.timebase import DEFAULT_TIMEBASE

RHYTHM_DIM = 6
RHYTHM_CHANNELS = ("sin_beat", "cos_beat", "sin_bar", "cos_bar", "log2_tempo_120", "triple")


def rhythm_features(grid, length: int, start_s: float = 0.0, timebase=DEFAULT_TIMEBASE) -> np.ndarray:
    """``BeatGrid`` -> rhythm control (RHYTHM_DIM, length) float32 for latent frames starting at ``start_s`` (s)."""
    lr = float(timebase.latent_rate)
    t = float(start_s) + (np.arange(int(length)) + 0.5) / lr  # (L,) frame centres
    beat = grid.phase(t)  # (L,) beats since the grid's first beat
    bar = beat / float(grid.beats_per_bar)
    out = np.empty((RHYTHM_DIM, len(t)), np.float32)
    out[0], out[1] = np.sin(2 * np.pi * beat), np.cos(2 * np.pi * beat)
    out[2], out[3] = np.sin(2 * np.pi * bar), np.cos(2 * np.pi * bar)
    out[4] = math.log2(grid.bpm / 120.0)
    out[5] = 1.0 if int(grid.beats_per_bar) == 3 else 0.0
    return out
