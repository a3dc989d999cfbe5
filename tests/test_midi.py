"""MIDI out through a real JACK MIDI graph: rtmidi output port -> rtmidi input port, beats as notes, 24-ppq clock."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _jack import jack_server  # noqa: F401  (pytest fixture)
from momu_live.bridge.events import Beat
from momu_live.bridge.midi import PPQ, BeatNotes, beat_to_messages, clock_pulse_times

REPO = Path(__file__).resolve().parents[1]


def test_clock_pulse_grid_is_anchored_on_the_beat():
    t = clock_pulse_times(10.0, 120.0, 10.0, 11.0)
    assert len(t) == 48 and t[0] == pytest.approx(10.0)
    assert np.allclose(np.diff(t), 0.5 / PPQ)
    t2 = clock_pulse_times(10.0, 120.0, 9.99, 10.5)  # pulses before the anchor too, same grid
    assert np.allclose((t2 - 10.0) / (0.5 / PPQ), np.round((t2 - 10.0) / (0.5 / PPQ)))


def test_beat_to_messages():
    on, off, dur = beat_to_messages(Beat(0, 0.0, 120.0, downbeat=True), BeatNotes(note=40, downbeat_note=36))
    assert (on.type, on.note, on.velocity, on.channel) == ("note_on", 36, 127, 9)
    assert (off.type, off.note) == ("note_off", 36) and dur == pytest.approx(0.05)
    on, _, _ = beat_to_messages(Beat(1, 0.5, 120.0), BeatNotes(note=40, downbeat_note=36))
    assert (on.note, on.velocity) == (40, 100)


_JACK_MIDI = r"""
import json, subprocess, time
import mido
from momu_live.bridge import midi
from momu_live.bridge.events import Beat
from momu_live.bridge.router import Router

be = midi.backend("UNIX_JACK")
port = midi.open_output("momu-out", virtual=True, api="UNIX_JACK", client_name="momu")
inp = be.open_input("momu-in", virtual=True, client_name="probe")
outs = midi.list_outputs("UNIX_JACK")
subprocess.run(["jack_connect", "momu:momu-out", "probe:momu-in"], check=True)
time.sleep(0.2)
m = midi.MidiOut(port, notes=midi.BeatNotes(), clock=True)
t0 = time.monotonic()
events = []
bpm = 150.0
for k in range(5):  # beats at 150 BPM, 0.4 s apart
    m.beat(Beat(k, k * 0.4, bpm, downbeat=(k % 4 == 0)))
    while time.monotonic() < t0 + (k + 1) * 60.0 / bpm:
        for msg in inp.iter_pending():
            events.append((time.monotonic() - t0, msg.type, getattr(msg, "note", None), getattr(msg, "velocity", None)))
        time.sleep(0.001)
m.close(close_port=False)
time.sleep(0.2)
for msg in inp.iter_pending():
    events.append((time.monotonic() - t0, msg.type, getattr(msg, "note", None), getattr(msg, "velocity", None)))
# the ableton preset's MIDI sink by name substring (a non-virtual port opened through the router)
r = Router.from_preset("ableton", {"osc_port": 9, "midi_port": "probe", "listen": False})
r.emit(Beat(0, 0.0, 100.0, downbeat=True))
r.close()
port.close()
print(json.dumps({"events": events, "stats": m.stats(), "outs": outs, "router": r.stats().get("midi")}))
"""


def test_jack_midi_beats_and_clock_arrive(jack_server):
    r = subprocess.run([sys.executable, "-c", _JACK_MIDI], env={**jack_server.env, "MOMU_MIDI_API": "UNIX_JACK"},
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ev = res["events"]
    types = [e[1] for e in ev]
    assert types[0] == "start" and types[-1] in ("stop", "control_change")
    assert "stop" in types
    ons = [e for e in ev if e[1] == "note_on"]
    assert [(e[2], e[3]) for e in ons] == [(36, 127), (36, 100), (36, 100), (36, 100), (36, 127)][: len(ons)]
    offs = [e for e in ev if e[1] == "note_off"]
    assert len(ons) == 5 and len(offs) == 5, [e for e in ev if e[1] != "clock"]
    for on, off in zip(ons, offs):  # 50 ms notes
        assert 0.03 < off[0] - on[0] < 0.2 and off[2] == on[2]
    # MIDI clock: 24 pulses per beat at 150 BPM -> 60 Hz; 5 beats = 2 s -> ~120 pulses (2 cores: allow jitter)
    clocks = np.array([e[0] for e in ev if e[1] == "clock"])
    assert 110 <= len(clocks) <= 122, len(clocks)
    period = np.median(np.diff(clocks))
    assert period == pytest.approx(60.0 / 150.0 / 24, rel=0.15)
    # each beat's note-on is followed within ~1 pulse by a clock pulse (grid re-anchored on the beat)
    for t_on in [e[0] for e in ons]:
        assert np.min(np.abs(clocks - t_on)) < 0.02
    assert any("probe" in n for n in res["outs"])  # the probe's input is a destination we can open by name
    assert res["router"]["sent"] >= 2 and res["router"]["errors"] == 0


_JACK_CLOCK_IN = r"""
import json, subprocess, threading, time
import mido
from momu_live.bridge import midi
from momu_live.live.backend import make_backend
from momu_live.live.engine import EngineConfig, LiveEngine
from momu_live.live.sources import make_source

be = midi.backend("UNIX_JACK")
src = be.open_output("clock-out", virtual=True, client_name="daw")  # a DAW sending MIDI clock
port = be.open_input("clock-in", virtual=True, client_name="momu")
subprocess.run(["jack_connect", "daw:clock-out", "momu:clock-in"], check=True)
engine = LiveEngine(EngineConfig(mode="beats"), make_source("none"), make_backend("beats"))
clock_in = midi.MidiClockIn(lambda bpm, at: engine.external_tempo(bpm, "midi clock", at), port)
runner = threading.Thread(target=engine.run, kwargs={"duration": 6.0})
runner.start()
time.sleep(0.3)
src.send(mido.Message("start"))
t0 = time.monotonic()
period = 60.0 / 132.0 / 24  # 132 BPM at 24 pulses per quarter note
k = 0
held = []
while time.monotonic() < t0 + 3.0:
    while time.monotonic() < t0 + k * period:
        time.sleep(0.0005)
    src.send(mido.Message("clock"))
    k += 1
    held.append((engine.tempo_origin, engine.tracker.bpm))
src.send(mido.Message("stop"))
time.sleep(0.5)
after = engine.tempo_origin
engine.stop()
runner.join(10)
clock_in.close()
src.close()
print(json.dumps({"origin": held[-1][0], "bpm": held[-1][1], "after": after, "beats": engine.beats_sent}))
"""


def test_jack_midi_clock_in_holds_the_engine_tempo_until_stop(jack_server):
    """A real JACK MIDI clock at 132 BPM drives the engine's beat clock; MIDI stop hands the tempo back."""
    r = subprocess.run([sys.executable, "-c", _JACK_CLOCK_IN], env={**jack_server.env, "MOMU_MIDI_API": "UNIX_JACK"},
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["origin"] == "midi clock" and abs(res["bpm"] / 132.0 - 1) < 0.04, res  # within 4 % (a loaded sender)
    assert res["after"] == "" and res["beats"] >= 3, res  # stop handed it back; beats went out meanwhile
