"""Router: engine events -> sinks (OSC targets of a preset, MIDI, audio device, WAV recording, extra ``Sink``s).

The router is the one fan-out of the project: every destination is a ``Sink`` (bridge/events.py) or
a built-in sink of the preset, and the engine talks to one router.

``emit(event)`` never blocks: events go into a queue drained by one worker thread which builds the
messages (bridge/grammar.py), packs them into <= MTU bundles (bridge/osc.py) and sends them with
non-blocking UDP (bridge/transport.py).  Non-audio events beyond ``max_queue`` are dropped and
counted (``stats()["dropped"]``); ``AudioBlock``s are never dropped (they are produced at real-time
rate, so the queue stays bounded), and go to the audio device directly from ``emit`` (a ring write).
A sink that raises is counted and never stops the others.  ``close()`` drains the queue, sends the
closing messages (MIDI stop, AbletonOSC stop when it started playback), closes every sink.

Overrides of ``Router.from_preset(name_or_path, overrides)`` (``None`` values are ignored):

| key | effect |
| --- | --- |
| ``osc_host``, ``osc_port`` | the primary target's destination |
| ``style`` | the primary target's grammar style |
| ``midi_port`` | MIDI out to the port whose name contains this (enables MIDI) |
| ``midi_virtual`` | create a virtual MIDI port named ``midi_port`` instead (default: preset) |
| ``midi`` | False disables the preset's MIDI |
| ``audio_device`` | play ``AudioBlock``s on this device (name substring) |
| ``record`` | record ``AudioBlock``s into this WAV path |
| ``sample_rate`` | rate of audio blocks (default: the time base's audio rate) |
| ``listen`` | True/False: start/skip the preset's reply listener (e.g. AbletonOSC 11001) |
| ``rotations`` | True/False: the primary target sends ``/momu/pose/rot`` beside pose frames (default: preset) |

Joint rotations (``/momu/pose/rot``, a target's ``"rotations": true``): the router solves them once per pose
frame for every such target (``RotationSource``: ``models.rig.frame_quaternions``, about 1 ms a frame on the
router's thread, signs continuous per person); building a router with one imports ``models.rig`` (torch).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.bridge import grammar
from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Sink, Status
from momu_live.bridge.osc import OscEncodeError, pack_bundles
from momu_live.bridge.preset import load_preset, validate_preset
from momu_live.bridge.transport import OscServer, RateLimitedLog, UdpSender
from momu_live.models.timebase import DEFAULT_TIMEBASE

log = logging.getLogger(__name__)

_OVERRIDES = {"osc_host", "osc_port", "style", "midi_port", "midi_virtual", "midi", "audio_device", "record",
              "sample_rate", "listen", "rotations"}


@dataclass(frozen=True)
class TempoPolicyState:
    """What AbletonOSC was last told (``sent_bpm``; None: nothing yet), the tempo it may be told next
    (``cand_bpm``) and on how many downbeats in a row that candidate has held (``moved``)."""

    sent_bpm: float | None = None
    cand_bpm: float | None = None
    moved: int = 0


def ableton_tempo_step(state: TempoPolicyState, beat: Beat, tolerance: float, lasting_bars: int = 1
                       ) -> tuple[float | None, TempoPolicyState]:
    """The Ableton tempo policy (pure): the BPM to send now (or None) and the new state.

    Tempo goes out only on a downbeat, so at most once a bar.  The first downbeat sends the tempo; later
    a tempo that differs by >= ``tolerance`` BPM from the one sent goes out when it has held (within
    ``tolerance`` of the first such downbeat's tempo) on ``lasting_bars + 1`` downbeats in a row, i.e.
    for a whole bar: a passing wobble or a drifting estimate never reaches the DAW.
    """
    bpm = float(beat.bpm)
    if not beat.downbeat or not (20.0 <= bpm <= 999.0):
        return None, state
    if state.sent_bpm is None:
        return bpm, TempoPolicyState(bpm)
    if abs(bpm - state.sent_bpm) < tolerance:
        return None, TempoPolicyState(state.sent_bpm)
    if state.cand_bpm is None or abs(bpm - state.cand_bpm) >= tolerance:
        return None, TempoPolicyState(state.sent_bpm, bpm, 1)  # a new candidate starts counting
    if state.moved + 1 > lasting_bars:
        return bpm, TempoPolicyState(bpm)
    return None, TempoPolicyState(state.sent_bpm, state.cand_bpm, state.moved + 1)


def _kind(ev) -> str | None:
    if isinstance(ev, PoseFrame):
        return "gen" if ev.source == "generated" else "pose"
    if isinstance(ev, Beat):
        return "beat"
    if isinstance(ev, Status):
        return "status"
    if isinstance(ev, AudioBlock):
        return "audio"
    return None


class RotationSource:
    """Joint rotations of pose frames for the targets that send ``/momu/pose/rot``: solved once per frame
    (``models.rig.frame_quaternions``, per frame, no fit over time), signs continuous per (source, person).

    ``of(frame)`` -> (J, 4) quaternions (w, x, y, z), or None for a frame without rotations
    (``grammar.has_rotations``) or when solving failed (counted in ``errors``; the position frame still goes).
    """

    def __init__(self):
        from momu_live.models.rig import frame_quaternions  # imported here, not on the router's thread

        self._solve = frame_quaternions
        self._prev: dict[tuple, np.ndarray] = {}  # (source, person) -> (J, 4) last quaternions sent
        self._last: tuple = (None, None, None)  # (frame, its joints, quats): several targets share one solve
        self.solved = self.errors = 0
        self._log = RateLimitedLog(log)

    def of(self, frame: PoseFrame) -> np.ndarray | None:
        if self._last[0] is frame and np.array_equal(self._last[1], frame.joints):
            return self._last[2]
        q = None
        if grammar.has_rotations(frame):
            key = (frame.source, int(frame.person))
            try:
                q = self._solve(frame.joints, prev=self._prev.get(key))[0]  # (J, 4)
                self._prev[key] = q
                self.solved += 1
            except Exception as exc:
                self.errors += 1
                self._log.warn("rot", "pose rotations failed: %r", exc)
        self._last = (frame, np.array(frame.joints, copy=True), q)
        return q


class OscTarget:
    """One OSC destination with one grammar style (and AbletonOSC's tempo/transport state)."""

    def __init__(self, cfg: dict, rotations: RotationSource | None = None):
        self.cfg = cfg
        self.name, self.style, self.prefix = cfg["name"], cfg["style"], cfg["prefix"]
        self.events = set(cfg["events"])
        self.rotations = (rotations or RotationSource()) if cfg.get("rotations") else None
        self.sender = UdpSender(cfg["host"], cfg["port"], max_bytes=cfg["max_bytes"])
        self.bundle = bool(cfg["bundle"])
        self.encode_errors = 0
        self.tempo_policy = TempoPolicyState()
        self.tempo_sent = 0  # /live/song/set/tempo messages sent (ableton style)
        self._playing = False
        self._names_sent: dict[tuple, float] = {}
        self.release_at: float | None = None  # monotonic time the beat trigger falls back to 0 (joints style)
        self._log = RateLimitedLog(log)

    def messages(self, ev) -> list[tuple[str, list]]:
        kind = _kind(ev)
        if kind not in self.events:
            return []
        msgs = grammar.event_messages(ev, self.style, self.prefix)
        if self.style == "ableton" and isinstance(ev, Beat):
            return self._ableton_beat(ev, msgs)
        if isinstance(ev, PoseFrame) and msgs and self.rotations is not None:  # beside the frame, same bundle
            q = self.rotations.of(ev)
            if q is not None:
                msgs = [*msgs, *grammar.pose_rot_messages(ev, q, self.prefix)]
        if isinstance(ev, PoseFrame) and self.style == "generic" and msgs:
            names = grammar.joint_names(ev)
            now = time.monotonic()
            if now - self._names_sent.get(names, -1e9) >= float(self.cfg["names_every_s"]):
                self._names_sent = {names: now}
                msgs = [grammar.joint_names_message(names, self.prefix), *msgs]
        return msgs

    def _ableton_beat(self, ev: Beat, msgs: list) -> list:
        out = []
        bpm, self.tempo_policy = ableton_tempo_step(self.tempo_policy, ev, float(self.cfg["tempo_tolerance"]))
        if msgs and bpm is not None:
            self.tempo_sent += 1
            out += msgs
        if self.cfg["start_on_first_beat"] and not self._playing:
            self._playing = True
            out += grammar.transport_messages(True, "ableton")
        return out

    def emit(self, ev) -> None:
        msgs = self.messages(ev)
        if not msgs:
            return
        timed = isinstance(ev, Beat) and ev.due_unix is not None and self.bundle and self.style != "ableton"
        try:
            if timed:  # a beat published ahead: one bundle whose timetag is the beat's time
                for packet in pack_bundles(msgs, self.sender.max_bytes, grammar.beat_timetag(ev)):
                    self.sender.send(packet)
            else:
                self.sender.send_messages(msgs, bundle=self.bundle)
        except OscEncodeError as exc:
            self.encode_errors += 1
            self._log.warn("encode", "OSC target %s: cannot encode %s: %s", self.name, type(ev).__name__, exc)
            return
        if isinstance(ev, Beat) and grammar.beat_release_messages(self.style, self.prefix):
            ahead = max(0.0, ev.due_unix - time.time()) if ev.due_unix is not None else 0.0
            self.release_at = time.monotonic() + ahead + grammar.TRIGGER_RELEASE_S

    def release(self, now: float) -> None:
        """Send the beat trigger's fall back to 0 when it is due (called by the router's thread)."""
        if self.release_at is not None and now >= self.release_at:
            self.release_at = None
            self.sender.send_messages(grammar.beat_release_messages(self.style, self.prefix), bundle=False)

    def transport(self, play: bool) -> None:
        if "transport" in self.events or self.style == "ableton":
            self._playing = play
            self.sender.send_messages(grammar.transport_messages(play, self.style, self.prefix), bundle=False)

    def stats(self) -> dict:
        return {**self.sender.stats(), "encode_errors": self.encode_errors, "tempo_sent": self.tempo_sent,
                "host": self.sender.host, "port": self.sender.port, "style": self.style,
                "rotations": self.rotations is not None}

    def close(self) -> None:
        if self.style == "ableton" and self._playing:
            self.sender.send_messages(grammar.transport_messages(False, "ableton"), bundle=False)
        self.sender.close()


class Router:
    """Fan events out to the sinks of a preset (see module doc); ``emit`` never blocks."""

    def __init__(self, preset: dict, overrides: dict | None = None, max_queue: int = 2048, sinks=()):
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        bad = set(overrides) - _OVERRIDES
        if bad:
            raise MomuError(f"unknown router overrides {sorted(bad)}; allowed: {sorted(_OVERRIDES)}")
        self.preset = preset = validate_preset(preset, f"preset {preset.get('name', '?')}")
        self.name = preset["name"]
        tcfgs = [dict(t) for t in preset["targets"]]
        if tcfgs and any(k in overrides for k in ("osc_host", "osc_port", "style", "rotations")):
            prim = next((t for t in tcfgs if t["primary"]), tcfgs[0])
            prim["host"] = overrides.get("osc_host", prim["host"])
            prim["port"] = int(overrides.get("osc_port", prim["port"]))
            prim["style"] = overrides.get("style", prim["style"])
            prim["rotations"] = bool(overrides.get("rotations", prim["rotations"]))
            if prim["style"] not in grammar.STYLES:
                raise MomuError(f"style {prim['style']!r} is not one of {', '.join(grammar.STYLES)}")
        self.sample_rate = int(overrides.get("sample_rate", DEFAULT_TIMEBASE.sample_rate))
        self.targets: list[OscTarget] = []
        self.midi = None
        self.audio_out = None
        self.recorder = None
        self.listener: OscServer | None = None
        self.extra: list[Sink] = list(sinks)  # more sinks (e.g. the console status printer), same guard
        self.peer_state: dict[str, list] = {}
        self.emitted = self.dropped = self.sink_errors = 0
        self._log = RateLimitedLog(log)
        try:
            rot = RotationSource() if any(t["rotations"] for t in tcfgs) else None  # one solve per frame
            self.targets = [OscTarget(t, rot) for t in tcfgs]
            self._open_midi(preset["midi"], overrides)
            if overrides.get("audio_device") is not None:
                from momu_live.bridge.audio_io import AudioOutput

                self.audio_out = AudioOutput(overrides["audio_device"], self.sample_rate)
            if overrides.get("record"):
                from momu_live.bridge.audio_io import WavRecorder

                self.recorder = WavRecorder(Path(overrides["record"]), self.sample_rate)
            lcfg = preset["listen"]
            if overrides.get("listen", lcfg["enabled"]):
                self._open_listener(lcfg)
        except BaseException:
            self._close_sinks()
            raise
        self.max_queue = int(max_queue)
        self._q: collections.deque = collections.deque()
        self._non_audio = 0
        self._cv = threading.Condition()
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"router-{self.name}", daemon=True)
        self._thread.start()

    @classmethod
    def from_preset(cls, name_or_path: str | Path = "generic", overrides: dict | None = None, **kw) -> "Router":
        """A router for preset ``name_or_path`` (``momu presets``; or a .json path) with ``overrides``."""
        return cls(load_preset(name_or_path), overrides, **kw)

    # ----------------------------------------------------------------------------------- sinks
    def _open_midi(self, mcfg: dict, ov: dict) -> None:
        if ov.get("midi") is False:
            return
        if not (mcfg["enabled"] or ov.get("midi_port")):
            return
        from momu_live.bridge import midi

        port_name = ov.get("midi_port", mcfg["port"])
        virtual = bool(ov.get("midi_virtual", mcfg["virtual"] if "midi_port" not in ov else False))
        try:
            port = midi.open_output(port_name, virtual=virtual)
        except MomuError as exc:
            if "midi_port" in ov:
                raise  # asked for explicitly: a user error
            log.warning("preset %s: MIDI disabled: %s", self.name, exc)
            return
        notes = midi.BeatNotes(**mcfg["notes"]) if mcfg.get("notes") is not None else None
        self.midi = midi.MidiOut(port, notes=notes, clock=bool(mcfg["clock"]))

    def _open_listener(self, lcfg: dict) -> None:
        def on_reply(address, args, sender):
            self.peer_state[address] = list(args)

        try:
            self.listener = OscServer(lcfg["host"], int(lcfg["port"]), on_reply)
        except MomuError as exc:
            log.warning("preset %s: reply listener disabled: %s", self.name, exc)

    # ----------------------------------------------------------------------------------- emit
    def emit(self, event) -> None:
        """Queue ``event`` for the sinks (never blocks; non-audio events beyond the queue bound are dropped)."""
        if self._closing:
            self.dropped += 1
            return
        is_audio = isinstance(event, AudioBlock)
        if is_audio and self.audio_out is not None:
            try:
                self.audio_out.write(event.samples, event.sample_rate)
            except Exception as exc:
                self.sink_errors += 1
                self._log.warn("audio", "audio output failed: %r", exc)
        with self._cv:
            if not is_audio:
                if self._non_audio >= self.max_queue:
                    self.dropped += 1
                    return
                self._non_audio += 1
            self._q.append(event)
            self.emitted += 1
            self._cv.notify()

    def transport(self, play: bool) -> None:
        """Start/stop the peers' transport (AbletonOSC start/stop_playing, ``/momu/transport/play``)."""
        self.emit(("transport", bool(play)))

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._q and not self._closing:
                    due = [t.release_at for t in self.targets if t.release_at is not None]
                    wait = 0.5 if not due else max(0.0, min(due) - time.monotonic())
                    if due and wait == 0.0:
                        break
                    self._cv.wait(wait)
                if not self._q and self._closing:
                    return
                ev = self._q.popleft() if self._q else None
                if ev is not None and not isinstance(ev, AudioBlock):
                    self._non_audio -= 1
                self._busy = True
            try:
                if ev is not None:
                    self._dispatch(ev)
                now = time.monotonic()
                for t in self.targets:
                    if t.release_at is not None:
                        self._guard(t.release, now)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _dispatch(self, ev) -> None:
        if isinstance(ev, tuple) and ev[:1] == ("transport",):
            for t in self.targets:
                self._guard(t.transport, ev[1])
            return
        for t in self.targets:
            self._guard(t.emit, ev)
        if isinstance(ev, Beat) and self.midi is not None:
            self._guard(self.midi.beat, ev)
        if isinstance(ev, AudioBlock) and self.recorder is not None:
            self._guard(self.recorder.write, ev)
        for sink in self.extra:
            self._guard(sink.emit, ev)

    def _guard(self, fn, arg) -> None:
        try:
            fn(arg)
        except Exception as exc:
            self.sink_errors += 1
            self._log.warn(getattr(fn, "__qualname__", "sink"), "sink %s failed: %r", getattr(fn, "__qualname__", fn), exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event has been dispatched; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._q or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
        return True

    def problems(self) -> list[str]:
        """What the status heartbeat should warn about: OSC targets nobody listens to (ICMP port unreachable)."""
        return [f"no OSC receiver at {t.sender.host}:{t.sender.port} ({t.name})" for t in self.targets
                if t.sender.unreachable()]

    def stats(self) -> dict:
        s = {"emitted": self.emitted, "dropped": self.dropped, "sink_errors": self.sink_errors,
             "queued": len(self._q), "targets": {t.name: t.stats() for t in self.targets}}
        if self.midi is not None:
            s["midi"] = self.midi.stats()
        if self.audio_out is not None:
            s["audio_out"] = self.audio_out.stats()
        if self.recorder is not None:
            s["record"] = {"path": str(self.recorder.path), "frames": self.recorder.frames}
        if self.listener is not None:
            s["listen"] = self.listener.stats()
        return s

    def _close_sinks(self) -> None:
        for s in (*self.targets, self.midi, self.audio_out, self.recorder, self.listener, *self.extra):
            if s is None:
                continue
            try:
                s.close()
            except Exception as exc:
                log.warning("closing %s: %r", type(s).__name__, exc)

    def close(self, timeout: float = 5.0) -> None:
        """Drain the queue (up to ``timeout`` s), then close every sink (flushes the recording)."""
        if self._closing:
            return
        self.flush(timeout)
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        self._close_sinks()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
