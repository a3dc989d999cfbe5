"""What the live engine and its back-ends exchange: the analysis window in, the hop's output back.

``LiveWindow`` is built by name (keyword-only); ``Backend`` is the protocol every back-end (the model
in ``model_backend.py``, the pass-throughs in ``backend.py``) implements.  This module imports nothing
of the engine or of any back-end, so there is no import loop between them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from momu_live.models.timebase import DEFAULT_TIMEBASE

@dataclass(kw_only=True)
class LiveWindow:
    index: int
    t_start: float  # seconds (stream time)
    t_end: float
    hop_start: float  # the new part of this window: [hop_start, t_end)
    pose_times: np.ndarray  # (T,)
    poses: np.ndarray  # (T, J, 3) float32
    pose_confidence: np.ndarray  # (T, J)
    pose_valid: np.ndarray  # (T,) bool
    audio: np.ndarray  # (N,) float32, input audio of [t_start, t_end) (empty when none)
    sample_rate: int
    bpm: float  # tracked tempo (0: unknown)
    beat_time: float | None  # time of a tracked beat (phase anchor), None when unknown
    beat_index: int = 0  # index of that beat (downbeat when index % meter == 0)
    meter: int = 4
    controls: dict = field(default_factory=dict)  # live control values (e.g. "/momu/engine/set/steps": 4)


@dataclass
class BackendOutput:
    audio: np.ndarray | None = None  # (N,) float32 starting at ``audio_time``
    audio_time: float = 0.0
    pose_times: np.ndarray | None = None  # (K,)
    poses: np.ndarray | None = None  # (K, J, 3)
    beats: list = field(default_factory=list)  # [(index, time, bpm, downbeat)]
    decode_ms: float = 0.0  # part of the step spent decoding (vocoder / motion decoder)


@dataclass(frozen=True)
class BackendInfo:
    name: str
    mode: str
    label: str  # shown in the status heartbeat
    passthrough: bool
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    pose_rate: float = 0.0  # generated pose frames per second (0: none)
    steps: int = 0  # sampler steps per window as configured (0: not a sampler; the scheduler's load ladder uses it)


class Backend(Protocol):
    info: BackendInfo

    def init_state(self) -> Any: ...

    def step(self, window: LiveWindow, state: Any) -> tuple[BackendOutput, Any]: ...


