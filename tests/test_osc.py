"""OSC bytes (against the OSC 1.0 spec examples and python-osc), the grammar, UDP transport and the router."""
from __future__ import annotations

import argparse

import gc
import random
import socket
import struct
import time
import tracemalloc

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.bridge import grammar
from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Status
from momu_live.bridge.osc import (
    IMMEDIATELY, Bundle, Message, OscDecodeError, OscEncodeError, Typed, decode_packet, encode_bundle,
    encode_message, flatten, pack_bundles, timetag_from_unix, timetag_to_unix,
)
from momu_live.bridge.router import Router
from momu_live.bridge.transport import OscServer, UdpSender
from momu_live.models.skeleton import CANONICAL_JOINTS


# ------------------------------------------------------------------------------------------------ bytes
def test_spec_example_oscillator():
    # OSC 1.0 spec, "Examples": /oscillator/4/frequency ,f 440.0
    expected = bytes.fromhex("2f6f7363 696c6c61 746f722f 342f6672 65717565 6e637900 2c660000 43dc0000".replace(" ", ""))
    assert encode_message("/oscillator/4/frequency", [440.0]) == expected


def test_spec_example_foo():
    # OSC 1.0 spec: /foo ,iisff 1000 -1 "hello" 1.234 5.678
    expected = bytes.fromhex(
        "2f666f6f 00000000 2c696973 66660000 000003e8 ffffffff 68656c6c 6f000000 3f9df3b6 40b5b22d".replace(" ", ""))
    assert encode_message("/foo", [1000, -1, "hello", 1.234, 5.678]) == expected


def test_string_padding_always_has_a_nul():
    for n in range(0, 9):
        addr = "/" + "a" * n
        b = encode_message(addr, [])
        assert len(b) % 4 == 0
        assert b[len(addr)] == 0  # at least one NUL after the address
        assert decode_packet(b) == Message(addr, [])


def test_all_types_roundtrip_and_python_osc_agrees():
    from pythonosc.osc_message import OscMessage

    args = [7, -(1 << 40), 0.5, "héllo", b"\x01\x02\x03", True, False, None, Typed("d", 0.1), Typed("t", 12345)]
    b = encode_message("/momu/test", args)
    m = decode_packet(b)
    assert m.address == "/momu/test"
    assert m.args[:8] == [7, -(1 << 40), 0.5, "héllo", b"\x01\x02\x03", True, False, None]
    assert m.args[8] == pytest.approx(0.1, abs=0) and m.args[9] == 12345
    assert OscMessage(b).params[:8] == [7, -(1 << 40), 0.5, "héllo", b"\x01\x02\x03", True, False, None]


def test_numpy_args_and_float32_exactness():
    x = np.array([0.1, -2.5, 3.0], np.float32)
    m = decode_packet(encode_message("/a", [np.int64(3), x, np.float64(1.5), np.bool_(True)]))
    assert m.args[0] == 3 and m.args[4] == 1.5 and m.args[5] is True
    assert np.array_equal(np.array(m.args[1:4], np.float32), x)


def test_encode_errors():
    with pytest.raises(OscEncodeError):
        encode_message("noslash", [])
    with pytest.raises(OscEncodeError):
        encode_message("/a", [object()])
    with pytest.raises(OscEncodeError):
        encode_message("/a", [np.zeros((2, 2))])
    with pytest.raises(OscEncodeError):
        encode_message("/a", [Typed("i", 1 << 40)])


def test_bundle_layout_and_nesting():
    inner = encode_message("/x", [1])
    b = encode_bundle([inner, ("/y", [2.0]), Bundle(IMMEDIATELY, [("/z", ["s"])])], timetag=0x0102030405060708)
    assert b[:8] == b"#bundle\x00" and b[8:16] == bytes(range(1, 9))
    assert struct.unpack(">i", b[16:20])[0] == len(inner) and b[20:20 + len(inner)] == inner
    d = decode_packet(b)
    assert isinstance(d, Bundle) and d.timetag == 0x0102030405060708
    assert flatten(d) == [Message("/x", [1]), Message("/y", [2.0]), Message("/z", ["s"])]
    from pythonosc.osc_bundle import OscBundle

    assert [e.address for e in OscBundle(b) if hasattr(e, "address")] == ["/x", "/y"]


def test_timetags():
    t = 1_700_000_000.25
    assert timetag_to_unix(timetag_from_unix(t)) == pytest.approx(t, abs=1e-9)
    assert timetag_from_unix(t) >> 32 == int(t) + 2208988800


def test_pack_bundles_fits_mtu_and_keeps_order():
    rng = np.random.default_rng(0)
    msgs = [(f"/momu/pose/frame", [i, i, i / 30, *rng.normal(size=54).astype(np.float32)]) for i in range(40)]
    msgs += [(f"/momu/beat", [i, 0.5, 120.0]) for i in range(50)]
    packets = pack_bundles(msgs, max_bytes=1472)
    assert all(len(p) <= 1472 for p in packets)
    got = [m for p in packets for m in flatten(decode_packet(p))]
    assert [m.address for m in got] == [a for a, _ in msgs]
    assert [m.args[0] for m in got] == [x[0] for _, x in msgs]
    assert len(packets) < len(msgs) / 3  # really packed
    big = ("/big", [b"x" * 1500])
    with pytest.raises(OscEncodeError):
        pack_bundles([big])
    # a message that fits the MTU but not inside a bundle header goes bare
    bare = ("/b", [b"x" * 1450])
    out = pack_bundles([bare], max_bytes=1472)
    assert len(out) == 1 and out[0][:1] == b"/" and len(out[0]) <= 1472


@pytest.mark.parametrize("data", [
    b"", b"/ab", b"abcd", b"/a\x00\x00,i\x00\x00", b"/a\x00\x00,i\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00",
    b"/a\x00\x00,q\x00\x00", b"/a\x00\x00xi\x00\x00\x00\x00\x00\x01", b"/a\x00\x00,b\x00\x00\x7f\xff\xff\xff",
    b"/a\x00\x00,s\x00\x00abcd", b"#bundle\x00", b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00\x00\x08/a\x00\x00",
    b"#bundle\x00" + b"\x00" * 8 + b"\xff\xff\xff\xfc", b"/a\x00x,i\x00\x00\x00\x00\x00\x01", b"/\xff\xfe\x00",
])
def test_malformed_packets_raise_decode_error(data):
    with pytest.raises(OscDecodeError):
        decode_packet(data)


def test_deeply_nested_bundle_is_rejected():
    b = encode_message("/a", [1])
    for _ in range(20):
        b = encode_bundle([b])
    with pytest.raises(OscDecodeError):
        decode_packet(b)


def test_random_bytes_never_raise_anything_but_decode_error():
    rng = random.Random(1)
    valid = encode_bundle([("/momu/beat", [1, 0.5, 120.0]), ("/x", ["abc", b"zz"])])
    for i in range(3000):
        if i % 2:
            b = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b[: rng.randrange(len(b) + 1)])
        else:
            data = rng.randbytes(rng.randrange(0, 64))
        try:
            decode_packet(data)
        except OscDecodeError:
            pass


# ------------------------------------------------------------------------------------------------ grammar
def _pose(j=18, source="capture", person=0, frame=5):
    joints = np.arange(j * 3, dtype=np.float32).reshape(j, 3) / 10.0
    return PoseFrame(person, frame, 0.25, joints, source=source)


def test_generic_pose_frame_layout():
    (m,) = grammar.pose_frame_messages(_pose())
    assert m[0] == "/momu/pose/frame"
    assert m[1][:4] == [0, 5, 0, 0.25] and len(m[1]) == 4 + 54  # i person, i frame, i time_s, f time_frac
    assert np.allclose(m[1][4:], np.arange(54) / 10.0)
    assert grammar.pose_frame_messages(_pose(source="generated"))[0][0] == "/momu/gen/pose/frame"


def test_nan_joints_and_empty_frames():
    f = _pose()
    f.joints[4] = np.nan
    msgs = dict(grammar.pose_frame_messages(f))
    assert msgs["/momu/pose/frame"][4 + 12: 4 + 15] == [0.0, 0.0, 0.0]
    conf = msgs["/momu/pose/confidence"]
    assert conf[:2] == [0, 5] and conf[2 + 4] == 0.0 and conf[2 + 3] == 1.0
    tj = [a for a, _ in grammar.pose_frame_messages(f, "joints")]
    assert "/momu/pose/0/l_shoulder/tx" not in tj and "/momu/pose/0/l_elbow/tx" in tj
    f.joints[:] = np.nan
    assert grammar.pose_frame_messages(f) == [] and grammar.pose_frame_messages(f, "joints") == []
    # every message the grammar builds encodes (no NaN ever in the generic array)
    f2 = _pose()
    f2.joints[0] = np.inf
    for a, args in grammar.pose_frame_messages(f2):
        assert all(np.isfinite(x) for x in args if isinstance(x, float))


def test_touchdesigner_joints_are_float_only():
    msgs = grammar.pose_frame_messages(_pose(), "joints")
    msgs += grammar.beat_messages(Beat(3, 1.5, 128.0, 0.25, True), "joints")
    msgs += grammar.status_messages(Status(2.0, "beats", {"pose": 12.5}, 1, 30.0, 128.0), "joints")
    for a, args in msgs:
        assert len(args) == 1 and isinstance(args[0], float), (a, args)
        tags = decode_packet(encode_message(a, args))
        assert encode_message(a, args)[len(a) + 4 - len(a) % 4:][:4] == b",f\x00\x00"
        assert tags.address == a
    d = dict(msgs)
    assert d["/momu/pose/0/l_wrist/tx"] == [pytest.approx(1.8)]
    assert d["/momu/pose/0/r_toe/tz"] == [pytest.approx(5.3)]
    assert d["/momu/beat/bpm"] == [128.0] and d["/momu/beat/trigger"] == [1.0] and d["/momu/beat/downbeat"] == [1.0]
    assert d["/momu/status/latency/pose"] == [12.5]


def test_nodeosc_is_blender_axes():
    msgs = dict(grammar.pose_frame_messages(_pose(), "nodeosc"))
    x, y, z = np.arange(54).reshape(18, 3)[CANONICAL_JOINTS.index("head")] / 10.0
    assert msgs["/momu/pose/0/head"] == pytest.approx([x, -z, y])
    assert len(msgs) == 18


def _rig_pose(frame=0, seed=3, person=0, source="capture"):
    """A pose the canonical rig can make (analytic IK is exact on it), float32 as the engine sends."""
    from _rigdata import random_rig

    joints = random_rig(frame + 1, seed=seed).positions()[frame].astype(np.float32)  # (18, 3)
    return PoseFrame(person, frame, frame / 30, joints, source=source)


def _quat_fk(quats, joints):
    """FK of received quaternions (J, 4) with the rest offsets of the frame's own bone lengths, root at the pelvis."""
    from scipy.spatial.transform import Rotation

    from momu_live.models import rig as R

    mats = Rotation.from_quat(np.asarray(quats, np.float64)[:, [1, 2, 3, 0]]).as_matrix()  # (J, 3, 3)
    j = np.asarray(joints, np.float64)[None]  # (1, J, 3)
    return R.fk_np(R.matrix_to_rot6d_np(mats)[None], j[:, 0], R.rest_offsets(R.bone_lengths_of(j)[0]))[0]  # (J, 3)


def test_pose_rot_layout_fields_and_refusals():
    f = _rig_pose(4)
    (m,) = grammar.pose_rot_messages(f)
    assert m[0] == "/momu/pose/rot" and m[1][:4] == [0, 4, 0, pytest.approx(4 / 30)] and len(m[1]) == 4 + 72
    d = grammar.pose_rot_fields(decode_packet(encode_message(*m)).args)
    assert (d["person"], d["frame"], d["quats"].shape) == (0, 4, (18, 4)) and d["time"] == pytest.approx(4 / 30)
    np.testing.assert_allclose(np.linalg.norm(d["quats"], axis=-1), 1.0, atol=1e-6)
    leaves = [CANONICAL_JOINTS.index(n) for n in ("head", "l_wrist", "r_wrist", "l_toe", "r_toe")]
    np.testing.assert_allclose(d["quats"][leaves], np.tile([1.0, 0, 0, 0], (5, 1)), atol=1e-6)
    np.testing.assert_allclose(_quat_fk(d["quats"], f.joints), f.joints, atol=1e-5)
    assert grammar.pose_rot_messages(_rig_pose(source="generated"))[0][0] == "/momu/gen/pose/rot"
    nan = _rig_pose()
    nan.joints[7] = np.nan  # a rotation needs every joint: nothing (receivers hold the last)
    assert grammar.pose_rot_messages(nan) == [] and not grammar.has_rotations(nan)
    missing = _rig_pose()
    missing.confidence = np.ones(18, np.float32)
    missing.confidence[11] = 0.0  # a joint the engine filled with 0.0
    assert grammar.pose_rot_messages(missing) == []
    missing.confidence[11] = 0.2  # uncertain but there
    assert len(grammar.pose_rot_messages(missing)) == 1
    assert grammar.pose_rot_messages(_pose(j=17)) == []  # not the canonical skeleton
    named = _rig_pose()
    named.joint_names = tuple(f"j{i}" for i in range(18))
    assert grammar.pose_rot_messages(named) == []
    with pytest.raises(grammar.GrammarError, match="quaternions"):
        grammar.pose_rot_messages(_rig_pose(), np.zeros((18, 3)))


def test_beat_status_audio_generic():
    (b,) = grammar.beat_messages(Beat(7, 3.5, 121.5, 0.0, True, "music"))
    assert b == ("/momu/beat", [7, 3, 0.5, 121.5, 0.0, 1, "music"])
    assert grammar.beat_fields(b[1]) == {"index": 7, "time": 3.5, "bpm": 121.5, "phase": 0.0, "downbeat": True,
                                         "source": "music"}
    (s,) = grammar.status_messages(Status(9.0, "motion2music", {"capture": 1.0, "model": 40.0}, 2, 29.5, 120.0, "ok"))
    assert s[0] == "/momu/status"
    assert s[1] == [9, 0.0, "motion2music", 29.5, 120.0, 2, "ok", "capture", 1.0, "model", 40.0]
    t = np.linspace(0, 1, 1000, dtype=np.float32)
    (a,) = grammar.audio_messages(AudioBlock(0.5 * np.sin(2 * np.pi * 5 * t), 22050, 1.0))
    assert a[0] == "/momu/audio/level" and a[1][:2] == [1, 0.0]
    assert a[1][2] == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert grammar.beat_messages(Beat(1, 0, 123.0), "ableton") == [("/live/song/set/tempo", [123.0])]
    assert grammar.beat_messages(Beat(1, 0, float("nan")), "ableton") == []


def test_control_parsing():
    c = grammar.parse_control("/momu/engine/set/guidance", [2.5])
    assert (c.object, c.verb, c.prop, c.value) == ("engine", "set", "guidance", 2.5)
    assert grammar.parse_control("/momu/engine/set/steps", [12.0]).value == 12
    assert grammar.parse_control("/momu/transport/set/play", [1]).value is True
    assert grammar.parse_control("/momu/engine/set/mode", ["joint"]).value == "joint"
    assert grammar.parse_control("/momu/engine/stop", []).value is None
    for addr, args in [("/momu/engine/set/mode", ["dance"]), ("/momu/engine/set/guidance", ["x"]),
                       ("/momu/engine/set/guidance", [float("nan")]), ("/momu/tempo/set/bpm", [5000.0]),
                       ("/momu/engine/set/steps", []), ("/momu/nope/set/x", [1])]:
        with pytest.raises(grammar.GrammarError):
            grammar.parse_control(addr, args)
    assert grammar.control_message("engine", "guidance", 3) == ("/momu/engine/set/guidance", [3.0])
    assert grammar.control_message("transport", "play", True) == ("/momu/transport/set/play", [1])


def test_numeric_mode_and_choices_come_from_the_one_mode_list():
    from momu_live.modes import MODES, Mode

    assert grammar.CONTROL_SPECS["/momu/engine/set/mode"].choices == MODES
    for i, m in enumerate(MODES):  # TouchDesigner's OSC Out CHOP sends numbers only
        assert grammar.parse_control("/momu/engine/set/mode", [i]).value == m
        assert grammar.parse_control("/momu/engine/set/mode", [float(i)]).value == m
        assert Mode.parse(m).number == i
    for bad in ([4], [1.5], [-1], [""]):
        with pytest.raises(grammar.GrammarError):
            grammar.parse_control("/momu/engine/set/mode", bad)


def test_control_table_docs_help_and_bindings_agree():
    """One table: docs/OSC.md, momu live --help, the control module's help and the engine bindings."""
    import re
    from pathlib import Path

    from momu_live.cli import build_parser
    from momu_live.live import control as control_mod
    from momu_live.live.engine import EngineConfig, LiveEngine
    from momu_live.live.sources import make_source

    doc = (Path(__file__).resolve().parents[1] / "docs" / "OSC.md").read_text()
    block = re.search(r"<!-- controls:begin[^>]*-->\n(.*?)\n<!-- controls:end -->", doc, re.S)
    assert block is not None and block.group(1) == grammar.controls_markdown()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    live_help = sub.choices["live"].format_help()
    for c in grammar.CONTROLS:
        assert c.address in live_help and c.address in control_mod.__doc__
        assert f"`{c.address}`" in block.group(1)
    # every grammar target has exactly one engine action; a binding that misses one refuses to build
    engine = LiveEngine(EngineConfig(mode="beats"), make_source("none"))
    actions = engine._actions()
    assert set(actions) == set(grammar.CONTROL_TARGETS)
    with pytest.raises(ValueError, match="missing"):
        control_mod.ControlBinding({k: v for k, v in actions.items() if k != "gain"})
    # and the binding applies validated values only
    b = control_mod.ControlBinding(actions)
    assert b.handle("/momu/output/set/gain", [2.0]) and engine.gain == 2.0
    assert not b.handle("/momu/output/set/gain", [9.0]) and engine.gain == 2.0
    assert b.handle("/momu/engine/set/mode", [2]) and engine.settings.pending_mode == "joint"
    assert b.handle(grammar.STEPS_ADDR, [8.0]) and engine.controls[grammar.STEPS_ADDR] == 8
    assert not b.handle("/momu/no/such", [1])
    assert b.counters() == {"applied": 3, "invalid": 1, "unknown": 1, "errors": 0}


# ------------------------------------------------------------------------------------------------ transport
def _rx_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    return s


def _drain(sock, until: float = 0.6) -> list[Message]:
    out, t0 = [], time.monotonic()
    while time.monotonic() - t0 < until:
        try:
            d, _ = sock.recvfrom(65536)
        except socket.timeout:
            break
        assert len(d) <= 8192  # max_bytes "auto" on loopback (bridge.transport.LOOPBACK_MAX_BYTES)
        out += flatten(decode_packet(d))
    return out


def test_udp_sender_counts_errors_and_never_raises():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens: ICMP port unreachable -> ECONNREFUSED on later sends
    u = UdpSender("127.0.0.1", port)
    for _ in range(20):
        u.send_message("/x", [1])
    assert u.sent + u.errors == 20
    u.close()
    assert u.send(b"/x\x00\x00,\x00\x00\x00") is False
    with pytest.raises(MomuError):
        UdpSender("127.0.0.1", 70000)


def test_osc_server_survives_10000_malformed_packets_with_bounded_memory():
    got = []
    srv = OscServer("127.0.0.1", 0, lambda a, args, src: got.append((a, args)), queue_size=256)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(7)
    valid = encode_message("/momu/beat", [1, 0.5, 120.0])
    try:
        tracemalloc.start()
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        sent_valid = 0
        for i in range(10_000):
            kind = i % 4
            if kind == 0:
                data = rng.randbytes(rng.randrange(1, 200))
            elif kind == 1:
                b = bytearray(valid)
                b[rng.randrange(len(b))] ^= 1 + rng.randrange(255)
                data = bytes(b[: rng.randrange(1, len(b) + 1)])
            elif kind == 2:
                data = encode_message(f"/unknown/{i}", [i, "x" * rng.randrange(50)])  # valid but unknown
            else:
                data = b"#bundle\x00" + rng.randbytes(rng.randrange(0, 40))
            tx.sendto(data, ("127.0.0.1", srv.port))
            if i % 25 == 0:
                time.sleep(0.001)  # a hostile-but-paced sender: the test is about survival, not kernel drops
            if i % 500 == 0:
                tx.sendto(encode_message("/momu/ok", [i]), ("127.0.0.1", srv.port))
                sent_valid += 1
                time.sleep(0.002)
        deadline = time.monotonic() + 10
        while srv.packets < 10_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        grown = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert srv.malformed > 3000  # the garbage was seen and counted
        oks = [a for a in got if a[0] == "/momu/ok"]
        assert len(oks) + srv.dropped >= sent_valid and len(oks) >= 0.75 * sent_valid
        # still serving after the storm
        tx.sendto(valid, ("127.0.0.1", srv.port))
        deadline = time.monotonic() + 3
        while ("/momu/beat", [1, 0.5, 120.0]) not in got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ("/momu/beat", [1, 0.5, 120.0]) in got
        assert grown < 8 * 1024 * 1024, f"server memory grew by {grown} bytes"
        assert srv.qsize() <= 256
    finally:
        srv.close()
        tx.close()


def test_osc_server_flood_drops_oldest_and_handler_errors_do_not_kill_it():
    srv = OscServer("127.0.0.1", 0, handler=None, queue_size=64)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(3000):
            tx.sendto(encode_message("/f", [i]), ("127.0.0.1", srv.port))
        time.sleep(0.5)
        assert srv.qsize() <= 64 and srv.dropped > 0
        last = None
        while (item := srv.get(timeout=0.1)) is not None:
            last = item[0][0].args[0]
        assert last is not None and last > 2000  # newest kept
    finally:
        srv.close()
    calls = []

    def bad(a, args, src):
        calls.append(a)
        raise RuntimeError("boom")

    srv = OscServer("127.0.0.1", 0, bad)
    try:
        for i in range(5):
            tx.sendto(encode_message("/b", [i]), ("127.0.0.1", srv.port))
        deadline = time.monotonic() + 3
        while len(calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) == 5 and srv.handler_errors == 5
    finally:
        srv.close()
        tx.close()


def test_osc_server_refuses_busy_port_with_momu_error():
    a = OscServer("127.0.0.1", 0, None)
    try:
        with pytest.raises(MomuError):
            OscServer("127.0.0.1", a.port, None)
    finally:
        a.close()


# ------------------------------------------------------------------------------------------------ router
def test_router_generic_end_to_end_bundles_under_mtu():
    rx = _rx_socket()
    r = Router.from_preset("generic", {"osc_port": rx.getsockname()[1]})
    try:
        for k in range(30):
            r.emit(_pose(frame=k))
            r.emit(_pose(frame=k, person=1))
            if k % 10 == 0:
                r.emit(Beat(k // 10, k / 30, 120.0))
        r.emit(Status(1.0, "beats", {"capture": 2.0}, fps=30.0))
        assert r.flush()
    finally:
        r.close()
    got = _drain(rx)
    rx.close()
    frames = [m for m in got if m.address == "/momu/pose/frame"]
    assert [(m.args[0], m.args[1]) for m in frames[:4]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert len(frames) == 60
    assert np.allclose(frames[7].args[4:], np.arange(54) / 10.0)
    beats = np.array([[b["index"], b["time"], b["bpm"]] for b in
                      (grammar.beat_fields(m.args) for m in got if m.address == "/momu/beat")])
    assert np.allclose(beats, [[0, 0.0, 120.0], [1, 10 / 30, 120.0], [2, 20 / 30, 120.0]])
    assert got[0] == Message("/momu/pose/joints", list(CANONICAL_JOINTS))
    st = [m for m in got if m.address == "/momu/status"]
    assert st and st[0].args[7:] == ["capture", 2.0]


def test_router_touchdesigner_and_ableton_tempo_dedupe():
    td_rx, ab_rx, momu_rx = _rx_socket(), _rx_socket(), _rx_socket()
    td = Router.from_preset("touchdesigner", {"osc_port": td_rx.getsockname()[1]})
    td.emit(_pose())
    td.close()
    names = {m.address for m in _drain(td_rx)}
    assert {f"/momu/pose/0/{j}/{a}" for j in CANONICAL_JOINTS for a in ("tx", "ty", "tz")} <= names
    preset = __import__("momu_live.bridge.preset", fromlist=["load_preset"]).load_preset("ableton")
    preset["targets"][0]["port"] = ab_rx.getsockname()[1]
    preset["listen"]["enabled"] = False
    ab = Router(preset, {"osc_port": momu_rx.getsockname()[1], "midi": False})
    for i, bpm in enumerate([120.0] * 4 + [120.2] * 4 + [121.0] * 8 + [90.0] * 8):  # tempo to Live once a bar
        ab.emit(Beat(i, i * 0.5, bpm, downbeat=i % 4 == 0))
    ab.transport(True)
    ab.close()
    got = _drain(ab_rx)
    assert [m.args[0] for m in got if m.address == "/live/song/set/tempo"] == pytest.approx([120.0, 121.0, 90.0])
    assert [m.address for m in got][-2:] == ["/live/song/start_playing", "/live/song/stop_playing"]
    assert len([m for m in _drain(momu_rx) if m.address == "/momu/beat"]) == 24
    for s in (td_rx, ab_rx, momu_rx):
        s.close()


def test_router_never_blocks_and_counts_drops():
    rx = _rx_socket()
    r = Router.from_preset("generic", {"osc_port": rx.getsockname()[1]}, max_queue=50)
    t0 = time.perf_counter()
    for k in range(5000):
        r.emit(_pose(frame=k))
    dt = time.perf_counter() - t0
    assert dt < 2.0  # a plain append per event
    r.close()
    s = r.stats()
    assert s["dropped"] > 0 and s["emitted"] + s["dropped"] == 5000
    assert s["targets"]["osc"]["sent"] > 0
    rx.close()


def test_router_rejects_bad_overrides_and_presets(tmp_path):
    with pytest.raises(MomuError):
        Router.from_preset("generic", {"osc_prot": 1})
    with pytest.raises(MomuError):
        Router.from_preset("no-such-preset")
    p = tmp_path / "bad.json"
    p.write_text('{"name": "bad", "targets": [{"port": 9000, "style": "fancy"}]}')
    with pytest.raises(MomuError):
        Router.from_preset(str(p))


def test_router_sends_pose_rot_beside_each_frame_and_fk_rebuilds_the_joints():
    """Real UDP: ``/momu/pose/rot`` rides in its frame's datagram; FK of the received quaternions with the rest
    offsets of the received frame's bone lengths gives back the sent joints (analytic IK is exact on poses a rig
    can make; float32 on the wire); signs are continuous per dancer; a frame with a NaN joint goes without."""
    from _rigdata import random_rig

    rx = _rx_socket()
    r = Router.from_preset("generic", {"osc_port": rx.getsockname()[1], "listen": False})
    dance = random_rig(20, seed=21).positions().astype(np.float32)  # (20, 18, 3)
    try:
        for k in range(20):
            r.emit(PoseFrame(0, k, k / 30, dance[k]))
            r.emit(PoseFrame(1, k, k / 30, dance[(k + 7) % 20] + np.float32([2.0, 0.0, 0.0])))  # a second dancer
            r.emit(PoseFrame(0, k, k / 30, dance[19 - k], source="generated"))
        bad = dance[0].copy()
        bad[5] = np.nan
        r.emit(PoseFrame(0, 20, 20 / 30, bad))
        assert r.flush()
        assert r.stats()["targets"]["osc"]["rotations"] and r.targets[0].rotations.solved == 60
    finally:
        r.close()
    grams = _datagrams(rx)
    rx.close()
    assert len(grams) == 61  # one datagram per frame (loopback), rotations inside it
    rots: dict[tuple, list] = {}
    for d in grams:
        msgs = {m.address: m.args for m in flatten(decode_packet(d)) if m.address != "/momu/pose/joints"}
        (obj,) = {a.rsplit("/", 1)[0] for a in msgs}
        frame = grammar.pose_frame_fields(msgs[f"{obj}/frame"])
        if frame["frame"] == 20:  # the NaN frame: positions (0.0 there, confidence 0), no rotations
            assert f"{obj}/rot" not in msgs and f"{obj}/confidence" in msgs
            continue
        rot = grammar.pose_rot_fields(msgs[f"{obj}/rot"])
        assert (rot["person"], rot["frame"], rot["time"]) == (frame["person"], frame["frame"], frame["time"])
        np.testing.assert_allclose(_quat_fk(rot["quats"], frame["joints"]), frame["joints"], atol=1e-5)
        rots.setdefault((obj, rot["person"]), []).append(rot["quats"])
    assert {k: len(v) for k, v in rots.items()} == {("/momu/pose", 0): 20, ("/momu/pose", 1): 20,
                                                    ("/momu/gen/pose", 0): 20}
    for qs in rots.values():
        q = np.stack(qs)  # (20, J, 4)
        assert (np.sum(q[1:] * q[:-1], axis=-1) > 0).all()  # q and -q: the sign nearer the last one sent


@pytest.mark.parametrize("preset,override,sent", [("touchdesigner", None, False), ("puredata", None, False),
                                                  ("generic", False, False), ("puredata", True, True)])
def test_router_pose_rot_follows_the_preset_and_the_override(preset, override, sent):
    rx = _rx_socket()
    r = Router.from_preset(preset, {"osc_port": rx.getsockname()[1], "listen": False, "rotations": override})
    try:
        r.emit(_rig_pose(2))
        assert r.flush()
    finally:
        r.close()
    got = {m.address for m in _drain(rx)}
    rx.close()
    assert ("/momu/pose/rot" in got) is sent and got


def test_router_records_audio_blocks(tmp_path):
    import soundfile as sf

    wav = tmp_path / "gen.wav"
    r = Router.from_preset("generic", {"osc_port": 9, "record": str(wav), "sample_rate": 22050}, max_queue=1)
    x = np.sin(np.arange(22050) * 0.01).astype(np.float32)
    for i in range(0, 22050, 512):
        r.emit(AudioBlock(x[i:i + 512], 22050, i / 22050))
        r.emit(Status(0.0, "x"))  # fills the tiny queue: statuses drop, audio never does
    r.close()
    y, sr = sf.read(wav, dtype="float32")
    assert sr == 22050 and np.array_equal(y, x)


def test_osc_server_keeps_a_30fps_stream_through_a_5k_msg_per_s_flood():
    poses = []
    srv = OscServer("127.0.0.1", 0, lambda a, args, src: poses.append(args[1]) if a == "/momu/pose/frame" else None,
                    queue_size=1024)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    frame = grammar.pose_frame_messages(_pose())[0]
    try:
        t0 = time.monotonic()
        sent_frames, flood = 0, 0
        while (now := time.monotonic()) - t0 < 1.5:
            while flood < (now - t0) * 5000:  # 5k unknown messages per second
                tx.sendto(encode_message("/flood/x", [flood, "junk"]), ("127.0.0.1", srv.port))
                flood += 1
            if sent_frames < (now - t0) * 30:
                tx.sendto(encode_message(frame[0], [0, sent_frames, *frame[1][2:]]), ("127.0.0.1", srv.port))
                sent_frames += 1
            time.sleep(0.0005)
        time.sleep(0.3)
        assert flood >= 7000 and srv.messages >= 0.9 * (flood + sent_frames)
        assert len(poses) >= 0.95 * sent_frames and poses == sorted(poses)
        assert srv.qsize() <= 1024
    finally:
        srv.close()
        tx.close()


def test_touchdesigner_beat_trigger_falls_back_to_zero_over_a_real_socket():
    """A Trigger CHOP needs a rising edge per beat: 1.0 on the beat, 0.0 shortly after."""
    from momu_live.bridge.router import Router
    from momu_live.live.monitor import OscMonitor

    mon = OscMonitor()
    r = Router.from_preset("touchdesigner", {"osc_host": "127.0.0.1", "osc_port": mon.port, "midi": False,
                                             "listen": False})
    try:
        for k in range(3):
            r.emit(Beat(k, 0.5 * k, 120.0))
            time.sleep(0.2)
        deadline = time.monotonic() + 3.0
        while len(mon.of("/momu/beat/trigger")) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        r.close()
        mon.close()
    trig = mon.of("/momu/beat/trigger")
    assert [a[0] for _, a in trig] == [1.0, 0.0] * 3
    gaps = [trig[i + 1][0] - trig[i][0] for i in range(0, 6, 2)]
    assert all(0.03 <= g <= 0.2 for g in gaps), gaps  # released ~TRIGGER_RELEASE_S after each beat


# ------------------------------------------------------------------------------------------------ times, datagrams
SIX_AND_A_HALF_DAYS = 6.5 * 86400.0


def test_time_pair_keeps_microseconds_at_six_and_a_half_days():
    for t in (0.0, 0.25, 1e-7, 59.999999, SIX_AND_A_HALF_DAYS + 0.0123456, 24 * 86400 * 30.0 + 0.5):
        sec, frac = grammar.time_args(t)
        assert isinstance(sec, int) and isinstance(frac, float) and 0.0 <= frac < 1.0
        assert abs(grammar.join_time(sec, frac) - t) < 1e-6
    assert grammar.time_args(0.99999999) == [1, 0.0]  # float32 rounds the fraction up: carried
    assert grammar.time_args(float("nan")) == [0, 0.0] and grammar.time_args(1e12)[0] == 2**31 - 1
    # a lone float32 of seconds has 62.5 ms steps here; the pair tells 1 ms apart
    t = SIX_AND_A_HALF_DAYS + np.arange(5) * 0.001
    assert len(set(np.float32(t).tolist())) < 5
    got = [grammar.join_time(*grammar.time_args(x)) for x in t]
    assert np.allclose(np.diff(got), 0.001, atol=1e-6)


def test_pose_status_audio_times_over_a_real_socket_at_six_and_a_half_days():
    """Encoded, sent, received and decoded: every time argument keeps its microsecond at t = 6.5 days."""
    rx = _rx_socket()
    t0 = SIX_AND_A_HALF_DAYS + 0.0004
    r = Router.from_preset("generic", {"osc_port": rx.getsockname()[1], "listen": False})
    try:
        for k in range(5):
            r.emit(PoseFrame(0, k, t0 + 0.001 * k, np.zeros((18, 3), np.float32)))
        r.emit(Status(t0 + 0.0057, "beats", {"model": 3.0}, fps=30.0))
        r.emit(AudioBlock(np.full(256, 0.5, np.float32), 22050, t0 + 0.0089))
        assert r.flush()
    finally:
        r.close()
    got = _drain(rx)
    rx.close()
    frames = [m.args for m in got if m.address == "/momu/pose/frame"]
    assert len(frames) == 5 and all(isinstance(a[2], int) for a in frames) and all(len(a) == 4 + 54 for a in frames)
    times = np.array([grammar.join_time(a[2], a[3]) for a in frames])
    assert np.abs(times - (t0 + 0.001 * np.arange(5))).max() < 1e-6
    (st,) = [m.args for m in got if m.address == "/momu/status"]
    assert abs(grammar.join_time(st[0], st[1]) - (t0 + 0.0057)) < 1e-6 and st[2] == "beats"
    (lv,) = [m.args for m in got if m.address == "/momu/audio/level"]
    assert abs(grammar.join_time(lv[0], lv[1]) - (t0 + 0.0089)) < 1e-6 and lv[2] == pytest.approx(0.5)
    # TouchDesigner (float-only): whole seconds and fraction as two channels, exact in float32
    d = dict(grammar.status_messages(Status(t0, "beats"), "joints"))
    assert np.float32(d["/momu/status/time_s"][0]) == 561600.0
    assert abs(float(np.float32(d["/momu/status/time_s"][0])) + float(np.float32(d["/momu/status/time_frac"][0]))
               - t0) < 1e-6


def test_udp_sender_max_bytes_auto_by_destination():
    from momu_live.bridge.transport import LOOPBACK_MAX_BYTES, NETWORK_MAX_BYTES

    with UdpSender("127.0.0.1", 9) as u:
        assert u.max_bytes == LOOPBACK_MAX_BYTES >= 8192
    with UdpSender("localhost", 9, max_bytes="auto") as u:
        assert u.max_bytes == LOOPBACK_MAX_BYTES
    with UdpSender("192.0.2.1", 9) as u:  # TEST-NET-1: a network destination, one MTU
        assert u.max_bytes == NETWORK_MAX_BYTES == 1472
    with UdpSender("127.0.0.1", 9, max_bytes=1472) as u:  # explicit values are kept
        assert u.max_bytes == 1472
    with pytest.raises(MomuError):
        UdpSender("127.0.0.1", 9, max_bytes=10)
    from momu_live.bridge.preset import load_preset, validate_preset

    assert {t["max_bytes"] for n in ("generic", "touchdesigner", "blender", "puredata")
            for t in load_preset(n)["targets"]} == {"auto"}
    assert validate_preset({"name": "x", "targets": [{"port": 9}]})["targets"][0]["max_bytes"] == "auto"
    assert validate_preset({"name": "x", "targets": [{"port": 9, "max_bytes": 512}]})["targets"][0]["max_bytes"] == 512
    for bad in ("big", 10, 70000, True, 1472.5):
        with pytest.raises(MomuError, match="max_bytes"):
            validate_preset({"name": "x", "targets": [{"port": 9, "max_bytes": bad}]})


def _datagrams(sock, until: float = 0.6) -> list[bytes]:
    out, t0 = [], time.monotonic()
    while time.monotonic() - t0 < until:
        try:
            out.append(sock.recvfrom(65536)[0])
        except socket.timeout:
            break
    return out


@pytest.mark.parametrize("source", ["capture", "generated"])
def test_touchdesigner_frame_arrives_in_one_datagram_on_loopback(source):
    """A ``joints`` frame (55 one-float messages, ~2.3 KB) used to be split over two 1472-byte datagrams."""
    rx = _rx_socket()
    r = Router.from_preset("touchdesigner", {"osc_host": "127.0.0.1", "osc_port": rx.getsockname()[1],
                                             "listen": False, "midi": False})
    try:
        for k in range(3):
            r.emit(PoseFrame(0, k, k / 30, np.random.default_rng(k).normal(size=(18, 3)).astype(np.float32),
                             source=source))
        assert r.flush()
    finally:
        r.close()
    grams = _datagrams(rx)
    rx.close()
    assert len(grams) == 3  # one datagram per frame
    obj = "gen/pose" if source == "generated" else "pose"
    for k, d in enumerate(grams):
        assert len(d) > 1472 and d.startswith(b"#bundle\x00")
        msgs = flatten(decode_packet(d))
        assert len(msgs) == 1 + 54 and msgs[0] == Message(f"/momu/{obj}/0/frame", [float(k)])
        assert {m.address for m in msgs[1:]} == {f"/momu/{obj}/0/{j}/{a}" for j in CANONICAL_JOINTS
                                                 for a in ("tx", "ty", "tz")}
    # to a network host the same frame is split under the MTU; an explicit max_bytes is honoured
    msgs = grammar.pose_frame_messages(PoseFrame(0, 0, 0.0, np.ones((18, 3), np.float32)), "joints")
    assert len(pack_bundles(msgs, 1472)) == 2 and len(pack_bundles(msgs, 8192)) == 1
