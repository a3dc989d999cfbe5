"""Where engine events go: the bridge's preset router (OSC grammar per target, MIDI beats + clock, audio device).

``make_output`` builds ``momu_live.bridge.router.Router.from_preset`` (docs/OSC.md is the grammar:
``/momu/pose/frame``, ``/momu/gen/pose/frame``, ``/momu/beat``, ``/momu/status`` ...).  The router is the
one fan-out: more ``Sink``s (e.g. the console status printer) go in ``sinks``.
"""
from __future__ import annotations


def make_output(preset: str | None, host: str, port: int | None, extra: dict | None = None, sinks=()):
    """The bridge router for ``preset`` (None: the generic grammar) with OSC to ``host:port``.

    ``port=None`` keeps the preset's own port (TouchDesigner 7000, Blender 9100, ...).
    ``extra``: more router overrides (``midi_port``, ``audio_device``, ``sample_rate`` ...);
    ``sinks``: more ``Sink``s fed by the same router thread.
    """
    from momu_live.bridge.router import Router

    return Router.from_preset(preset or "generic", {"osc_host": host, "osc_port": None if port is None else int(port),
                                                    **(extra or {})}, sinks=sinks)
