"""Audio I/O: ring buffer, streaming resampler, crash-safe WAV recording, and real audio through a JACK dummy server."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _jack import jack_server  # noqa: F401  (pytest fixture)
from momu_live.bridge.audio_io import RingBuffer, StreamResampler, WavRecorder
from momu_live.bridge.events import AudioBlock

REPO = Path(__file__).resolve().parents[1]


def test_ring_buffer_wraps_overflows_and_underruns():
    rb = RingBuffer(10)
    assert np.all(rb.read(4) == 0) and rb.underruns == 0  # not primed yet: silence before audio is no underrun
    rb.write(np.arange(6, dtype=np.float32))
    assert np.array_equal(rb.read(4)[:, 0], [0, 1, 2, 3])
    rb.write(np.arange(6, 14, dtype=np.float32))  # 2 left + 8 = 10: exactly full, wraps
    assert len(rb) == 10 and rb.overflows == 0
    rb.write(np.array([14, 15], np.float32))  # drops the 2 oldest
    assert rb.overflows == 2
    assert np.array_equal(rb.read(10)[:, 0], np.arange(6, 16))
    out = rb.read(3)
    assert np.all(out == 0) and rb.underruns == 1 and rb.underrun_frames == 3
    rb.write(np.arange(25, dtype=np.float32))  # longer than the ring: keeps the newest 10
    assert np.array_equal(rb.read(10)[:, 0], np.arange(15, 25))


def test_ring_buffer_chunked_equals_whole():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000).astype(np.float32)
    rb, out, i = RingBuffer(700), [], 0
    while i < len(x) or len(rb):
        if i < len(x) and len(rb) < 500:
            n = int(rng.integers(1, 200))
            rb.write(x[i:i + n])
            i += n
        k = min(len(rb), int(rng.integers(1, 300)))
        out.append(rb.read(k)[:, 0])
    assert np.array_equal(np.concatenate(out), x) and rb.overflows == 0 and rb.underruns == 0


def test_ring_buffer_stereo_from_mono():
    rb = RingBuffer(8, channels=2)
    rb.write(np.array([1, 2, 3], np.float32))
    assert np.array_equal(rb.read(3), [[1, 1], [2, 2], [3, 3]])


def test_stream_resampler_chunked_equals_whole():
    rng = np.random.default_rng(0)
    x = rng.normal(size=22050).astype(np.float32)
    whole = StreamResampler(22050, 48000)(x, last=True)
    rs = StreamResampler(22050, 48000)
    cuts = [0, 100, 613, 5000, 5001, 12000, 22050]
    parts = [rs(x[a:b], last=(b == len(x))) for a, b in zip(cuts, cuts[1:])]
    chunked = np.concatenate(parts)
    assert len(whole) == len(chunked) and abs(len(whole) - 48000) <= 2
    assert np.allclose(whole, chunked, atol=1e-6)
    assert StreamResampler(22050, 22050)(x) is not None and np.array_equal(StreamResampler(22050, 22050)(x), x)


def test_wav_recorder_writes_incrementally(tmp_path):
    p = tmp_path / "rec.wav"
    x = np.sin(np.arange(5000) * 0.05).astype(np.float32)
    with WavRecorder(p, 22050) as rec:
        rec.write(x[:1000])
        y, sr = sf.read(p, dtype="float32")  # readable while still open: header already up to date
        assert sr == 22050 and np.array_equal(y, x[:1000])
        rec.write(AudioBlock(x[1000:], 22050, 1000 / 22050))
        rec.write(np.array([np.nan, np.inf], np.float32))
    y, _ = sf.read(p, dtype="float32")
    assert np.array_equal(y[:5000], x) and np.array_equal(y[5000:], [0.0, 0.0])


_CRASH = r"""
import faulthandler, signal, sys, time, numpy as np
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test dumps the stacks if SIGINT does not end it
from momu_live.bridge.audio_io import WavRecorder
rec = WavRecorder(sys.argv[1], 22050)
k = 0
while True:
    rec.write(np.full(1024, (k % 100) / 100.0, np.float32))
    k += 1
    print(k, flush=True)
    time.sleep(0.005)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_wav_recorder_loses_at_most_one_block_on_crash(tmp_path, sig):
    p = tmp_path / "crash.wav"
    err = open(tmp_path / "stderr.txt", "w+")
    # a background job of a non-interactive shell (nohup ... &, some CI runners) inherits SIGINT ignored, and Python then
    # never raises KeyboardInterrupt: give the child the disposition of a terminal's foreground job, as Ctrl-C meets it
    proc = subprocess.Popen([sys.executable, "-c", _CRASH, str(p)], stdout=subprocess.PIPE, stderr=err, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    done = 0
    for line in proc.stdout:
        done = int(line)
        if done >= 40:
            break
    proc.send_signal(sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:  # a hang on Ctrl-C is a bug: show where the process sits
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        proc.kill()
        proc.wait(5)
        err.seek(0)
        pytest.fail(f"{sig.name} did not end the recording process within 20 s; its stacks:\n{err.read()[-4000:]}")
    y, sr = sf.read(p, dtype="float32")
    assert sr == 22050
    lost_at_most = 1 if sig == signal.SIGKILL else 0  # SIGINT: the recorder closes cleanly at exit
    assert len(y) >= (done - lost_at_most) * 1024 and len(y) % 1024 == 0
    blocks = y.reshape(-1, 1024)
    assert np.allclose(blocks[:, 0], (np.arange(len(blocks)) % 100) / 100.0)


_LOOPBACK = r"""
import json, subprocess, sys, time
import numpy as np
from momu_live.bridge.audio_io import AudioInput, AudioOutput, find_device
from momu_live import MomuError

sr = 22050
t = np.arange(int(1.0 * sr)) / sr
chirp = (0.5 * np.sin(2 * np.pi * (200 * t + (4000 - 200) / 2 * t ** 2))).astype(np.float32)  # 200 Hz -> 4 kHz in 1 s
inp = AudioInput("system", sr, blocksize=256)
out = AudioOutput("syst", sr, buffer_s=4.0)
for a, b in [("system:capture_1", "PortAudio:in_0"), ("PortAudio:out_0", "system:playback_1")]:
    subprocess.run(["jack_disconnect", a, b], capture_output=True)
subprocess.run(["jack_connect", "PortAudio:out_0", "PortAudio:in_0"], check=True)
time.sleep(0.3)
drain_end = time.monotonic() + 0.5  # drop what queued up before the loop was connected (bounded:
while time.monotonic() < drain_end:   # a live input never runs dry, so "until empty" may never end)
    inp.read(timeout=0.05)
silence = np.zeros(int(0.3 * sr), np.float32)
out.write(silence); out.write(chirp); out.write(silence)
blocks = []
deadline = time.monotonic() + 6.0
got = 0
while got < int(2.2 * sr) and time.monotonic() < deadline:
    b = inp.read(timeout=0.5)
    if b is not None:
        blocks.append(b)
        got += len(b.samples)
time.sleep(0.3)  # ring drains: playing silence now counts underruns
res = {"out": out.stats(), "in": inp.stats(), "times": [b.time for b in blocks], "lens": [len(b.samples) for b in blocks],
       "rates": sorted({b.sample_rate for b in blocks})}
rec = np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(1, np.float32)
np.save(sys.argv[1], rec)
np.save(sys.argv[2], chirp)
try:
    find_device("no-such-card", "output")
    res["err"] = ""
except MomuError as e:
    res["err"] = str(e)
inp.close(); out.close()
import sounddevice as sd
sd._terminate()
print(json.dumps(res))
"""


def test_jack_loopback_chirp_arrives_by_content(jack_server, tmp_path):
    rec_p, ref_p = tmp_path / "rec.npy", tmp_path / "ref.npy"
    r = subprocess.run([sys.executable, "-c", _LOOPBACK, str(rec_p), str(ref_p)], env=jack_server.env,
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    rec, ref = np.load(rec_p), np.load(ref_p)
    assert res["rates"] == [22050]
    # stream time comes from the sample count: contiguous, no drift
    assert np.allclose(np.diff(res["times"]), np.array(res["lens"][:-1]) / 22050)
    # find the chirp in the recording (went 22.05k -> 48k -> JACK -> 48k -> 22.05k)
    assert len(rec) > len(ref)
    corr = np.correlate(rec, ref, mode="valid")  # (len(rec) - len(ref) + 1,)
    lag = int(np.argmax(np.abs(corr)))
    seg = rec[lag: lag + len(ref)]
    ncc = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12))
    print(f"loopback: normalised correlation {ncc:.4f} at lag {lag} samples, stats {res}"[:400])
    assert ncc > 0.8, f"normalised correlation {ncc:.3f} at lag {lag}"
    assert abs(np.std(seg) - np.std(ref)) < 0.1 * np.std(ref)  # unity gain through the loop
    assert res["out"]["underruns"] >= 1  # the drained ring was noticed
    assert "no audio output device matches 'no-such-card'" in res["err"] and "system" in res["err"]
