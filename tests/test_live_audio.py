"""DAW/loopback audio input for real: a JACK dummy server, a player client wired into `momu live --source audio:...`.

The player plays a 120 BPM click track into JACK; ``jack_connect`` routes it to the engine's input
ports; the engine tracks the music's tempo and drives the (labelled pass-through) dancer from it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from momu_live.live.monitor import OscMonitor, free_udp_port

REPO = Path(__file__).resolve().parents[1]

PLAYER = r"""
import sys, time, numpy as np, sounddevice as sd
sr = 48000
y = np.zeros(sr * 2, np.float32)  # two seconds = four beats at 120 BPM, looped
for b in np.arange(0.0, 2.0, 0.5):
    i = int(b * sr); n = 1200
    y[i:i + n] = 0.6 * np.sin(2 * np.pi * 900 * np.arange(n) / sr) * np.exp(-np.arange(n) / 300.0)
pos = [0]
def cb(out, frames, ti, st):
    idx = (pos[0] + np.arange(frames)) % len(y)
    out[:, 0] = y[idx]
    pos[0] += frames
with sd.OutputStream(device=0, channels=1, samplerate=sr, callback=cb):
    print("playing", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def _ports(env) -> list[str]:
    return subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True).stdout.split()


@pytest.fixture
def jack_env():
    if shutil.which("jackd") is None:
        pytest.fail("jackd (jackd2) is a system dependency of the test suite; install it")
    name = f"momu-live-{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    srv = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "512"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 10
        while "system:capture_1" not in _ports(env):
            assert time.monotonic() < end and srv.poll() is None, "jackd dummy server did not start"
            time.sleep(0.1)
        yield env
    finally:
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()


def test_audio_device_source_through_jack_tracks_music_tempo(jack_env, tmp_path):
    env = jack_env
    player = subprocess.Popen([sys.executable, "-c", PLAYER, "30"], env=env, stdout=subprocess.PIPE, text=True)
    mon = OscMonitor()
    rec = tmp_path / "rec"
    live = None
    try:
        assert player.stdout.readline().strip() == "playing"
        before = set(_ports(env))
        live = subprocess.Popen([sys.executable, "-m", "momu_live.cli", "live", "--source", "audio:system", "--mode",
                                 "music2motion", "--duration", "9", "--record", str(rec), "--osc-port", str(mon.port),
                                 "--control-port", str(free_udp_port())], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 20
        new_in: list[str] = []
        while not new_in:
            assert time.monotonic() < end and live.poll() is None, "momu live opened no JACK input"
            new_in = sorted(p for p in set(_ports(env)) - before if ":in_" in p)
            time.sleep(0.1)
        out_port = sorted(p for p in before if ":out_" in p and not p.startswith("system:"))[0]
        for p in new_in:
            subprocess.run(["jack_connect", out_port, p], env=env, check=True)
        _, err = live.communicate(timeout=40)
    finally:
        player.terminate()
        player.wait(5)
        if live is not None and live.poll() is None:
            live.kill()
        mon.close()
    assert live.returncode == 0, err[-2000:]
    events = [json.loads(x) for x in (rec / "events.jsonl").read_text().splitlines()]
    beats = [e for e in events if e["type"] == "beat"]
    assert len(beats) >= 4, "no beats tracked from the JACK input"
    assert all(b["source"] == "music" for b in beats)
    assert abs(beats[-1]["bpm"] - 120.0) < 2.0, beats[-1]
    iv = np.diff([b["time"] for b in beats[-4:]])
    assert np.allclose(iv, 0.5, atol=0.05), iv
    z = np.load(rec / "poses.npz")
    assert len(z["generated_joints"]) > 50 and np.isfinite(z["generated_joints"]).all()
    assert len(mon.of("/momu/gen/pose/frame")) > 50
