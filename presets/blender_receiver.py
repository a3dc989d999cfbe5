"""momu-live -> Blender: receive pose frames over OSC and drive an armature built from the canonical skeleton.

Runs inside Blender with nothing but the standard library (no python-osc): a non-blocking UDP socket
polled by a ``bpy.app.timers`` timer, an OSC 1.0 parser (messages and bundles), one empty per joint
(``momu_<joint>``) and an armature ``momu`` whose bone ``<child>`` spans parent joint -> child joint
(Copy Location to the parent's empty + Stretch To the child's empty), so the bones follow the dancer.

Accepted messages (``momu live --preset blender`` sends the first kind):

- ``/momu/pose/<person>/<joint>  f x y z``  Blender axes (z up), NodeOSC style;
- ``/momu/pose/frame  i person, i frame, f time, x y z per joint``  canonical axes (y up), converted;
- the same under ``/momu/gen/pose/...`` when ``source="gen"`` (generated poses).

Use: Blender > Scripting > open this file > Run Script (listens on 127.0.0.1:9100), or
``blender --python blender_receiver.py -- --port 9100 --person 0``; install it as an add-on to get
the receiver at start-up.  ``stop()`` (or ``momu_stop()`` in the console) closes the socket.
"""
from __future__ import annotations

import socket
import struct
import sys

bl_info = {
    "name": "momu-live receiver",
    "author": "momu-live",
    "version": (0, 1, 0),
    "blender": (4, 0, 0),
    "location": "runs on load; listens for OSC on 127.0.0.1:9100",
    "description": "Drives an armature from momu-live OSC pose frames",
    "category": "Animation",
}

# The canonical skeleton (momu_live.models.skeleton; a test checks these copies stay equal).
CANONICAL_JOINTS = (
    "pelvis", "spine", "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "l_knee", "l_ankle", "l_toe", "r_hip", "r_knee", "r_ankle", "r_toe",
)
CANONICAL_PARENTS = (-1, 0, 1, 2, 2, 4, 5, 2, 7, 8, 0, 10, 11, 12, 0, 14, 15, 16)
# A T-pose (canonical axes, metres) for the rest pose until the first frame arrives.
REST = {
    "pelvis": (0, 0.95, 0), "spine": (0, 1.2, 0), "neck": (0, 1.45, 0), "head": (0, 1.62, 0),
    "l_shoulder": (0.18, 1.45, 0), "l_elbow": (0.45, 1.45, 0), "l_wrist": (0.70, 1.45, 0),
    "r_shoulder": (-0.18, 1.45, 0), "r_elbow": (-0.45, 1.45, 0), "r_wrist": (-0.70, 1.45, 0),
    "l_hip": (0.1, 0.92, 0), "l_knee": (0.1, 0.5, 0), "l_ankle": (0.1, 0.08, 0), "l_toe": (0.1, 0.02, 0.15),
    "r_hip": (-0.1, 0.92, 0), "r_knee": (-0.1, 0.5, 0), "r_ankle": (-0.1, 0.08, 0), "r_toe": (-0.1, 0.02, 0.15),
}


def to_blender(p):
    """Canonical (y up, dancer faces +z) -> Blender (z up, dancer faces -y)."""
    return (p[0], -p[2], p[1])


# ------------------------------------------------------------------------------------------- OSC parsing
class OscParseError(ValueError):
    pass


def _string(data, pos):
    end = data.find(b"\x00", pos)
    if end < 0:
        raise OscParseError("unterminated string")
    return data[pos:end].decode("utf-8", "replace"), end + 1 + (-(end + 1 - pos) % 4)


def parse_message(data):
    """OSC message bytes -> (address, args)."""
    address, pos = _string(data, 0)
    if pos >= len(data):
        return address, []
    tags, pos = _string(data, pos)
    args = []
    for t in tags[1:]:
        if t in "if":
            if pos + 4 > len(data):
                raise OscParseError("truncated argument")
            args.append(struct.unpack_from(">i" if t == "i" else ">f", data, pos)[0])
            pos += 4
        elif t in "hdt":
            if pos + 8 > len(data):
                raise OscParseError("truncated argument")
            args.append(struct.unpack_from({"h": ">q", "d": ">d", "t": ">Q"}[t], data, pos)[0])
            pos += 8
        elif t in "sS":
            s, pos = _string(data, pos)
            args.append(s)
        elif t == "b":
            (n,) = struct.unpack_from(">i", data, pos)
            args.append(data[pos + 4: pos + 4 + n])
            pos += 4 + n + (-n % 4)
        elif t in "TFNI":
            args.append({"T": True, "F": False, "N": None, "I": float("inf")}[t])
        else:
            raise OscParseError(f"unsupported type tag {t!r}")
    return address, args


def parse_packet(data, depth=0):
    """OSC packet (message or nested bundles) -> list of (address, args)."""
    if data[:8] == b"#bundle\x00":
        if depth > 8:
            raise OscParseError("bundles nested too deep")
        out, pos = [], 16
        while pos + 4 <= len(data):
            (n,) = struct.unpack_from(">i", data, pos)
            if n <= 0 or pos + 4 + n > len(data):
                raise OscParseError("bad bundle element size")
            out += parse_packet(data[pos + 4: pos + 4 + n], depth + 1)
            pos += 4 + n
        return out
    if data[:1] != b"/":
        raise OscParseError("not an OSC packet")
    return [parse_message(data)]


# ------------------------------------------------------------------------------------------- pose state
class PoseState:
    """Latest joint positions (Blender axes) of one person, from either message kind."""

    def __init__(self, person=0, source="pose", joints=CANONICAL_JOINTS):
        self.person, self.joints = int(person), tuple(joints)
        base = "/momu/gen/pose" if source == "gen" else "/momu/pose"
        self.frame_addr = base + "/frame"
        self.joints_addr = "/momu/pose/joints"
        self.prefix = f"{base}/{self.person}/"
        self.pos = {}
        self.frames = self.messages = self.errors = 0

    def handle(self, address, args):
        self.messages += 1
        if address == self.frame_addr:
            if len(args) < 3 or int(args[0]) != self.person:
                return False
            xyz = args[3:]
            for i, name in enumerate(self.joints):
                if 3 * i + 2 < len(xyz):
                    self.pos[name] = to_blender(xyz[3 * i: 3 * i + 3])
            self.frames += 1
            return True
        if address == self.joints_addr and args and all(isinstance(a, str) for a in args):
            self.joints = tuple(args)
            return False
        if address.startswith(self.prefix) and len(args) == 3:
            name = address[len(self.prefix):]
            if name in self.joints:
                self.pos[name] = tuple(float(a) for a in args)
                if name == self.joints[-1]:
                    self.frames += 1
                return True
        return False


# ------------------------------------------------------------------------------------------- Blender side
def build_rig(name="momu", collection_name="momu"):
    """Create (or reuse) the empties ``momu_<joint>`` and the armature ``name`` driven by them."""
    import bpy

    coll = bpy.data.collections.get(collection_name)
    if coll is None:
        coll = bpy.data.collections.new(collection_name)
        bpy.context.scene.collection.children.link(coll)
    empties = {}
    for j in CANONICAL_JOINTS:
        ob = bpy.data.objects.get(f"{name}_{j}")
        if ob is None:
            ob = bpy.data.objects.new(f"{name}_{j}", None)
            ob.empty_display_type = "SPHERE"
            ob.empty_display_size = 0.03
            coll.objects.link(ob)
        ob.location = to_blender(REST[j])
        empties[j] = ob
    arm_ob = bpy.data.objects.get(name)
    if arm_ob is None:
        arm = bpy.data.armatures.new(name)
        arm_ob = bpy.data.objects.new(name, arm)
        coll.objects.link(arm_ob)
        bpy.context.view_layer.objects.active = arm_ob
        bpy.ops.object.mode_set(mode="EDIT")
        for c, p in enumerate(CANONICAL_PARENTS):
            if p < 0:
                continue
            b = arm.edit_bones.new(CANONICAL_JOINTS[c])
            b.head = to_blender(REST[CANONICAL_JOINTS[p]])
            b.tail = to_blender(REST[CANONICAL_JOINTS[c]])
            b.inherit_scale = "NONE"  # a parent's stretch must not scale its children
        for c, p in enumerate(CANONICAL_PARENTS):
            if p > 0:  # bone of joint c hangs from the bone ending at its parent joint
                arm.edit_bones[CANONICAL_JOINTS[c]].parent = arm.edit_bones[CANONICAL_JOINTS[p]]
        bpy.ops.object.mode_set(mode="OBJECT")
        for c, p in enumerate(CANONICAL_PARENTS):
            if p < 0:
                continue
            pb = arm_ob.pose.bones[CANONICAL_JOINTS[c]]
            cl = pb.constraints.new("COPY_LOCATION")
            cl.target = empties[CANONICAL_JOINTS[p]]
            st = pb.constraints.new("STRETCH_TO")
            st.target = empties[CANONICAL_JOINTS[c]]
            st.volume = "NO_VOLUME"
            st.rest_length = arm.bones[CANONICAL_JOINTS[c]].length  # scale = distance / rest length
    return arm_ob, empties


class Receiver:
    """UDP OSC listener driving the rig; ``poll()`` applies everything pending (the timer calls it)."""

    def __init__(self, port=9100, host="127.0.0.1", person=0, source="pose", rig_name="momu"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, int(port)))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.state = PoseState(person, source)
        self.arm, self.empties = build_rig(rig_name)
        self.packets = self.malformed = 0
        self._timer = None

    def poll(self, max_packets=10000):
        """Read all pending datagrams, move the empties to the newest pose; returns packets read."""
        n = 0
        while n < max_packets:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            n += 1
            self.packets += 1
            try:
                for address, args in parse_packet(data):
                    self.state.handle(address, args)
            except (OscParseError, struct.error, ValueError, TypeError):
                self.malformed += 1
        for j, p in self.state.pos.items():
            ob = self.empties.get(j)
            if ob is not None:
                ob.location = p
        return n

    def start(self, interval=1 / 60):
        import bpy

        def tick():
            if self.sock is None:
                return None
            self.poll()
            return interval

        self._timer = tick
        bpy.app.timers.register(tick, persistent=True)
        return self

    def stop(self):
        import bpy

        if self._timer is not None and bpy.app.timers.is_registered(self._timer):
            bpy.app.timers.unregister(self._timer)
        if self.sock is not None:
            self.sock.close()
            self.sock = None


_RECEIVER = None


def momu_start(port=9100, person=0, source="pose", host="127.0.0.1"):
    global _RECEIVER
    momu_stop()
    _RECEIVER = Receiver(port, host, person, source).start()
    print(f"momu receiver: listening on {host}:{_RECEIVER.port} (person {person}, {source})")
    return _RECEIVER


def momu_stop():
    global _RECEIVER
    if _RECEIVER is not None:
        _RECEIVER.stop()
        _RECEIVER = None


stop = momu_stop


def register():
    momu_start()


def unregister():
    momu_stop()


def _cli(argv):
    import argparse

    p = argparse.ArgumentParser(prog="blender --python blender_receiver.py --")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--person", type=int, default=0)
    p.add_argument("--source", choices=["pose", "gen"], default="pose")
    return p.parse_args(argv)


if __name__ == "__main__":
    a = _cli(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
    momu_start(a.port, a.person, a.source, a.host)
