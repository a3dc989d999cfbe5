"""The one list of engine modes.  Every other module (the OSC grammar, the live engine and its
back-ends, the generation pipeline's tasks, the CLI's ``--mode`` choices) imports it from here.

``Mode`` is a ``str`` enum, so ``Mode.JOINT == "joint"`` and values travel as plain strings (JSON,
OSC).  Each mode also has a stable number (``Mode.number``) for receivers that can only send numbers
(TouchDesigner's OSC Out CHOP): ``/momu/engine/set/mode 2`` selects ``joint``.
"""
from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    MOTION2MUSIC = "motion2music"  # a dancer in, music out
    MUSIC2MOTION = "music2motion"  # music in, a dance out
    JOINT = "joint"  # both generated together (cross-guidance)
    BEATS = "beats"  # no model: tracked beats and a click track

    def __str__(self) -> str:  # f"{mode}" -> "joint"
        return self.value

    @property
    def number(self) -> int:
        """Stable numeric id (0-3) for number-only OSC senders."""
        return list(Mode).index(self)

    @property
    def generates(self) -> bool:
        """True for the modes that run the generation model (a pipeline task)."""
        return self is not Mode.BEATS

    @classmethod
    def parse(cls, value) -> "Mode":
        """A mode from its name (``"joint"``) or number (``2``, ``2.0``); ``ValueError`` names the choices."""
        if isinstance(value, cls):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            i = int(value)
            if i == value and 0 <= i < len(cls):
                return list(cls)[i]
        elif isinstance(value, (str, bytes)):
            s = value.decode() if isinstance(value, bytes) else value
            for m in cls:
                if m.value == s.strip().lower():
                    return m
        choices = ", ".join(f"{m.value} ({m.number})" for m in cls)
        raise ValueError(f"unknown mode {value!r}; one of {choices}")


MODES: tuple[str, ...] = tuple(m.value for m in Mode)  # every mode, as strings (argparse choices)
TASKS: tuple[str, ...] = tuple(m.value for m in Mode if m.generates)  # the generation pipeline's tasks
