"""Pure Data as a real peer: `pd -nogui` runs the shipped presets/momu_receiver.pd, which receives our OSC
stream (router, puredata preset) and echoes beats, pose frames and status back to a Python socket."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from momu_live.bridge.events import Beat, PoseFrame, Status
from momu_live.bridge.osc import decode_packet, flatten
from momu_live.bridge.preset import presets_dir
from momu_live.bridge.router import Router

PATCH = presets_dir() / "momu_receiver.pd"


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture()
def pd_peer():
    if shutil.which("pd") is None:
        pytest.fail("Pure Data not installed: apt-get install puredata-core (CI installs it)")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.2)
    listen = _free_udp_port()
    proc = subprocess.Popen(
        ["pd", "-nogui", "-noaudio", "-nomidi", "-nrt", "-send",
         f"momu-listen {listen}; momu-reply 127.0.0.1 {rx.getsockname()[1]}", "-open", str(PATCH)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield listen, rx, proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        rx.close()


def _collect(rx, want: int, timeout: float = 5.0):
    got, t0 = [], time.monotonic()
    while len(got) < want and time.monotonic() - t0 < timeout:
        try:
            d, _ = rx.recvfrom(65536)
        except socket.timeout:
            continue
        got += flatten(decode_packet(d))
    return got


def _wait_for_echo(r, rx, proc) -> None:
    """Pd needs a moment to open the patch and bind: ping with beats until the echo comes back, then drain."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r.emit(Beat(999, 0.0, 60.0))
        if _collect(rx, 1, 0.3):
            break
    else:
        pytest.fail(f"no echo from Pd: {proc.stdout.read() if proc.poll() is not None else 'pd running'}")
    while _collect(rx, 1, 0.3):
        pass


def test_pd_receives_stream_and_echoes_it(pd_peer):
    listen, rx, proc = pd_peer
    rng = np.random.default_rng(3)
    joints = rng.normal(size=(6, 18, 3)).astype(np.float32)
    r = Router.from_preset("puredata", {"osc_port": listen})
    try:
        _wait_for_echo(r, rx, proc)
        for k in range(6):
            r.emit(Beat(k, k * 0.5, 120.0 + k, 0.0, k % 4 == 0, "motion"))
            r.emit(PoseFrame(0, k, k / 30, joints[k]))
            r.emit(PoseFrame(1, k, k / 30, joints[k][::-1].copy(), source="generated"))
        r.emit(Status(3.0, "motion2music", {"capture": 1.5, "model": 20.0}, 0, 30.0, 121.0, "ok"))
        r.flush()
        got = _collect(rx, 19)
    finally:
        r.close()
    beats = [m.args for m in got if m.address == "/momu/echo/beat"]
    assert len(beats) == 6
    for k, b in enumerate(beats):
        assert b[:6] == pytest.approx([k, float(int(k * 0.5)), k * 0.5 % 1, 120.0 + k, 0.0, float(k % 4 == 0)])
        assert b[6] == "motion"
    poses = [m.args for m in got if m.address == "/momu/echo/pose/frame"]
    gens = [m.args for m in got if m.address == "/momu/echo/gen/pose/frame"]
    assert len(poses) == 6 and len(gens) == 6
    for k in range(6):  # Pd floats are 32-bit: the round trip is exact for float32 data
        assert poses[k][:4] == pytest.approx([0, k, 0, k / 30]) and len(poses[k]) == 4 + 54
        assert np.array_equal(np.array(poses[k][4:], np.float32), joints[k].reshape(-1))
        assert gens[k][0] == 1 and np.array_equal(np.array(gens[k][4:], np.float32), joints[k][::-1].reshape(-1))
    (status,) = [m.args for m in got if m.address == "/momu/echo/status"]
    assert status[:7] == [3.0, 0.0, "motion2music", 30.0, 121.0, 0.0, "ok"]
    assert status[7:] == ["capture", 1.5, "model", 20.0]


def test_pd_keeps_millisecond_times_after_six_and_a_half_days(pd_peer):
    """Pd's numbers are float32: the (time_s, time_frac) pair survives Pd's round trip with sub-ms resolution
    at t = 6.5 days, where one float32 of seconds has 62.5 ms steps."""
    listen, rx, proc = pd_peer
    t0 = 6.5 * 86400.0
    times = [t0 + 0.001 * k + 0.0004 for k in range(5)]  # 1 ms apart
    joints = np.zeros((18, 3), np.float32)
    r = Router.from_preset("puredata", {"osc_port": listen})
    try:
        _wait_for_echo(r, rx, proc)
        for k, t in enumerate(times):
            r.emit(PoseFrame(0, k, t, joints))
        r.emit(Status(times[-1], "beats", {}, 0, 30.0, 120.0, "ok"))
        r.flush()
        got = _collect(rx, 6)
    finally:
        r.close()
    poses = [m.args for m in got if m.address == "/momu/echo/pose/frame"]
    assert len(poses) == 5
    back = np.array([float(p[2]) + float(p[3]) for p in poses])  # float64 sum of Pd's two float32s
    assert np.abs(back - np.array(times)).max() < 1e-6
    assert np.allclose(np.diff(back), 0.001, atol=1e-6)  # 1 ms steps stay 1 ms steps
    assert len(set(np.float32(times).tolist())) < 5  # what a lone float32 would have made of them
    (status,) = [m.args for m in got if m.address == "/momu/echo/status"]
    assert abs(float(status[0]) + float(status[1]) - times[-1]) < 1e-6
