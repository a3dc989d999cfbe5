"""Blender (bpy) as a real peer: presets/blender_receiver.py receives our OSC pose stream and moves the armature;
as an add-on it registers only its UI (the rig comes with the first frame), re-runs as a script free and re-bind the
port, ``momu_stop()`` frees it, unregister removes everything.

Opt-in: needs a Python with ``bpy`` (``python3.11 -m venv /tmp/blender-venv && /tmp/blender-venv/bin/pip install
bpy==5.0.1``) named by ``MOMU_BLENDER_PYTHON``; skipped otherwise.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest

from momu_live.bridge import grammar
from momu_live.bridge.events import PoseFrame
from momu_live.bridge.preset import presets_dir
from momu_live.bridge.router import Router
from momu_live.models.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS

pytestmark = pytest.mark.blender
BLENDER_PY = os.environ.get("MOMU_BLENDER_PYTHON")

_CHILD = r"""
import importlib.util, json, sys, time
import bpy
spec = importlib.util.spec_from_file_location("rx", sys.argv[1])
rx = importlib.util.module_from_spec(spec); spec.loader.exec_module(rx)
bpy.ops.wm.read_factory_settings(use_empty=True)
r = rx.Receiver(port=0, person=0, source=sys.argv[2])
print(json.dumps({"port": r.port}), flush=True)
want = int(sys.argv[3])
deadline = time.monotonic() + 20
while r.state.frames < want and time.monotonic() < deadline:
    r.poll(); time.sleep(0.01)
r.poll()
bpy.context.view_layer.update()
arm = r.arm
out = {"frames": r.state.frames, "packets": r.packets, "malformed": r.malformed, "bones": {}}
for pb in arm.pose.bones:
    h = arm.matrix_world @ pb.head
    t = arm.matrix_world @ pb.tail
    out["bones"][pb.name] = [list(h), list(t)]
out["version"] = bpy.app.version_string
print(json.dumps(out), flush=True)
r.stop()
"""


def _child_result(proc) -> dict:
    """The JSON a Blender child prints last, once it exits (its stderr on failure)."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _child_port(proc) -> int:
    """The port a Blender child prints as its first JSON line (its stderr on failure)."""
    line = ""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        line = proc.stdout.readline()
        if line.startswith("{") or not line:
            break
    assert line.startswith("{"), proc.stderr.read()[-3000:]
    return json.loads(line)["port"]


@pytest.mark.skipif(not BLENDER_PY, reason="set MOMU_BLENDER_PYTHON to a python with bpy (opt-in)")
@pytest.mark.parametrize("source", ["pose", "gen"])
def test_blender_armature_follows_osc_poses(source):
    proc = subprocess.Popen([BLENDER_PY, "-c", _CHILD, str(presets_dir() / "blender_receiver.py"), source, "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = _child_port(proc)
        rng = np.random.default_rng(5)
        base = rng.normal(scale=0.3, size=(18, 3)).astype(np.float32)
        r = Router.from_preset("blender", {"osc_port": port})
        frames = []
        for k in range(5):
            j = base + 0.05 * k
            frames.append(j)
            r.emit(PoseFrame(0, k, k / 30, j, source="generated" if source == "gen" else "capture"))
            r.emit(PoseFrame(1, k, k / 30, j + 10.0))  # another dancer: ignored by a person-0 receiver
            time.sleep(0.02)
        r.close()
        res = _child_result(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert res["frames"] >= 5 and res["malformed"] == 0
    last = grammar.to_blender(frames[-1])  # (18, 3) Blender axes
    for c, p in enumerate(CANONICAL_PARENTS):
        if p < 0:
            continue
        head, tail = (np.array(v) for v in res["bones"][CANONICAL_JOINTS[c]])
        assert np.allclose(head, last[p], atol=1e-4), CANONICAL_JOINTS[c]
        assert np.allclose(tail, last[c], atol=1e-4), CANONICAL_JOINTS[c]
    print("blender", res["version"])


_ADDON_CHILD = r"""
import builtins, json, os, runpy, socket, sys, time
import bpy, addon_utils

path, want = sys.argv[1], int(sys.argv[2])
out = {}


def can_bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def registered():
    return {"panel": hasattr(bpy.types, "MOMU_PT_receiver"), "op": hasattr(bpy.types, "MOMU_OT_start"),
            "scene_prop": hasattr(bpy.types.Scene, "momu"), "console": hasattr(builtins, "momu_stop")}


bpy.ops.wm.read_factory_settings(use_empty=True)
# 1. the add-on: install from the file, enable: classes only, nothing built, nothing bound
assert bpy.ops.preferences.addon_install(filepath=path, overwrite=True) == {"FINISHED"}
mod = addon_utils.enable("blender_receiver", default_set=True, handle_error=None)
state = sys.modules["_momu_receiver_state"]
out["enabled"] = {**registered(), "objects": len(bpy.data.objects), "armatures": len(bpy.data.armatures),
                  "collections": len(bpy.data.collections), "receiver": state.receiver is not None,
                  "autostart_timer": bpy.app.timers.is_registered(mod._autostart)}
# 2. the Start operator listens; the first frames build the rig and drive it
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
bpy.context.scene.momu.port = port
assert bpy.ops.momu.start() == {"FINISHED"}
rx = mod.current_receiver()
tick = rx._timer
out["started"] = {"port": rx.port, "timer": bpy.app.timers.is_registered(tick), "bound": not can_bind(port),
                  "objects_before_frames": len(bpy.data.objects)}
print(json.dumps({"port": port}), flush=True)
deadline = time.monotonic() + 20
ticks = set()
while rx.state.frames < want and time.monotonic() < deadline:
    ticks.add(tick()); time.sleep(0.01)  # bpy as a module runs no event loop: call the timer's function
bpy.context.view_layer.update()
arm = bpy.data.objects["momu"]
out["frames"], out["malformed"], out["ticks"] = rx.state.frames, rx.malformed, sorted(ticks)
out["bones"] = {pb.name: [list(arm.matrix_world @ pb.head), list(arm.matrix_world @ pb.tail)] for pb in arm.pose.bones}
# 3. the Stop operator frees the port and removes the timer
assert bpy.ops.momu.stop() == {"FINISHED"}
out["stopped"] = {"free": can_bind(port), "timer": bpy.app.timers.is_registered(tick),
                  "receiver": state.receiver is not None, "tick_after_stop": tick()}
# 4. disabling the add-on (unregister) removes everything it registered
bpy.ops.momu.start()
tick = mod.current_receiver()._timer
addon_utils.disable("blender_receiver", default_set=True)
out["disabled"] = {**registered(), "free": can_bind(port), "timer": bpy.app.timers.is_registered(tick),
                   "autostart_timer": bpy.app.timers.is_registered(mod._autostart),
                   "receiver": state.receiver is not None}
# 5. the file as a script, twice (Run Script again): the second run stops the first and binds the port again
sys.argv = ["blender", "--", "--port", str(port), "--person", "0"]
g1 = runpy.run_path(path, run_name="__main__")
rx1 = state.receiver
g2 = runpy.run_path(path, run_name="__main__")
rx2 = state.receiver
out["rerun"] = {"first_closed": rx1.sock is None, "second_port": rx2.port, "bound": not can_bind(port),
                "first_timer": bpy.app.timers.is_registered(rx1._timer) if rx1._timer else False,
                "second_timer": bpy.app.timers.is_registered(rx2._timer), **registered(),
                "scene_port": bpy.context.scene.momu.port}
# 6. momu_stop() from the console (a built-in while registered) frees the port
builtins.momu_stop()
out["momu_stop"] = {"free": can_bind(port), "receiver": state.receiver is not None,
                    "timer": bpy.app.timers.is_registered(rx2._timer) if rx2._timer else False}
g2["unregister"]()
out["script_unregistered"] = registered()
out["version"] = bpy.app.version_string
print(json.dumps(out), flush=True)
"""


@pytest.mark.skipif(not BLENDER_PY, reason="set MOMU_BLENDER_PYTHON to a python with bpy (opt-in)")
def test_blender_addon_registers_reruns_and_stops_cleanly(tmp_path):
    env = {**os.environ, "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts"),
           "BLENDER_USER_CONFIG": str(tmp_path / "config")}  # installs the add-on into tmp_path, not ~
    proc = subprocess.Popen([BLENDER_PY, "-c", _ADDON_CHILD, str(presets_dir() / "blender_receiver.py"), "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = _child_port(proc)
        base = np.random.default_rng(6).normal(scale=0.3, size=(18, 3)).astype(np.float32)
        r = Router.from_preset("blender", {"osc_port": port})
        for k in range(5):
            r.emit(PoseFrame(0, k, k / 30, base + 0.05 * k))
            time.sleep(0.02)
        r.close()
        res = _child_result(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    # enabling registers the UI only: no rig, no socket
    assert res["enabled"] == {"panel": True, "op": True, "scene_prop": True, "console": True, "objects": 0,
                              "armatures": 0, "collections": 0, "receiver": False, "autostart_timer": True}
    assert res["started"] == {"port": port, "timer": True, "bound": True, "objects_before_frames": 0}
    # the first frames built the rig (in the timer's function), the rig follows the last frame
    assert res["frames"] >= 5 and res["malformed"] == 0 and res["ticks"] == [pytest.approx(1 / 60)]
    last = grammar.to_blender(base + 0.05 * 4)
    for c, p in enumerate(CANONICAL_PARENTS):
        if p >= 0:
            head, tail = (np.array(v) for v in res["bones"][CANONICAL_JOINTS[c]])
            assert np.allclose(head, last[p], atol=1e-4) and np.allclose(tail, last[c], atol=1e-4), CANONICAL_JOINTS[c]
    assert res["stopped"] == {"free": True, "timer": False, "receiver": False, "tick_after_stop": None}
    assert res["disabled"] == {"panel": False, "op": False, "scene_prop": False, "console": False, "free": True,
                               "timer": False, "autostart_timer": False, "receiver": False}
    assert res["rerun"] == {"first_closed": True, "second_port": port, "bound": True, "first_timer": False,
                            "second_timer": True, "panel": True, "op": True, "scene_prop": True, "console": True,
                            "scene_port": port}
    assert res["momu_stop"] == {"free": True, "receiver": False, "timer": False}
    assert res["script_unregistered"] == {"panel": False, "op": False, "scene_prop": False, "console": False}
    print("blender", res["version"])


_ROT_CHILD = r"""
import importlib.util, json, math, sys, time
import bpy
spec = importlib.util.spec_from_file_location("rx", sys.argv[1])
rx = importlib.util.module_from_spec(spec); spec.loader.exec_module(rx)
bpy.ops.wm.read_factory_settings(use_empty=True)
target, want, lengths = sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
kw = {}
if target == "user":
    # a user's rig as an FBX import makes it: armature space y up in centimetres under the object's 90 deg X
    # rotation and 0.01 scale, moved away; its own bone names and rolls; a root bone above the hips
    pos = rx.rest_positions(lengths)
    tails = rx.bone_tails(pos)
    arm = bpy.data.armatures.new("dancer")
    ob = bpy.data.objects.new("dancer", arm)
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    ob.rotation_euler = (math.pi / 2, 0.0, 0.0)
    ob.scale = (0.01, 0.01, 0.01)
    ob.location = (3.0, 1.0, 0.5)
    bpy.ops.object.mode_set(mode="EDIT")
    root = arm.edit_bones.new("root")
    root.head, root.tail = (0.0, 0.0, 0.0), (0.0, 0.0, 30.0)
    for i, j in enumerate(rx.CANONICAL_JOINTS):
        b = arm.edit_bones.new("DEF-" + j)
        b.head, b.tail = [100 * v for v in pos[j]], [100 * v for v in tails[j]]
        b.roll = 0.4 * i
    for c, p in enumerate(rx.CANONICAL_PARENTS):
        parent = "DEF-" + rx.CANONICAL_JOINTS[p] if p >= 0 else "root"
        arm.edit_bones["DEF-" + rx.CANONICAL_JOINTS[c]].parent = arm.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    kw = {"armature": "dancer", "bone_map": ",".join(f"{j}=DEF-{j}" for j in rx.CANONICAL_JOINTS)}
r = rx.Receiver(port=0, person=0, mode="armature", **kw)
print(json.dumps({"port": r.port}), flush=True)
deadline = time.monotonic() + 20
while r.state.rot_frames < want and time.monotonic() < deadline:
    r.poll(); time.sleep(0.01)
r.poll()
bpy.context.view_layer.update()
arm = r.arm
names = {j: r.bone_map.get(j, j) for j in rx.CANONICAL_JOINTS}
out = {"rot_frames": r.state.rot_frames, "malformed": r.malformed, "name": arm.name, "bones": {},
       "modes": sorted({arm.pose.bones[n].rotation_mode for n in names.values()})}
for j, n in names.items():
    pb = arm.pose.bones[n]
    out["bones"][j] = [list(arm.matrix_world @ pb.head), list(arm.matrix_world @ pb.tail)]
out["version"] = bpy.app.version_string
print(json.dumps(out), flush=True)
r.stop()
"""


@pytest.mark.skipif(not BLENDER_PY, reason="set MOMU_BLENDER_PYTHON to a python with bpy (opt-in)")
@pytest.mark.parametrize("target", ["built", "user"])
def test_blender_armature_follows_osc_rotations(target):
    """``mode="armature"``: /momu/pose/rot drives the bones by quaternions (the built ``momu_rot``, or a user's
    FBX-like rig: other axes, scale, names, rolls, a root bone); every bone's evaluated head and tail lie on
    the FK of the sent rotations with the frame's bone lengths, in Blender axes."""
    import importlib.util

    from scipy.spatial.transform import Rotation

    from _rigdata import random_rig
    from momu_live.models import rig as R
    from momu_live.models.skeleton import BONES

    spec = importlib.util.spec_from_file_location("momu_blender_receiver", presets_dir() / "blender_receiver.py")
    rxmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rxmod)  # its pure parts: END_SITES, TAIL_CHILD
    dance = random_rig(6, seed=31).positions().astype(np.float32)  # (6, 18, 3) a rig's poses
    lengths = {CANONICAL_JOINTS[c]: float(v) for (_, c), v in zip(BONES, R.bone_lengths_of(dance[:1])[0])}
    proc = subprocess.Popen([BLENDER_PY, "-c", _ROT_CHILD, str(presets_dir() / "blender_receiver.py"), target, "6",
                             json.dumps(lengths)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = _child_port(proc)
        r = Router.from_preset("blender", {"osc_port": port})  # nodeosc positions + /momu/pose/rot
        for k in range(6):
            r.emit(PoseFrame(0, k, k / 30, dance[k]))
            r.emit(PoseFrame(1, k, k / 30, dance[0] + 5.0))  # another dancer: ignored
            time.sleep(0.02)
        r.close()
        res = _child_result(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert res["rot_frames"] >= 6 and res["malformed"] == 0 and res["modes"] == ["QUATERNION"]
    assert res["name"] == ("momu_rot" if target == "built" else "dancer")
    # FK of the last frame's rotations (as the wire carries them) with the frame's own bone lengths
    last = dance[-1:].astype(np.float64)  # (1, J, 3)
    q = R.frame_quaternions(last)[0]  # (J, 4)
    mats = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # (J, 3, 3)
    P, G = R.fk_np(R.matrix_to_rot6d_np(mats)[None], last[:, 0], R.rest_offsets(R.bone_lengths_of(last)[0]),
                   return_global=True)
    P, G = P[0], G[0]  # (J, 3), (J, 3, 3)
    np.testing.assert_allclose(P, last[0], atol=1e-5)  # a rig's pose: FK gives back the sent joints
    kids = {CANONICAL_JOINTS[p]: CANONICAL_JOINTS[c] for c, p in reversed(list(enumerate(CANONICAL_PARENTS))) if p >= 0}
    err = 0.0
    for j, name in enumerate(CANONICAL_JOINTS):
        if name in kids:
            tail = P[CANONICAL_JOINTS.index(rxmod.TAIL_CHILD.get(name, kids[name]))]
        else:  # a leaf: its End Site turned by the joint's global rotation
            tail = P[j] + G[j] @ np.asarray(rxmod.END_SITES[name], np.float64)
        want = np.array([grammar.to_blender(P[j]), grammar.to_blender(tail)])  # (2, 3) head, tail in Blender axes
        got = np.array(res["bones"][name])  # (2, 3)
        assert np.allclose(got, want, atol=2e-3), (name, got, want)
        err = max(err, float(np.abs(got - want).max()))
    print("blender", res["version"], target, f"max head/tail error {err * 1e6:.1f} um")
