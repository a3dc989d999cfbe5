"""Presets (data + receiver files), `momu presets`, `momu devices`, and the Blender receiver's stdlib OSC parser."""
from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _jack import jack_server  # noqa: F401  (pytest fixture)
from momu_live.bridge import grammar
from momu_live.bridge.events import PoseFrame
from momu_live.bridge.osc import encode_bundle, encode_message, pack_bundles
from momu_live.bridge.preset import list_presets, load_preset, presets_dir
from momu_live.bridge.router import Router
from momu_live.models.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS

REPO = Path(__file__).resolve().parents[1]


def _momu(*args, env=None, timeout=60):
    """The real console script in its own process (for what depends on the process' environment: JACK)."""
    return subprocess.run([sys.executable, "-m", "momu_live.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def _receiver_module():
    spec = importlib.util.spec_from_file_location("momu_blender_receiver", presets_dir() / "blender_receiver.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # no bpy needed at import time
    return mod


def test_required_presets_exist_and_validate():
    names = list_presets()
    assert {"generic", "ableton", "touchdesigner", "blender", "puredata"} <= set(names)
    for n in names:
        d = load_preset(n)
        assert d["name"] == n and d["targets"] and d["description"]
        for f in d.get("files", []):
            assert (presets_dir() / f).is_file()
    ab = load_preset("ableton")
    assert [(t["port"], t["style"]) for t in ab["targets"]][0] == (11000, "ableton")
    assert ab["listen"]["port"] == 11001 and ab["midi"]["enabled"] and ab["midi"]["clock"]
    td = load_preset("touchdesigner")
    assert td["targets"][0]["port"] == 7000 and td["targets"][0]["style"] == "joints"
    assert load_preset("blender")["targets"][0]["style"] == "nodeosc"


def test_ableton_preset_without_midi_system_still_routes(caplog, monkeypatch):
    monkeypatch.setenv("MOMU_MIDI_API", "UNIX_JACK")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "momu-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with caplog.at_level(logging.WARNING):
        r = Router.from_preset("ableton", {"osc_port": 9, "listen": False})
    r.close()
    assert r.midi is None and "MIDI disabled" in caplog.text


def test_cli_presets_list_and_show(momu_cli):
    r = momu_cli("presets")
    assert r.returncode == 0
    for n in ("generic", "ableton", "touchdesigner", "blender", "puredata"):
        assert n in r.stdout
    r = momu_cli("presets", "show", "blender")
    assert r.returncode == 0 and "blender_receiver.py" in r.stdout and "nodeosc" in r.stdout
    r = momu_cli("presets", "show", "touchdesigner", "--json")
    assert json.loads(r.stdout)["targets"][0]["port"] == 7000
    r = momu_cli("presets", "path", "puredata")
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].endswith("momu_receiver.pd")
    r = momu_cli("presets", "show", "nope")
    assert r.returncode == 2 and "unknown preset 'nope'" in r.stderr and "ableton" in r.stderr


def test_blender_receiver_skeleton_matches_canonical():
    mod = _receiver_module()
    assert tuple(mod.CANONICAL_JOINTS) == tuple(CANONICAL_JOINTS)
    assert tuple(mod.CANONICAL_PARENTS) == tuple(CANONICAL_PARENTS)
    assert set(mod.REST) == set(CANONICAL_JOINTS)


def test_rotations_are_on_for_generic_and_blender_only_and_validated():
    from momu_live import MomuError
    from momu_live.bridge.preset import validate_preset

    on = {n: [t["rotations"] for t in load_preset(n)["targets"]] for n in list_presets()}
    assert on["generic"] == [True] and on["blender"] == [True]
    assert on["touchdesigner"] == [False] and on["puredata"] == [False] and on["ableton"] == [False, False]
    assert validate_preset({"name": "x", "targets": [{"port": 9}]})["targets"][0]["rotations"] is False
    with pytest.raises(MomuError, match="rotations"):
        validate_preset({"name": "x", "targets": [{"port": 9, "rotations": "yes"}]})


def test_blender_receiver_rest_pose_and_quaternion_conversion_match_the_rig():
    """The receiver's copies (stdlib only, it runs inside Blender) agree with their owners: the T-pose is
    ``models.rig``'s rest pose, the leaves' tails the BVH End Sites; ``quat_to_blender`` is ``to_blender``
    applied to a rotation; ``bone_quaternion`` is the basis that turns a bone's rest frame by the joint."""
    from scipy.spatial.transform import Rotation

    from momu_live.models import rig as R
    from momu_live.models.bvh import _END_SITES
    from momu_live.models.skeleton import BONES, REST_DIRECTIONS

    mod = _receiver_module()
    assert mod.REST_DIRECTIONS == REST_DIRECTIONS and mod.END_SITES == _END_SITES
    bones = np.linspace(0.1, 0.5, 17)
    pos = mod.rest_positions({CANONICAL_JOINTS[c]: float(b) for (_, c), b in zip(BONES, bones)})
    ident = np.tile(R._IDENTITY6, (1, 18, 1))
    rest = R.fk_np(ident, np.array([mod.REST["pelvis"]], np.float64), R.rest_offsets(bones))[0]  # (J, 3)
    np.testing.assert_allclose([pos[n] for n in CANONICAL_JOINTS], rest, atol=1e-12)
    C = np.array([grammar.to_blender(e) for e in np.eye(3)]).T  # (3, 3) canonical -> Blender axes
    rots = Rotation.random(20, random_state=4)

    def wxyz(r):
        return r.as_quat()[[3, 0, 1, 2]]

    for r, b in zip(rots, Rotation.random(20, random_state=5)):
        qb = mod.quat_to_blender(tuple(wxyz(r)))
        np.testing.assert_allclose(Rotation.from_quat(np.roll(qb, -1)).as_matrix(), C @ r.as_matrix() @ C.T, atol=1e-12)
        basis = Rotation.from_quat(np.roll(mod.bone_quaternion(qb, tuple(wxyz(b))), -1))
        np.testing.assert_allclose((b * basis).as_matrix(), (Rotation.from_quat(np.roll(qb, -1)) * b).as_matrix(),
                                   atol=1e-12)  # rest B, basis Q: B Q = q B
    assert mod.parse_bone_map("pelvis=Hips, spine = Spine") == {"pelvis": "Hips", "spine": "Spine"}
    with pytest.raises(ValueError, match="unknown joints"):
        mod.parse_bone_map("hips=Hips")
    with pytest.raises(ValueError, match="joint=bone"):
        mod.parse_bone_map("pelvis")
    with pytest.raises(ValueError, match="mode"):
        mod.Receiver(port=0, mode="bones")


def test_blender_receiver_reads_pose_rot_in_blender_axes():
    mod = _receiver_module()
    from _rigdata import random_rig

    j = random_rig(3, seed=2).positions()[2].astype(np.float32)
    frame = PoseFrame(0, 3, 0.1, j)
    (rot,) = grammar.pose_rot_messages(frame)
    st, other, gen = mod.PoseState(person=0), mod.PoseState(person=1), mod.PoseState(person=0, source="gen")
    for pkt in pack_bundles(grammar.pose_frame_messages(frame, "nodeosc") + [rot]):
        for a, args in mod.parse_packet(pkt):
            for s in (st, other, gen):
                s.handle(a, args)
    q = grammar.pose_rot_fields(rot[1])["quats"]  # (J, 4) canonical
    got = np.array([st.rot[n] for n in CANONICAL_JOINTS])
    np.testing.assert_allclose(got, np.array([mod.quat_to_blender(tuple(x)) for x in q]), atol=1e-7)
    assert st.rot_frames == 1 and st.frames == 1 and other.rot == {} and gen.rot == {}


def test_blender_receiver_parses_our_packets_both_styles():
    mod = _receiver_module()
    rng = np.random.default_rng(0)
    j = rng.normal(size=(18, 3)).astype(np.float32)
    frame = PoseFrame(0, 3, 0.1, j)
    expect = grammar.to_blender(j)
    for style in ("nodeosc", "generic"):
        st = mod.PoseState(person=0)
        for pkt in pack_bundles(grammar.pose_frame_messages(frame, style)):
            for a, args in mod.parse_packet(pkt):
                st.handle(a, args)
        got = np.array([st.pos[n] for n in CANONICAL_JOINTS], np.float32)
        assert np.allclose(got, expect, atol=1e-6), style
        assert st.frames == 1
    other = mod.PoseState(person=1)
    for pkt in pack_bundles(grammar.pose_frame_messages(frame, "nodeosc")):
        for a, args in mod.parse_packet(pkt):
            other.handle(a, args)
    assert other.pos == {}
    msgs = mod.parse_packet(encode_bundle([encode_message("/x", [1, 2.5, "s", b"ab", True])]))
    assert msgs == [("/x", [1, 2.5, "s", b"ab", True])]
    with pytest.raises(mod.OscParseError):
        mod.parse_packet(b"garbage!")


def test_momu_devices_sees_jack_audio_and_midi(jack_server):
    env = {**jack_server.env, "MOMU_MIDI_API": "UNIX_JACK"}
    r = _momu("devices", "--json", "--cameras", "5", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert set(d) >= {"cameras", "audio", "midi_outputs", "midi_inputs"}
    assert any(a["name"] == "system" and a["hostapi"].startswith("JACK") and a["outputs"] >= 1 for a in d["audio"])
    assert isinstance(d["cameras"], list)
    r = _momu("devices", env=env)
    assert r.returncode == 0 and "Cameras" in r.stdout and "system" in r.stdout


def test_blender_receiver_reads_the_time_pair_and_the_older_frame_layout():
    mod = _receiver_module()
    j = np.random.default_rng(1).normal(size=(18, 3)).astype(np.float32)
    t = 6.5 * 86400 + 0.0123
    st = mod.PoseState(person=0)
    for pkt in pack_bundles(grammar.pose_frame_messages(PoseFrame(0, 3, t, j))):
        for a, args in mod.parse_packet(pkt):
            st.handle(a, args)
    assert abs(st.time - t) < 1e-6 and st.frames == 1
    assert np.allclose([st.pos[n] for n in CANONICAL_JOINTS], grammar.to_blender(j), atol=1e-6)
    old = mod.PoseState(person=0)  # i person, i frame, f time, xyz... (senders of the earlier grammar)
    for a, args in mod.parse_packet(encode_message("/momu/pose/frame", [0, 3, 1.5, *j.reshape(-1).tolist()])):
        old.handle(a, args)
    assert old.time == 1.5 and np.allclose([old.pos[n] for n in CANONICAL_JOINTS], grammar.to_blender(j), atol=1e-6)
    assert mod.momu_stop() is False  # nothing running: a no-op, also without bpy
