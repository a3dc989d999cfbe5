"""MIDI out (mido + python-rtmidi): beats as notes, MIDI clock at 24 ppq driven by the tracked BPM, start/stop.

Backend: rtmidi's default API (ALSA sequencer on Linux) when ``/dev/snd/seq`` exists, else JACK MIDI
(rtmidi ``UNIX_JACK``, needs a running JACK server); ``MOMU_MIDI_API`` (``LINUX_ALSA``, ``UNIX_JACK``,
``MACOSX_CORE``, ``WINDOWS_MM``) forces one.

``MidiOut`` owns one thread that sends scheduled messages (note-offs, clock pulses) at their
``time.monotonic()`` deadlines; ``send``/``beat`` never block the caller.  Clock pulse ``24 k`` of the
grid lands on tracked beat ``k`` (``clock_pulse_times`` is the pure scheduling rule).  A beat the beat
clock publishes ahead of time (``Beat.due_unix``) is scheduled for its time: the note and the pulse
grid land on the beat, not when the message arrived.

``MidiClockIn`` is the other direction: MIDI clock from a DAW or drum machine (24 ppq) measured into a
tempo (``clock_in_bpm``, the median pulse interval of the last beat), handed to a callback once a beat,
so an external clock can hold the live engine's tempo (``LiveEngine.set_manual_tempo``); when the clock
stops (``stop`` or no pulse for ``timeout_s``) the callback gets 0 (hand the tempo back).
"""
from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from momu_live import MomuError
from momu_live.bridge.events import Beat

log = logging.getLogger(__name__)
PPQ = 24  # MIDI clock pulses per quarter note


def backend(api: str | None = None):
    """The mido rtmidi backend for ``api`` (see module doc for the default choice)."""
    import mido

    api = api or os.environ.get("MOMU_MIDI_API")
    if not api:
        api = None if os.path.exists("/dev/snd/seq") or not os.path.isdir("/proc") else "UNIX_JACK"
    return mido.Backend(f"mido.backends.rtmidi/{api}" if api else "mido.backends.rtmidi", load=True)


def list_outputs(api: str | None = None) -> list[str]:
    try:
        return list(backend(api).get_output_names())
    except Exception as exc:  # no ALSA seq / no JACK server: nothing to list
        log.debug("MIDI outputs unavailable: %r", exc)
        return []


def list_inputs(api: str | None = None) -> list[str]:
    try:
        return list(backend(api).get_input_names())
    except Exception as exc:
        log.debug("MIDI inputs unavailable: %r", exc)
        return []


def _open_port(kind: str, substring: str, virtual: bool, api: str | None, client_name: str):
    """The one port finder: a mido ``kind`` ("input"/"output") port whose name contains ``substring``
    (case-insensitive), or with ``virtual=True`` a new virtual port called ``substring``."""
    be = backend(api)
    try:
        if virtual:
            return getattr(be, f"open_{kind}")(substring, virtual=True, client_name=client_name)
        names = getattr(be, f"get_{kind}_names")()
    except Exception as exc:
        raise MomuError(f"MIDI is unavailable ({exc}); start JACK or ALSA, or set MOMU_MIDI_API") from None
    for n in names:
        if substring.lower() in n.lower():
            return getattr(be, f"open_{kind}")(n, client_name=client_name)
    raise MomuError(f"no MIDI {kind} matches {substring!r}; {kind}s: {', '.join(names) or 'none'} "
                    f"(see `momu devices`, or use a virtual port)")


def open_output(substring: str, virtual: bool = False, api: str | None = None, client_name: str = "momu"):
    """A mido output port: the first whose name contains ``substring`` (case-insensitive), or, with
    ``virtual=True``, a new virtual port called ``substring`` that other programs connect to."""
    return _open_port("output", substring, virtual, api, client_name)


def clock_pulse_times(beat_time: float, bpm: float, start: float, end: float) -> np.ndarray:
    """Times in ``[start, end)`` of 24-ppq pulses on the grid with a pulse at ``beat_time``."""
    step = 60.0 / float(bpm) / PPQ
    k0 = np.ceil((start - beat_time) / step - 1e-9)
    k1 = np.ceil((end - beat_time) / step - 1e-9)
    return beat_time + np.arange(k0, k1) * step  # (n,)


@dataclass
class BeatNotes:
    """How beats become notes (defaults: General MIDI kick on drum channel 10, 50 ms)."""

    note: int = 36
    downbeat_note: int = 36
    channel: int = 9  # 0-based: 9 = MIDI channel 10 (drums)
    velocity: int = 100
    downbeat_velocity: int = 127
    duration_s: float = 0.05


def beat_to_messages(beat: Beat, cfg: BeatNotes):
    """A beat -> ``(note_on, note_off, duration_s)`` (pure)."""
    import mido

    note = cfg.downbeat_note if beat.downbeat else cfg.note
    vel = cfg.downbeat_velocity if beat.downbeat else cfg.velocity
    on = mido.Message("note_on", channel=cfg.channel, note=int(note), velocity=int(vel))
    off = mido.Message("note_off", channel=cfg.channel, note=int(note), velocity=0)
    return on, off, float(cfg.duration_s)


class MidiOut:
    """Scheduled MIDI output on a worker thread: beat notes and (optionally) 24-ppq clock.

    ``beat(b)`` sends the note now (note-off later) and re-anchors the clock grid on the beat;
    the first beat sends ``start`` when ``clock`` is on; ``close()`` sends ``stop`` and all-notes-off.
    """

    def __init__(self, port, notes: BeatNotes | None = None, clock: bool = True, send_start_stop: bool = True):
        self.port = port
        self.notes = notes
        self.clock = clock
        self.send_start_stop = send_start_stop
        self.sent = self.errors = self.pulses = 0
        self._heap: list = []
        self._seq = 0
        self._note_len: dict[tuple, float] = {}  # (channel, note) -> note length of the last beat note
        self._note_on_at: dict[tuple, float] = {}  # (channel, note) -> when its note_on really went out
        self._cv = threading.Condition()
        self._anchor: tuple[float, float] | None = None  # (monotonic time of a beat, bpm)
        self._next_pulse: float | None = None
        self._last_pulse: float | None = None
        self._started = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="midi-out", daemon=True)
        self._thread.start()

    def _send(self, msg) -> None:
        try:
            self.port.send(msg)
            self.sent += 1
        except Exception as exc:
            self.errors += 1
            log.debug("MIDI send failed: %r", exc)

    def schedule(self, at: float, msg) -> None:
        """Send ``msg`` at ``time.monotonic() == at`` (non-blocking)."""
        with self._cv:
            heapq.heappush(self._heap, (at, self._seq, msg))
            self._seq += 1
            self._cv.notify()

    def send(self, msg) -> None:
        self.schedule(time.monotonic(), msg)

    def beat(self, b: Beat) -> None:
        import mido

        now = time.monotonic()
        at = now  # the beat's monotonic time: now, or later for a beat published ahead (due_unix)
        if b.due_unix is not None and np.isfinite(b.due_unix):
            at = max(now, now + float(b.due_unix) - time.time())
        if self.clock and np.isfinite(b.bpm) and 20.0 <= b.bpm <= 300.0:
            with self._cv:
                if not self._started and self.send_start_stop:
                    heapq.heappush(self._heap, (now, self._seq, mido.Message("start")))
                    self._seq += 1
                self._started = True
                step = 60.0 / float(b.bpm) / PPQ
                # the grid gets a pulse at the beat; the next pulse is the first grid pulse after now that
                # is at least half a step after the last one sent (no double pulse when the grid moves)
                self._anchor = (at, float(b.bpm))
                after = now if self._last_pulse is None else max(now, self._last_pulse + step / 2)
                self._next_pulse = float(clock_pulse_times(at, float(b.bpm), after, after + 2 * step)[0])
                self._cv.notify()
        if self.notes is not None:
            on, off, dur = beat_to_messages(b, self.notes)
            self._note_len[(on.channel, on.note)] = dur
            self.schedule(at, on)
            self.schedule(at + dur, off)

    def set_bpm(self, bpm: float) -> None:
        """Change the clock tempo without a beat (keeps the current pulse phase)."""
        with self._cv:
            if self._anchor is not None and 20.0 <= bpm <= 300.0:
                t0 = self._next_pulse if self._next_pulse is not None else time.monotonic()
                self._anchor = (t0, float(bpm))
                self._cv.notify()

    def _run(self) -> None:
        import mido

        clock_msg = mido.Message("clock")
        while True:
            with self._cv:
                if self._stop and not self._heap:
                    return
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    t_due, _, m = heapq.heappop(self._heap)
                    key = (getattr(m, "channel", None), getattr(m, "note", None))
                    if m.type == "note_off" and not self._stop and key in self._note_on_at:
                        keep = self._note_on_at[key] + self._note_len.get(key, 0.0)
                        if keep > now + 1e-3:  # its note_on went out late: keep the note its full length
                            heapq.heappush(self._heap, (keep, self._seq, m))
                            self._seq += 1
                            continue
                    if m.type == "note_on":
                        self._note_on_at[key] = now
                    due.append(m)
                pulse = False
                if self._started and self._anchor is not None and not self._stop:
                    t_beat, bpm = self._anchor
                    step = 60.0 / bpm / PPQ
                    if self._next_pulse is None:
                        self._next_pulse = now
                    if self._next_pulse <= now:
                        pulse = True
                        # next pulse on the anchored grid, strictly after now (skip missed pulses under load)
                        self._next_pulse = float(clock_pulse_times(t_beat, bpm, now + 1e-6, now + 2 * step)[0])
                wake = [t for t in (self._heap[0][0] if self._heap else None,
                                    self._next_pulse if self._started and not self._stop else None) if t is not None]
                if not due and not pulse:
                    self._cv.wait(timeout=min(0.1, max(0.0, min(wake) - now)) if wake else 0.1)
                    continue
            for m in due:
                self._send(m)
            if pulse:
                self._send(clock_msg)
                self.pulses += 1
                self._last_pulse = time.monotonic()

    def stats(self) -> dict:
        return {"sent": self.sent, "errors": self.errors, "pulses": self.pulses}

    def close(self, close_port: bool = True) -> None:
        """Flush pending note-offs, send ``stop`` (if started) and all-notes-off, close the port."""
        import mido

        with self._cv:
            if self._stop:
                return
            self._stop = True
            now = time.monotonic()
            if self._started and self.send_start_stop:
                heapq.heappush(self._heap, (now, self._seq, mido.Message("stop")))
                self._seq += 1
            if self.notes is not None:
                heapq.heappush(self._heap, (now + 0.001, self._seq,
                                            mido.Message("control_change", channel=self.notes.channel, control=123)))
                self._seq += 1
            self._cv.notify()
        self._thread.join(timeout=2.0)
        if close_port:
            try:
                self.port.close()
            except Exception as exc:
                log.debug("closing MIDI port: %r", exc)


# ------------------------------------------------------------------------------------------------
# MIDI clock in


def clock_in_bpm(pulse_times: np.ndarray) -> float:
    """Tempo (BPM) of 24-ppq clock pulses at ``pulse_times`` (s, increasing): 60 / (24 x the pulse period),
    the period a least-squares line through (pulse index, arrival time): arrival jitter of a loaded
    receiver averages out over the span instead of biasing a single interval; 0 with fewer than 3 pulses
    or a tempo outside 20-300 BPM."""
    t = np.asarray(pulse_times, np.float64)
    if len(t) < 3:
        return 0.0
    k = np.arange(len(t), dtype=np.float64)
    d = float(np.polyfit(k, t - t[0], 1)[0])
    bpm = 60.0 / (PPQ * d) if d > 0 else 0.0
    return bpm if 20.0 <= bpm <= 300.0 else 0.0


class MidiClockIn:
    """MIDI clock input: ``on_tempo(bpm, beat_monotonic)`` once a beat (every 24 pulses after ``start``,
    or after the first 24 pulses), ``on_tempo(0.0, None)`` on ``stop`` or after ``timeout_s`` without a
    pulse.  ``port`` is a mido input port (``open_input``) or None to feed ``handle`` directly (tests)."""

    def __init__(self, on_tempo, port=None, timeout_s: float = 1.0):
        self.on_tempo = on_tempo
        self.timeout_s = timeout_s
        self.pulses: list[float] = []  # the last 25 pulse times (monotonic)
        self.count = 0  # pulses since start
        self.running = False
        self.updates = 0
        self.port = port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name="midi-clock-in", daemon=True)
        self._watch.start()
        if port is not None:
            port.callback = lambda msg: self.handle(msg.type, time.monotonic())

    def handle(self, kind: str, t: float) -> None:
        """One incoming realtime message (``clock``, ``start``, ``continue``, ``stop``) at monotonic ``t``."""
        call = None
        with self._lock:
            if kind in ("start", "continue"):
                self.pulses, self.count, self.running = [], 0, True
            elif kind == "stop":
                if self.running:
                    call = (0.0, None)
                self.pulses, self.running = [], False
            elif kind == "clock":
                self.running = True
                self.pulses = (self.pulses + [t])[-(4 * PPQ + 1):]  # up to 4 beats for the tempo fit
                if self.count % PPQ == 0 and len(self.pulses) >= 3:  # pulse 24 k is beat k
                    bpm = clock_in_bpm(np.array(self.pulses))
                    if bpm > 0:
                        call = (bpm, t)
                self.count += 1
        if call is not None:
            self.updates += 1
            self.on_tempo(*call)

    def _watchdog(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                lost = self.running and self.pulses and time.monotonic() - self.pulses[-1] > self.timeout_s
                if lost:
                    self.pulses, self.running = [], False
            if lost:
                self.on_tempo(0.0, None)

    def close(self) -> None:
        self._stop.set()
        self._watch.join(1.0)
        if self.port is not None:
            try:
                self.port.close()
            except Exception as exc:
                log.debug("closing MIDI input: %r", exc)


def open_input(substring: str, api: str | None = None, client_name: str = "momu", virtual: bool = False):
    """A mido input port whose name contains ``substring`` (case-insensitive), or a new virtual one."""
    return _open_port("input", substring, virtual, api, client_name)