"""Events the live engine emits and the bridge routes to sinks (OSC, MIDI, audio, recordings).

Plain dataclasses: the engine never builds OSC/MIDI bytes itself; ``momu_live.bridge`` turns events
into messages (pure builders), transports send them, a router picks sinks per preset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class PoseFrame:
    person: int
    frame: int
    time: float  # seconds since the stream started
    joints: np.ndarray  # (J, 3) float32, metres, y up (canonical skeleton unless names differ)
    joint_names: tuple[str, ...] = ()
    confidence: np.ndarray | None = None  # (J,)
    source: str = "capture"  # "capture" (input dancer) or "generated"


@dataclass
class Beat:
    index: int
    time: float  # seconds since the stream started
    bpm: float
    phase: float = 0.0  # position of the beat within the bar, (index mod meter) / meter: 0 on the downbeat
    downbeat: bool = False
    source: str = "motion"  # "motion" (kinematic) | "music" | "generated"
    due_unix: float | None = None  # Unix time (time.time()) the beat falls on, when it is published ahead
    #                                 of time (the OSC bundle timetag, the MIDI note time); None: it is due now


@dataclass
class AudioBlock:
    samples: np.ndarray  # (N,) or (N, C) float32 in [-1, 1]
    sample_rate: int
    time: float  # stream time of the first sample


@dataclass
class Status:
    time: float
    mode: str
    latency_ms: dict = field(default_factory=dict)  # stage -> ms (capture, pose, window, model, decode, send)
    dropped: int = 0
    fps: float = 0.0
    bpm: float = 0.0
    message: str = ""


Event = PoseFrame | Beat | AudioBlock | Status


@runtime_checkable
class Sink(Protocol):
    """Anything events go to: an OSC target, the MIDI beat output, the audio device, a WAV or session
    recording, the console status printer, the router that fans out to all of them.

    ``emit`` must not block for long and should ignore event types it has no use for; ``close``
    flushes and releases what the sink holds (idempotent).
    """

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...
