"""Blender (bpy) as a real peer: presets/blender_receiver.py receives our OSC pose stream and moves the armature.

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


@pytest.mark.skipif(not BLENDER_PY, reason="set MOMU_BLENDER_PYTHON to a python with bpy (opt-in)")
@pytest.mark.parametrize("source", ["pose", "gen"])
def test_blender_armature_follows_osc_poses(source):
    proc = subprocess.Popen([BLENDER_PY, "-c", _CHILD, str(presets_dir() / "blender_receiver.py"), source, "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            line = proc.stdout.readline()
            if line.startswith("{") or not line:
                break
        assert line.startswith("{"), proc.stderr.read()[-3000:]
        port = json.loads(line)["port"]
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
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        res = json.loads(out.strip().splitlines()[-1])
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
