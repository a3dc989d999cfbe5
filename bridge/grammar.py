"""The momu OSC grammar: engine events -> ``(address, args)`` lists, control messages -> validated values.

One grammar, ``/momu/<object>/<verb>/<property>``: objects are ``pose``, ``gen`` (generated),
``beat``, ``status``, ``audio``, ``engine``, ``transport``, ``tempo``, ``output``; the verb ``set``
marks control input.  Output streams use ``/momu/<object>[/<property>]``.  The table in docs/OSC.md is
the contract; every row is produced (or parsed) by a function below, and tests check each row.

Output styles (a preset picks one per target):

- ``generic``: one array message per person per frame (``/momu/pose/frame``), beats, status with
  per-stage latency, audio level.  A target with ``"rotations": true`` (presets ``generic`` and
  ``blender``) also gets ``/momu/pose/rot`` (joint quaternions, ``pose_rot_messages``) beside every
  pose frame, in whichever style.
- ``joints``: float-only, one value per message, for TouchDesigner's OSC In CHOP
  (``/momu/pose/<person>/<joint>/tx|ty|tz``, ``/momu/beat/bpm``, ``/momu/status/latency/<stage>`` ...).
- ``nodeosc``: Blender (NodeOSC-style): one ``x y z`` vector per joint per message in Blender's
  z-up frame (``/momu/pose/<person>/<joint>``), plus the generic beat/status messages.
- ``ableton``: AbletonOSC (https://github.com/ideoforms/AbletonOSC): beats -> ``/live/song/set/tempo``;
  transport -> ``/live/song/start_playing`` / ``/live/song/stop_playing``.

All functions are pure: no sockets, no state.  Non-finite coordinates never reach the wire: arrays
carry 0.0 there (and confidence 0 in ``/momu/pose/confidence``); the per-joint styles skip the joint,
so receivers hold the last good value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Status
from momu_live.modes import MODES, Mode

PREFIX = "/momu"
STYLES = ("generic", "joints", "nodeosc", "ableton")

Msg = tuple[str, list]


class GrammarError(ValueError):
    """An unknown control address or an argument of the wrong type/range."""


# --------------------------------------------------------------------------------------------- helpers
def joint_names(frame: PoseFrame) -> tuple[str, ...]:
    """Names for ``frame.joints``: its own names, the canonical 18 names, or ``j0, j1, ...``."""
    j = int(np.asarray(frame.joints).shape[0])
    if frame.joint_names and len(frame.joint_names) == j:
        return tuple(frame.joint_names)
    from momu_live.models.skeleton import CANONICAL_JOINTS

    if j == len(CANONICAL_JOINTS):
        return CANONICAL_JOINTS
    return tuple(f"j{i}" for i in range(j))


def _pose_object(frame: PoseFrame) -> str:
    return "gen/pose" if frame.source == "generated" else "pose"


def to_blender(xyz: np.ndarray) -> np.ndarray:
    """Canonical (y up, dancer faces +z) -> Blender (z up, dancer faces -y): ``(x, y, z) -> (x, -z, y)``."""
    xyz = np.asarray(xyz, np.float32)
    return np.stack([xyz[..., 0], -xyz[..., 2], xyz[..., 1]], axis=-1)  # (..., 3)


def _finite_mask(joints: np.ndarray) -> np.ndarray:
    return np.isfinite(joints).all(axis=-1)  # (J,)


# --------------------------------------------------------------------------------------------- time
INT32_MAX = 2**31 - 1


def time_args(t: float) -> list:
    """Stream time (seconds since start) -> the wire pair ``[i time_s, f time_frac]``.

    A float32 alone loses milliseconds after 4.7 hours (8 ms steps after a day, 62 ms after a week);
    whole seconds as ``i`` (exact also in 32-bit-float hosts such as Pd or a CHOP up to 2**24 s = 194
    days) plus the fraction in [0, 1) as ``f`` (resolution < 0.1 us) keep sub-millisecond resolution for
    months, with tags every OSC host reads (no ``d``/``t``).  Non-finite -> ``[0, 0.0]``; clamped to int32.
    """
    t = float(t)
    if not math.isfinite(t):
        return [0, 0.0]
    sec = math.floor(t)
    frac = float(np.float32(t - sec))
    if frac >= 1.0:  # 0.99999999 rounds to 1.0 in float32: carry
        sec, frac = sec + 1, 0.0
    if not (-INT32_MAX - 1 <= sec <= INT32_MAX):
        return [INT32_MAX, 0.0] if sec > 0 else [-INT32_MAX - 1, 0.0]
    return [int(sec), frac]


def join_time(time_s, time_frac) -> float:
    """The inverse of ``time_args`` for receivers: ``time_s + time_frac`` in float64 seconds."""
    return float(time_s) + float(time_frac)


# --------------------------------------------------------------------------------------------- pose
def pose_frame_messages(frame: PoseFrame, style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """One pose frame -> messages.

    generic: ``<prefix>/pose/frame  i person, i frame, i time_s, f time_frac, f x0 y0 z0 x1 ...`` (one
    message per person per frame; the time pair is ``time_args``) and, when any joint is uncertain or
    non-finite, ``<prefix>/pose/confidence  i person, i frame, f c0 c1 ...``.  Generated poses use
    ``<prefix>/gen/pose/...``.
    joints: ``<prefix>/pose/<person>/<joint>/tx|ty|tz`` (one float each) and ``.../<person>/frame``.
    nodeosc: ``<prefix>/pose/<person>/<joint>  f x y z`` in Blender axes (``to_blender``).
    """
    joints = np.asarray(frame.joints, np.float32)  # (J, 3)
    if joints.ndim != 2 or joints.shape[1] != 3:
        raise GrammarError(f"pose joints must be (J, 3), got {joints.shape}")
    ok = _finite_mask(joints)  # (J,)
    if not ok.any():
        return []  # nothing to show (no person / all NaN)
    obj = f"{prefix}/{_pose_object(frame)}"
    person, index = int(frame.person), int(frame.frame)
    if style in ("generic", "ableton"):
        flat = np.where(ok[:, None], joints, 0.0).astype(np.float32).reshape(-1)  # (J*3,)
        msgs: list[Msg] = [(f"{obj}/frame", [person, index, *time_args(frame.time), *flat.tolist()])]
        conf = None if frame.confidence is None else np.asarray(frame.confidence, np.float32).reshape(-1)
        if conf is not None and conf.shape[0] != joints.shape[0]:
            conf = None
        if not ok.all() or (conf is not None and (conf < 1.0).any()):
            c = np.ones(joints.shape[0], np.float32) if conf is None else np.nan_to_num(conf, nan=0.0)
            c = np.where(ok, c, 0.0).astype(np.float32)  # (J,)
            msgs.append((f"{obj}/confidence", [person, index, *c.tolist()]))
        return msgs
    names = joint_names(frame)
    if style == "joints":
        msgs = [(f"{obj}/{person}/frame", [float(index)])]
        for name, p, good in zip(names, joints.tolist(), ok.tolist()):
            if good:
                msgs += [(f"{obj}/{person}/{name}/tx", [p[0]]), (f"{obj}/{person}/{name}/ty", [p[1]]),
                         (f"{obj}/{person}/{name}/tz", [p[2]])]
        return msgs
    if style == "nodeosc":
        b = to_blender(joints)  # (J, 3)
        return [(f"{obj}/{person}/{name}", p) for name, p, good in zip(names, b.tolist(), ok.tolist()) if good]
    raise GrammarError(f"unknown OSC style {style!r}; one of {', '.join(STYLES)}")


# --------------------------------------------------------------------------------------------- rotations
def has_rotations(frame: PoseFrame) -> bool:
    """Whether ``frame`` can carry ``/momu/pose/rot``: the canonical 18 joints (by count and names), all finite
    and none with confidence 0 (a joint filled with 0.0; a rotation needs its bone's both ends and, for the
    twist, the next bone)."""
    from momu_live.models.skeleton import CANONICAL_JOINTS

    joints = np.asarray(frame.joints)
    if joints.shape != (len(CANONICAL_JOINTS), 3) or joint_names(frame) != CANONICAL_JOINTS:
        return False
    if frame.confidence is not None:
        conf = np.asarray(frame.confidence, np.float32).reshape(-1)  # (J,)
        if conf.shape[0] == joints.shape[0] and not (conf > 0).all():  # NaN or 0: a missing joint
            return False
    return bool(np.isfinite(joints).all())


def pose_rot_messages(frame: PoseFrame, quats: np.ndarray | None = None, prefix: str = PREFIX) -> list[Msg]:
    """Joint rotations of one pose frame, beside its ``/momu/pose/frame`` (any style: the layout is generic).

    ``<prefix>/pose/rot  i person, i frame, i time_s, f time_frac, f w0 x0 y0 z0 w1 ...``: one unit
    quaternion (w, x, y, z) per joint in ``CANONICAL_JOINTS`` order, the joint's local rotation relative to
    its parent in the T-pose rest frame (``models.rig.rest_offsets``: ``skeleton.REST_DIRECTIONS`` x bone
    lengths), the root's global; canonical axes (y up, the dancer faces +z); leaves the identity.  FK with
    the rest offsets of the frame's own bone lengths rebuilds the frame (``models.rig.frame_quaternions``).
    Generated poses use ``<prefix>/gen/pose/rot``.  ``quats`` (J, 4): the rotations (the router passes them
    sign-continuous per person); None: solved here.  Frames ``has_rotations`` refuses send nothing
    (receivers hold the last rotations).
    """
    if not has_rotations(frame):
        return []
    if quats is None:
        from momu_live.models.rig import frame_quaternions

        quats = frame_quaternions(frame.joints)[0]  # (J, 4)
    q = np.asarray(quats, np.float32)  # (J, 4)
    if q.shape != (np.asarray(frame.joints).shape[0], 4) or not np.isfinite(q).all():
        raise GrammarError(f"pose rotations must be finite (J, 4) quaternions, got {q.shape}")
    return [(f"{prefix}/{_pose_object(frame)}/rot",
             [int(frame.person), int(frame.frame), *time_args(frame.time), *q.reshape(-1).tolist()])]


def joint_names_message(names: tuple[str, ...], prefix: str = PREFIX) -> Msg:
    """``<prefix>/pose/joints  s name0 s name1 ...``: the joint order of ``/momu/pose/frame`` arrays."""
    return (f"{prefix}/pose/joints", list(names))


# --------------------------------------------------------------------------------------------- beats
def beat_messages(beat: Beat, style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """generic/nodeosc: ``<prefix>/beat  i index, i time_s, f time_frac, f bpm, f phase, i downbeat, s source``.

    ``time_s + time_frac`` (``time_args``) is the beat's predicted stream time (it is published ``lead_s`` ahead, inside a bundle whose
    timetag is that time: ``beat_timetag``); ``phase`` the beat's position in the bar, ``(index mod
    meter) / meter`` (0 on the downbeat).
    joints: floats ``<prefix>/beat/index|time_s|time_frac|time|bpm|phase|downbeat`` (``time`` the plain float
    seconds, kept for compatibility) and ``<prefix>/beat/trigger 1.0``; the
    router sends ``beat_release_messages`` (trigger 0.0) ``TRIGGER_RELEASE_S`` after the beat, so a Trigger
    CHOP sees a rising edge on every beat (``/momu/beat/index`` is the beat counter).
    ableton: ``/live/song/set/tempo f bpm`` (AbletonOSC; the router sends it at most once a bar, on a
    downbeat, when the tempo moved for a whole bar: ``router.ableton_tempo_step``).
    """
    bpm = float(beat.bpm)
    if style == "ableton":
        return [("/live/song/set/tempo", [bpm])] if math.isfinite(bpm) and 20.0 <= bpm <= 999.0 else []
    if style in ("generic", "nodeosc"):
        return [(f"{prefix}/beat", [int(beat.index), *time_args(beat.time), bpm, float(beat.phase),
                                    int(bool(beat.downbeat)), str(beat.source)])]
    if style == "joints":
        sec, frac = time_args(beat.time)
        return [(f"{prefix}/beat/index", [float(beat.index)]), (f"{prefix}/beat/time_s", [float(sec)]),
                (f"{prefix}/beat/time_frac", [frac]), (f"{prefix}/beat/time", [float(beat.time)]),
                (f"{prefix}/beat/bpm", [bpm]), (f"{prefix}/beat/phase", [float(beat.phase)]),
                (f"{prefix}/beat/downbeat", [float(bool(beat.downbeat))]), (f"{prefix}/beat/trigger", [1.0])]
    raise GrammarError(f"unknown OSC style {style!r}; one of {', '.join(STYLES)}")


TRIGGER_RELEASE_S = 0.05  # how long a beat trigger stays at 1.0 before it falls back to 0.0


def beat_timetag(beat: Beat) -> int:
    """The OSC bundle timetag of a beat: its ``due_unix`` as NTP (``IMMEDIATELY`` when it is due now)."""
    from momu_live.bridge.osc import IMMEDIATELY, timetag_from_unix

    if beat.due_unix is None or not math.isfinite(beat.due_unix):
        return IMMEDIATELY
    return timetag_from_unix(float(beat.due_unix))


def beat_release_messages(style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """The trigger's fall back to 0 after a beat (joints style only; other styles carry no trigger)."""
    return [(f"{prefix}/beat/trigger", [0.0])] if style == "joints" else []


# --------------------------------------------------------------------------------------------- status
def status_messages(status: Status, style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """generic/nodeosc: ``<prefix>/status  i time_s, f time_frac, s mode, f fps, f bpm, i dropped, s message,
    then (s stage, f ms) pairs`` - the heartbeat with per-stage latency in one message.

    joints: floats ``<prefix>/status/time_s|time_frac|time|fps|bpm|dropped`` and
    ``<prefix>/status/latency/<stage>`` (``time_s`` whole seconds, exact in a CHOP's float32 for 194 days;
    ``time`` the plain float seconds, kept for compatibility: coarse after hours).
    ableton: nothing (AbletonOSC has no use for it).
    """
    lat = [(str(k), float(v)) for k, v in status.latency_ms.items()]
    if style == "ableton":
        return []
    if style in ("generic", "nodeosc"):
        args: list[Any] = [*time_args(status.time), str(status.mode), float(status.fps), float(status.bpm),
                           int(status.dropped), str(status.message)]
        for k, v in lat:
            args += [k, v]
        return [(f"{prefix}/status", args)]
    if style == "joints":
        sec, frac = time_args(status.time)
        msgs = [(f"{prefix}/status/time_s", [float(sec)]), (f"{prefix}/status/time_frac", [frac]),
                (f"{prefix}/status/time", [float(status.time)]), (f"{prefix}/status/fps", [float(status.fps)]),
                (f"{prefix}/status/bpm", [float(status.bpm)]), (f"{prefix}/status/dropped", [float(status.dropped)])]
        return msgs + [(f"{prefix}/status/latency/{k}", [v]) for k, v in lat]
    raise GrammarError(f"unknown OSC style {style!r}; one of {', '.join(STYLES)}")


# --------------------------------------------------------------------------------------------- audio
def audio_messages(block: AudioBlock, style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """Generated-audio level per block: generic/nodeosc ``<prefix>/audio/level  i time_s, f time_frac, f rms,
    f peak``;
    joints ``<prefix>/audio/rms`` and ``<prefix>/audio/peak``.  (Audio itself goes to a device/WAV.)"""
    if style == "ableton":
        return []
    x = np.asarray(block.samples, np.float32)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if style in ("generic", "nodeosc"):
        return [(f"{prefix}/audio/level", [*time_args(block.time), rms, peak])]
    if style == "joints":
        return [(f"{prefix}/audio/rms", [rms]), (f"{prefix}/audio/peak", [peak])]
    raise GrammarError(f"unknown OSC style {style!r}; one of {', '.join(STYLES)}")


def transport_messages(play: bool, style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """Transport start/stop: generic ``<prefix>/transport/play i 0|1``; ableton
    ``/live/song/start_playing`` or ``/live/song/stop_playing``."""
    if style == "ableton":
        return [("/live/song/start_playing" if play else "/live/song/stop_playing", [])]
    if style == "joints":
        return [(f"{prefix}/transport/play", [float(bool(play))])]
    return [(f"{prefix}/transport/play", [int(bool(play))])]


def event_messages(event, style: str = "generic", prefix: str = PREFIX) -> list[Msg]:
    """Any event of ``bridge/events.py`` -> messages in ``style`` (unknown event types -> ``[]``)."""
    if isinstance(event, PoseFrame):
        return pose_frame_messages(event, style, prefix)
    if isinstance(event, Beat):
        return beat_messages(event, style, prefix)
    if isinstance(event, Status):
        return status_messages(event, style, prefix)
    if isinstance(event, AudioBlock):
        return audio_messages(event, style, prefix)
    return []


# --------------------------------------------------------------------------------------------- control
# The control grammar: ONE table.  The engine's bindings (momu_live/live/control.py), validation
# (``parse_control``), the ``momu live --help`` control list, the control module's help and the table in
# docs/OSC.md are all generated from ``CONTROLS``; tests/test_osc.py checks that they agree.


@dataclass(frozen=True)
class ControlSpec:
    """One control address.

    ``kind``: ``float``/``int``/``bool``/``mode``/``none``; ``lo``/``hi`` the accepted range, ``choices``
    the names of a ``mode`` control (numbers 0..n-1 are accepted beside the names, for senders that can
    only send numbers); ``target`` names the engine setting the control drives (one binding each in
    ``momu_live.live.control``); ``unit`` is shown in the tables.
    """

    address: str
    kind: str
    target: str
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    @property
    def args(self) -> str:
        """The arguments column of the control table."""
        if self.kind == "none":
            return "-"
        if self.kind == "mode":
            return "`s` " + ", ".join(self.choices) + " (or `i` " + ", ".join(
                f"{i}={c}" for i, c in enumerate(self.choices)) + ")"
        if self.kind == "bool":
            return "`i`/`f` 0 or 1"
        rng = f"{self.lo:g}-{self.hi:g}"
        code = "`i`" if self.kind == "int" else "`f`"
        return f"{code} {self.unit} ({rng})" if self.unit else f"{code} {rng}"


@dataclass(frozen=True)
class Control:
    """A parsed control message: ``/momu/<object>/<verb>/<prop>`` with its validated ``value``."""

    object: str
    verb: str
    prop: str
    value: Any
    spec: ControlSpec | None = None

    @property
    def address(self) -> str:
        return "/".join(p for p in (PREFIX, self.object, self.verb, self.prop) if p)


# addresses that back-ends read from ``LiveWindow.controls`` (values already validated here)
STEPS_ADDR = "/momu/engine/set/steps"
GUIDANCE_ADDR = "/momu/engine/set/guidance"
BEAT_ADDR = "/momu/engine/set/beat"
LOOKAHEAD_ADDR = "/momu/engine/set/lookahead"
POSE_INPUT_ADDR = f"{PREFIX}/pose/frame"  # external pose frames for ``--source osc`` (same layout as the output)

CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec(GUIDANCE_ADDR, "float", "model", "cross-guidance / CFG scale", 0.0, 20.0),
    ControlSpec(BEAT_ADDR, "float", "model", "beat-guidance strength onto the tracked tempo (1 default, 0 off)", 0.0, 10.0),
    ControlSpec("/momu/engine/set/mode", "mode", "mode", "generation mode (switched between two windows)", choices=MODES),
    ControlSpec(STEPS_ADDR, "int", "model", "sampler steps", 1, 1000),
    ControlSpec(LOOKAHEAD_ADDR, "float", "model",
                "motion2music: generate this far ahead of the dancer (0: off), so audio plays on time", 0.0, 5.0, unit="s"),
    ControlSpec("/momu/engine/set/hop", "float", "hop", "scheduler hop", 0.02, 30.0, unit="s"),
    ControlSpec("/momu/engine/set/window", "float", "window", "analysis window", 0.1, 60.0, unit="s"),
    ControlSpec("/momu/engine/stop", "none", "stop", "stop the engine (as SIGTERM)"),
    ControlSpec("/momu/transport/set/play", "bool", "play",
                "transport play/stop (AbletonOSC start/stop with the ableton preset)"),
    ControlSpec("/momu/tempo/set/bpm", "float", "bpm",
                "hold the beat clock at this tempo (20-300) until handed back; 0 hands it back to the tracker",
                0.0, 300.0),
    ControlSpec("/momu/tempo/set/follow", "bool", "follow",
                "1: the beat clock follows the input again (ends a held tempo: OSC, MIDI clock in, Link); "
                "0: hold the current tempo"),
    ControlSpec("/momu/output/set/gain", "float", "gain", "gain of generated audio (linear)", 0.0, 4.0),
)
CONTROL_SPECS: dict[str, ControlSpec] = {c.address: c for c in CONTROLS}
CONTROL_TARGETS: frozenset[str] = frozenset(c.target for c in CONTROLS)


def _coerce(spec: ControlSpec, address: str, args: list) -> Any:
    if spec.kind == "none":
        return None
    if len(args) != 1:
        raise GrammarError(f"{address} takes one argument ({spec.args}), got {len(args)}")
    a = args[0]
    if spec.kind == "mode":
        try:
            return Mode.parse(a).value
        except ValueError as exc:
            raise GrammarError(f"{address}: {exc}") from None
    try:
        if isinstance(a, (str, bytes)) or a is None:
            raise GrammarError(f"{address} takes a number, got {a!r}")
        x = float(a)
        if not math.isfinite(x):
            raise GrammarError(f"{address}: value must be finite, got {a!r}")
        if spec.kind == "bool":
            return x >= 0.5
        v = int(round(x)) if spec.kind == "int" else x
    except (TypeError, ValueError) as exc:
        if isinstance(exc, GrammarError):
            raise
        raise GrammarError(f"{address}: bad argument {a!r}") from None
    if (spec.lo is not None and v < spec.lo) or (spec.hi is not None and v > spec.hi):
        raise GrammarError(f"{address}: {v} outside [{spec.lo:g}, {spec.hi:g}]")
    return v


def parse_control(address: str, args: list) -> Control:
    """Validate a control message (see ``CONTROLS``) -> ``Control``; raises ``GrammarError`` otherwise."""
    spec = CONTROL_SPECS.get(address)
    if spec is None:
        raise GrammarError(f"unknown control address {address!r}; one of {', '.join(CONTROL_SPECS)}")
    parts = address[len(PREFIX) + 1:].split("/")
    obj, verb, prop = (parts + ["", ""])[:3]
    return Control(obj, verb, prop, _coerce(spec, address, list(args)), spec)


def check_control(address: str, value: Any) -> Any:
    """Validate one value for ``address`` (e.g. a CLI flag that sets the same thing) -> the coerced value."""
    return parse_control(address, [] if value is None else [value]).value


def control_message(obj: str, prop: str, value: Any = None, verb: str = "set") -> Msg:
    """Build (and validate) a control message, e.g. ``control_message("engine", "guidance", 2.5)``."""
    address = "/".join(p for p in (PREFIX, obj, verb, prop) if p)
    c = parse_control(address, [] if value is None else [value])
    if c.value is None:
        return (address, [])
    if isinstance(c.value, bool):
        return (address, [int(c.value)])
    return (address, [c.value])


def status_fields(args: list) -> dict:
    """Receiver side of the generic ``/momu/status`` message: its arguments by name (``time`` joined from
    ``time_s + time_frac``, ``latency`` a dict of stage -> ms).  For receivers written in Python and tests."""
    head = ("time_s", "time_frac", "mode", "fps", "bpm", "dropped", "message")
    d = dict(zip(head, args))
    d["time"] = join_time(d["time_s"], d["time_frac"])
    rest = list(args[len(head):])
    d["latency"] = {str(k): float(v) for k, v in zip(rest[::2], rest[1::2])}
    return d


def beat_fields(args: list) -> dict:
    """Receiver side of the generic ``/momu/beat`` message: its arguments by name (``time`` joined)."""
    return {"index": int(args[0]), "time": join_time(args[1], args[2]), "bpm": float(args[3]),
            "phase": float(args[4]), "downbeat": bool(args[5]), "source": str(args[6])}


def pose_frame_fields(args: list) -> dict:
    """Receiver side of the generic ``/momu/pose/frame`` (and ``/momu/gen/pose/frame``) message."""
    return {"person": int(args[0]), "frame": int(args[1]), "time": join_time(args[2], args[3]),
            "joints": np.asarray(args[4:], np.float32).reshape(-1, 3)}


def pose_rot_fields(args: list) -> dict:
    """Receiver side of ``/momu/pose/rot`` (and ``/momu/gen/pose/rot``): ``quats`` (J, 4) as (w, x, y, z)."""
    return {"person": int(args[0]), "frame": int(args[1]), "time": join_time(args[2], args[3]),
            "quats": np.asarray(args[4:], np.float32).reshape(-1, 4)}


def controls_markdown() -> str:
    """The control table of docs/OSC.md (generated; a test keeps the document in step)."""
    rows = ["| address | arguments | effect |", "| --- | --- | --- |"]
    rows += [f"| `{c.address}` | {c.args} | {c.doc} |" for c in CONTROLS]
    rows.append(f"| `{POSE_INPUT_ADDR}` | as the output row | pose input for `--source osc` |")
    return "\n".join(rows)


def controls_text() -> str:
    """The control list as plain text (``momu live --help``, the control module's help)."""
    w = max(len(c.address) for c in CONTROLS)
    lines = [f"  {c.address:<{w}}  {c.args.replace('`', '')}: {c.doc}" for c in CONTROLS]
    lines.append(f"  {POSE_INPUT_ADDR:<{w}}  i person, i frame, i time_s, f time_frac, J*3 f: pose input (--source osc)")
    return "\n".join(lines)
