"""Where engine events go: the bridge's preset router (OSC grammar per target, MIDI beats + clock, audio device).

``make_output`` builds ``momu_live.bridge.router.Router.from_preset`` (docs/OSC.md is the grammar:
``/momu/pose/frame``, ``/momu/gen/pose/frame``, ``/momu/beat``, ``/momu/status`` ...); ``Outputs`` fans
events out to several sinks, counting (never propagating) a sink's failure.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Outputs:
    """Fan-out to several sinks; a failing sink is counted and never stops the others."""

    def __init__(self, sinks: list):
        self.sinks = sinks
        self.errors = 0

    def emit(self, ev) -> None:
        for s in self.sinks:
            try:
                s.emit(ev)
            except Exception as exc:
                self.errors += 1
                log.debug("sink %s failed on %s: %r", type(s).__name__, type(ev).__name__, exc)

    def close(self) -> None:
        for s in self.sinks:
            try:
                s.close()
            except Exception as exc:
                log.warning("closing %s: %r", type(s).__name__, exc)


def make_output(preset: str | None, host: str, port: int | None, extra: dict | None = None):
    """The bridge router for ``preset`` (None: the generic grammar) with OSC to ``host:port``.

    ``port=None`` keeps the preset's own port (TouchDesigner 7000, Blender 9100, ...).

    ``extra``: more router overrides (``midi_port``, ``audio_device``, ``sample_rate`` ...).
    """
    from momu_live.bridge.router import Router

    return Router.from_preset(preset or "generic", {"osc_host": host, "osc_port": None if port is None else int(port), **(extra or {})})
