"""Output presets: JSON files in ``presets/`` (installed as ``momu_live.presets``), validated on load.

Schema (every key but ``name`` and ``targets`` optional)::

    {
      "name": "touchdesigner",
      "description": "one line",
      "targets": [                       # OSC destinations, each with one grammar style
        {"name": "td", "host": "127.0.0.1", "port": 7000, "style": "joints",
         "events": ["pose", "gen", "beat", "status", "audio"], "bundle": true, "max_bytes": "auto",
         "primary": true, "tempo_tolerance": 0.5, "start_on_first_beat": false, "rotations": false}
      ],
      "midi": {"enabled": false, "port": "momu", "virtual": true, "clock": true,
               "notes": {"note": 36, "channel": 9, "velocity": 100, "duration_s": 0.05}},
      "listen": {"enabled": false, "host": "127.0.0.1", "port": 11001},
      "files": ["momu_receiver.pd"],      # receiver scripts/patches shipped beside the JSON
      "setup": ["step 1", "step 2"]        # how to set up the receiving program
    }

``events`` names: ``pose`` (captured poses), ``gen`` (generated poses), ``beat``, ``status``, ``audio``
(level messages), ``transport``.  ``rotations`` (default false): also send ``/momu/pose/rot`` (joint
quaternions, docs/OSC.md) beside every pose frame; on in ``generic`` and ``blender`` (a rig follows
rotations; one more array message per frame), off where message volume or the receiving patch matters
(``touchdesigner``: float-only channels; ``puredata``; ``ableton``'s stream beside the DAW).
``max_bytes`` bounds each datagram: ``"auto"`` (default) is 8192 for
a loopback destination (a whole frame in one datagram) and 1472 (one Ethernet MTU) for any other,
decided after ``--osc-host`` (``bridge.transport.resolve_max_bytes``); a number 64-65507 is used as given.
The *primary* target (``"primary": true``, else the first) is the one ``--osc-host/--osc-port`` override.
"""
from __future__ import annotations

import json
from pathlib import Path

from momu_live import MomuError
from momu_live.bridge.grammar import STYLES

EVENT_KINDS = ("pose", "gen", "beat", "status", "audio", "transport")
_TARGET_KEYS = {"name", "host", "port", "style", "events", "bundle", "max_bytes", "primary", "tempo_tolerance",
                "start_on_first_beat", "prefix", "names_every_s", "rotations"}
_TOP_KEYS = {"name", "description", "targets", "midi", "listen", "files", "setup"}


def presets_dir() -> Path:
    import momu_live.presets as pkg

    return Path(pkg.__file__).resolve().parent


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.json"))


def preset_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return p
    q = presets_dir() / f"{name_or_path}.json"
    if q.exists():
        return q
    raise MomuError(f"unknown preset {str(name_or_path)!r}; presets: {', '.join(list_presets())} (or a .json path)")


def validate_preset(d: dict, where: str = "preset") -> dict:
    """Check a preset dict against the schema above; returns it with defaults filled in."""
    if not isinstance(d, dict):
        raise MomuError(f"{where}: a preset must be a JSON object")
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise MomuError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    if not isinstance(d.get("name"), str):
        raise MomuError(f"{where}: 'name' (a string) is required")
    targets = d.get("targets")
    if not isinstance(targets, list):
        raise MomuError(f"{where}: 'targets' must be a list of OSC targets")
    out = dict(d)
    out["targets"] = []
    for i, t in enumerate(targets):
        w = f"{where}: targets[{i}]"
        if not isinstance(t, dict):
            raise MomuError(f"{w} must be an object")
        bad = set(t) - _TARGET_KEYS
        if bad:
            raise MomuError(f"{w}: unknown keys {sorted(bad)}; allowed: {sorted(_TARGET_KEYS)}")
        t = {"name": f"target{i}", "host": "127.0.0.1", "style": "generic", "events": list(EVENT_KINDS[:5]),
             "bundle": True, "max_bytes": "auto", "primary": False, "tempo_tolerance": 0.5,
             "start_on_first_beat": False, "prefix": "/momu", "names_every_s": 5.0, "rotations": False, **t}
        if not isinstance(t.get("port"), int) or not (0 < t["port"] < 65536):
            raise MomuError(f"{w}: 'port' must be an integer 1-65535")
        if t["style"] not in STYLES:
            raise MomuError(f"{w}: style {t['style']!r} is not one of {', '.join(STYLES)}")
        ev = set(t["events"]) - set(EVENT_KINDS)
        if ev:
            raise MomuError(f"{w}: unknown events {sorted(ev)}; allowed: {', '.join(EVENT_KINDS)}")
        if not isinstance(t["rotations"], bool):
            raise MomuError(f"{w}: 'rotations' must be true or false, got {t['rotations']!r}")
        mb = t["max_bytes"]
        if mb != "auto" and (isinstance(mb, bool) or not isinstance(mb, int) or not (64 <= mb <= 65507)):
            raise MomuError(f"{w}: max_bytes must be \"auto\" or an integer 64-65507, got {mb!r}")
        out["targets"].append(t)
    midi = {"enabled": False, "port": "momu", "virtual": True, "clock": True, "notes": {}, **(d.get("midi") or {})}
    out["midi"] = midi
    out["listen"] = {"enabled": False, "host": "127.0.0.1", "port": 0, **(d.get("listen") or {})}
    for f in d.get("files", []):
        if not (presets_dir() / f).exists():
            raise MomuError(f"{where}: file {f!r} is not shipped in {presets_dir()}")
    return out


def load_preset(name_or_path: str | Path) -> dict:
    """A preset by name (``momu presets``) or path to a JSON file, validated."""
    p = preset_path(name_or_path)
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise MomuError(f"preset {p}: invalid JSON ({exc})") from None
    return validate_preset(d, str(p))
