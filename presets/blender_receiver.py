"""momu-live -> Blender: receive pose frames over OSC and drive an armature built from the canonical skeleton.

Runs inside Blender with nothing but the standard library (no python-osc): a non-blocking UDP socket
polled by a ``bpy.app.timers`` timer, an OSC 1.0 parser (messages and bundles), and one of two modes:

- ``mode="empties"`` (default; positions): one empty per joint (``momu_<joint>``) and an armature ``momu``
  whose bone ``<child>`` spans parent joint -> child joint (Copy Location to the parent's empty + Stretch To
  the child's empty), so the bones follow the dancer's positions, stretching as the capture does.
- ``mode="armature"`` (rotations, for retargeting): an armature driven by joint rotations
  (``/momu/pose/rot``): one bone per joint, named after the joint, head at the joint (the layout of a BVH
  import of ``momu``'s rig BVH), rest pose the canonical T-pose (``REST_DIRECTIONS`` x the first frame's
  bone lengths); pose bones in ``QUATERNION`` mode get ``rest^-1 q rest`` (``bone_quaternion``), the root
  bone's location follows the pelvis position.  By default it builds ``momu_rot``; ``armature=NAME`` drives
  an existing armature instead (a user's own rig, whose rest pose must be the same T-pose: z up, facing -y,
  arms along +-x; its object transform, e.g. an FBX import's 90 deg X rotation and 0.01 scale, is accounted
  for; parent it to an empty to place the dance), with ``bone_map`` (``"pelvis=Hips,spine=Spine,..."``)
  naming its bones (unmapped joints: a bone of the joint's name, else skipped).

The rig is built on the first received frame (or with the *Build rig* button / ``bpy.ops.momu.build_rig()``),
never when the add-on is enabled.

Accepted messages (``momu live --preset blender`` sends the first and the third kind):

- ``/momu/pose/<person>/<joint>  f x y z``  Blender axes (z up), NodeOSC style;
- ``/momu/pose/frame  i person, i frame, i time_s, f time_frac, x y z per joint``  canonical axes (y up),
  converted (the older layout with one ``f time`` is accepted too: the argument count tells them apart);
- ``/momu/pose/rot  i person, i frame, i time_s, f time_frac, w x y z per joint``  local joint rotations
  (canonical axes, converted by ``quat_to_blender``; ``CANONICAL_JOINTS`` order);
- the same under ``/momu/gen/pose/...`` when ``source="gen"`` (generated poses).

Three ways to use it:

- **Add-on**: Edit > Preferences > Add-ons > Install from Disk (this file), enable "momu-live receiver".
  Enabling only registers the panel (3D View > Sidebar > momu), the operators ``momu.start``,
  ``momu.stop``, ``momu.build_rig`` and the scene settings ``scene.momu`` (port, host, person, source);
  press *Start* to listen (or tick *Listen at start-up* in the add-on's preferences).
- **Script**: Scripting tab > Open > Run Script, or ``blender --python blender_receiver.py -- --port 9100
  --person 0 --source pose [--mode armature --armature NAME --bone-map MAP]``: registers the same panel and
  starts listening at once.  Running it again
  first stops the previous receiver (it frees the port) and unregisters the previous run's classes.
- **Console**: ``momu_start(port=9100, person=0, source="pose", mode="empties", armature="", bone_map="")``
  and ``momu_stop()`` (installed as
  built-ins while the add-on/script is registered), or ``bpy.ops.momu.start()`` / ``bpy.ops.momu.stop()``.

Only one receiver runs per Blender process, whichever copy of this file started it: its handle lives in
``sys.modules["_momu_receiver_state"]``, so a re-run, the add-on and the console all find it.
"""
import socket
import struct
import sys
import types

bl_info = {
    "name": "momu-live receiver",
    "author": "momu-live",
    "version": (0, 2, 0),
    "blender": (4, 0, 0),
    "location": "3D View > Sidebar > momu (listens for OSC on 127.0.0.1:9100 once started)",
    "description": "Drives an armature from momu-live OSC pose frames",
    "category": "Animation",
}

DEFAULT_PORT = 9100
RIG_NAME = "momu"

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


# T-pose directions of each joint's offset from its parent (momu_live.models.skeleton.REST_DIRECTIONS) and the
# BVH End Sites of the leaves (momu_live.models.bvh): the rest pose of the rotation-driven armature.
REST_DIRECTIONS = (
    (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 1.0, 0.0), (0.0, 1.0, 0.0),
    (1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (-1.0, 0.0, 0.0),
    (1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, -1.0, 0.0), (0.0, -0.287348, 0.957826),
    (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, -1.0, 0.0), (0.0, -0.287348, 0.957826),
)
END_SITES = {"head": (0, 0.12, 0), "l_wrist": (0.08, 0, 0), "r_wrist": (-0.08, 0, 0), "l_toe": (0, 0, 0.04),
             "r_toe": (0, 0, 0.04)}
TAIL_CHILD = {"pelvis": "spine", "neck": "head"}  # bone tail of the joints with several children
ROT_RIG_NAME = "momu_rot"
MODES = ("empties", "armature")


def to_blender(p):
    """Canonical (y up, dancer faces +z) -> Blender (z up, dancer faces -y)."""
    return (p[0], -p[2], p[1])


def quat_to_blender(q):
    """A canonical rotation (w, x, y, z) -> the same rotation in Blender axes: the axis maps as a vector does
    (``to_blender`` is a proper rotation C, and C R C^-1 has the quaternion (w, C v))."""
    return (q[0], *to_blender(q[1:4]))


def _qmul(a, b):
    """Hamilton product of quaternions (w, x, y, z)."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw)


def bone_quaternion(q, rest):
    """Pose-bone ``rotation_quaternion`` of a joint rotation ``q`` (Blender axes, relative to the parent joint in
    the T-pose) for a bone whose rest orientation in the dance frame is ``rest`` (unit quaternion).

    Blender poses a bone as ``P = P_parent B_parent^-1 B Q`` (B the rest orientation, Q the basis); the dancer's
    joint turns the rest bone by its global rotation, ``P = G B``, with ``G = G_parent q``: so ``Q = B^-1 q B``.
    """
    w, x, y, z = rest
    return _qmul(_qmul((w, -x, -y, -z), q), rest)


def rest_positions(lengths=None):
    """T-pose joint positions (canonical axes): ``REST_DIRECTIONS`` x bone lengths from the pelvis at ``REST``'s
    height; ``lengths`` {joint: length of the bone parent -> joint}, default the ``REST`` pose's."""
    pos = {}
    for c, p in enumerate(CANONICAL_PARENTS):
        name = CANONICAL_JOINTS[c]
        if p < 0:
            pos[name] = tuple(float(v) for v in REST[name])
            continue
        par = CANONICAL_JOINTS[p]
        length = (lengths or {}).get(name) or 0.0
        if not length > 1e-3:  # missing or collapsed: Blender deletes zero-length bones
            length = _dist(REST[name], REST[par])
        d = REST_DIRECTIONS[c]
        n = _dist(d, (0.0, 0.0, 0.0))  # the toes' direction is unit to 6 decimals only: normalised as models.rig
        pos[name] = tuple(pos[par][k] + length * d[k] / n for k in range(3))
    return pos


def bone_tails(pos):
    """Tail of each joint's bone (canonical axes) given joint positions ``pos``: the (upward) child, or the End
    Site for a leaf."""
    kids = {}
    for c, p in enumerate(CANONICAL_PARENTS):
        if p >= 0:
            kids.setdefault(CANONICAL_JOINTS[p], []).append(CANONICAL_JOINTS[c])
    out = {}
    for j in CANONICAL_JOINTS:
        if j in kids:
            out[j] = pos[TAIL_CHILD.get(j, kids[j][0])]
        else:
            out[j] = tuple(pos[j][k] + END_SITES[j][k] for k in range(3))
    return out


def _dist(a, b):
    return sum((float(a[k]) - float(b[k])) ** 2 for k in range(3)) ** 0.5


def parse_bone_map(bone_map):
    """``"pelvis=Hips, spine=Spine"`` (or a dict) -> {joint: bone name}; unknown joints raise ValueError."""
    if not bone_map:
        return {}
    if isinstance(bone_map, dict):
        pairs = list(bone_map.items())
    else:
        pairs = [item.split("=", 1) for item in str(bone_map).split(",") if item.strip()]
        if any(len(pr) != 2 for pr in pairs):
            raise ValueError(f"bone map {bone_map!r}: write joint=bone pairs separated by commas")
    out = {str(j).strip(): str(b).strip() for j, b in pairs}
    bad = sorted(set(out) - set(CANONICAL_JOINTS))
    if bad:
        raise ValueError(f"bone map: unknown joints {bad}; joints: {', '.join(CANONICAL_JOINTS)}")
    return out


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
    """Latest joint positions (Blender axes) of one person, from either message kind; ``time`` the stream
    time (seconds) of the newest ``/momu/pose/frame``; ``rot`` the latest joint rotations (Blender axes,
    (w, x, y, z) relative to the parent joint) from ``/momu/pose/rot``, ``rot_frames`` how many came."""

    def __init__(self, person=0, source="pose", joints=CANONICAL_JOINTS):
        self.person, self.joints = int(person), tuple(joints)
        base = "/momu/gen/pose" if source == "gen" else "/momu/pose"
        self.frame_addr = base + "/frame"
        self.rot_addr = base + "/rot"
        self.joints_addr = "/momu/pose/joints"
        self.prefix = f"{base}/{self.person}/"
        self.pos = {}
        self.rot = {}
        self.time = None
        self.frames = self.rot_frames = self.messages = self.errors = 0

    def handle(self, address, args):
        self.messages += 1
        if address == self.rot_addr:
            # i person, i frame, i time_s, f time_frac, w x y z per joint (canonical order and axes)
            if len(args) < 8 or int(args[0]) != self.person:
                return False
            q = args[4:]
            for i, name in enumerate(CANONICAL_JOINTS):
                if 4 * i + 3 < len(q):
                    self.rot[name] = quat_to_blender(tuple(float(v) for v in q[4 * i: 4 * i + 4]))
            self.rot_frames += 1
            return True
        if address == self.frame_addr:
            if len(args) < 3 or int(args[0]) != self.person:
                return False
            # i person, i frame, i time_s, f time_frac, xyz...  (older: i person, i frame, f time, xyz...)
            head = 3 if (len(args) - 3) % 3 == 0 else 4
            self.time = float(args[2]) + (float(args[3]) if head == 4 else 0.0)
            xyz = args[head:]
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
def build_rig(name=RIG_NAME, collection_name=RIG_NAME):
    """Create (or reuse) the empties ``<name>_<joint>`` and the armature ``name`` driven by them."""
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
        if bpy.context.mode != "OBJECT" and bpy.context.view_layer.objects.active is not None:
            bpy.ops.object.mode_set(mode="OBJECT")
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


def find_rig(name=RIG_NAME):
    """``(armature, {joint: empty})`` of an existing rig, or ``(None, None)`` when any part is missing."""
    import bpy

    arm = bpy.data.objects.get(name)
    empties = {j: bpy.data.objects.get(f"{name}_{j}") for j in CANONICAL_JOINTS}
    if arm is None or any(ob is None for ob in empties.values()):
        return None, None
    return arm, empties


def build_rot_armature(name=ROT_RIG_NAME, lengths=None, collection_name=RIG_NAME):
    """Create (or return) the rotation-driven armature ``name``: one bone per joint, named after it, head at the
    joint and tail at its (upward) child or End Site, in the T-pose of ``rest_positions(lengths)`` (Blender
    axes), parented as the skeleton; pose bones in ``QUATERNION`` rotation mode."""
    import bpy

    ob = bpy.data.objects.get(name)
    if ob is not None:
        return ob
    coll = bpy.data.collections.get(collection_name)
    if coll is None:
        coll = bpy.data.collections.new(collection_name)
        bpy.context.scene.collection.children.link(coll)
    if bpy.context.mode != "OBJECT" and bpy.context.view_layer.objects.active is not None:
        bpy.ops.object.mode_set(mode="OBJECT")
    arm = bpy.data.armatures.new(name)
    ob = bpy.data.objects.new(name, arm)
    coll.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    pos = rest_positions(lengths)
    tails = bone_tails(pos)
    bpy.ops.object.mode_set(mode="EDIT")
    for j in CANONICAL_JOINTS:
        b = arm.edit_bones.new(j)
        b.head, b.tail = to_blender(pos[j]), to_blender(tails[j])
    for c, p in enumerate(CANONICAL_PARENTS):
        if p >= 0:
            b = arm.edit_bones[CANONICAL_JOINTS[c]]
            b.parent = arm.edit_bones[CANONICAL_JOINTS[p]]
            b.use_connect = tails[CANONICAL_JOINTS[p]] == pos[CANONICAL_JOINTS[c]]
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in ob.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return ob


def drive_armature(arm, rot, pelvis=None, bone_map=None):
    """Pose armature object ``arm`` from joint rotations ``rot`` {joint: (w, x, y, z) Blender axes} and the root
    location from ``pelvis`` (Blender axes, metres; None: left as it is).

    The dance frame is the armature's parent (the world when it has none): the armature object's own
    transform relative to it (an import's axis rotation and scale) is taken out, so the bones land where the
    dancer's joints are.  Joints without a bone (after ``bone_map``) are skipped; returns the bones driven.
    """
    from mathutils import Vector

    bone_map = bone_map or {}
    frame = arm.matrix_world if arm.parent is None else arm.parent.matrix_world.inverted() @ arm.matrix_world
    frame_q = frame.to_3x3().normalized().to_quaternion()  # rotation of armature space in the dance frame
    bones = arm.pose.bones
    n = 0
    for j in CANONICAL_JOINTS:
        q, pb = rot.get(j), bones.get(bone_map.get(j, j))
        if q is None or pb is None:
            continue
        if pb.rotation_mode != "QUATERNION":
            pb.rotation_mode = "QUATERNION"
        rest = frame_q @ pb.bone.matrix_local.to_quaternion()  # the bone's rest orientation in the dance frame
        pb.rotation_quaternion = bone_quaternion(q, tuple(rest))
        n += 1
    root = bones.get(bone_map.get("pelvis", "pelvis"))
    if pelvis is not None and root is not None:
        head = frame.inverted() @ Vector(pelvis)  # armature space
        base = root.bone.matrix_local  # pose matrix = base @ basis: the head lands at base @ location
        if root.parent is not None:
            base = root.parent.matrix @ root.parent.bone.matrix_local.inverted() @ base
        root.location = base.inverted() @ head
    return n


class Receiver:
    """UDP OSC listener driving the rig; ``poll()`` applies everything pending (the timer calls it).

    The socket is bound here; the rig is looked up by name on every poll that brings news (so a new
    file or a deleted rig never leaves stale references) and built on the first frame if missing.
    ``mode``: ``"empties"`` (positions drive empties and a stretchy armature) or ``"armature"`` (rotations
    drive ``armature``, default the ``momu_rot`` armature built from the first frame's bone lengths;
    ``bone_map`` names a user rig's bones, see ``parse_bone_map``).
    """

    def __init__(self, port=DEFAULT_PORT, host="127.0.0.1", person=0, source="pose", rig_name=RIG_NAME,
                 mode="empties", armature="", bone_map=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.armature_name = mode, armature or ""
        self.bone_map = parse_bone_map(bone_map)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, int(port)))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.person, self.source = int(person), source
        self.state = PoseState(person, source)
        self.rig_name = rig_name
        self.arm, self.empties = None, {}
        self.packets = self.malformed = self.build_errors = 0
        self._timer = None

    @property
    def running(self):
        return self.sock is not None

    def ensure_rig(self):
        """The rig, built if missing: ``(armature, {joint: empty})``."""
        arm, empties = find_rig(self.rig_name)
        if arm is None:
            arm, empties = build_rig(self.rig_name)
        self.arm, self.empties = arm, empties
        return arm, empties

    def ensure_armature(self):
        """The armature ``mode="armature"`` drives: the user's (``armature``) or ``momu_rot``, built if missing
        with the bone lengths of the newest positions (the ``REST`` pose's before any)."""
        import bpy

        if self.armature_name:
            ob = bpy.data.objects.get(self.armature_name)
            if ob is None or ob.type != "ARMATURE":
                raise LookupError(f"no armature object named {self.armature_name!r}")
            self.arm = ob
            return ob
        ob = bpy.data.objects.get(ROT_RIG_NAME)
        if ob is None:
            pos = self.state.pos
            lengths = {CANONICAL_JOINTS[c]: _dist(pos[CANONICAL_JOINTS[c]], pos[CANONICAL_JOINTS[p]])
                       for c, p in enumerate(CANONICAL_PARENTS)
                       if p >= 0 and CANONICAL_JOINTS[c] in pos and CANONICAL_JOINTS[p] in pos}
            ob = build_rot_armature(ROT_RIG_NAME, lengths)
        self.arm = ob
        return ob

    def _apply_rotations(self):
        try:
            arm = self.ensure_armature()
        except Exception as exc:  # no such armature yet, or a modal tool holds the context: next poll
            self.build_errors += 1
            if self.build_errors == 1:
                print(f"momu receiver: cannot drive the armature yet ({exc!r})")
            return
        drive_armature(arm, self.state.rot, self.state.pos.get("pelvis"), self.bone_map)

    def poll(self, max_packets=10000):
        """Read all pending datagrams, move the empties (or pose the armature) to the newest pose; returns
        packets read."""
        n = 0
        while n < max_packets and self.sock is not None:
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
        if self.mode == "armature":
            if n and self.state.rot:
                self._apply_rotations()
            return n
        if n and self.state.pos:
            try:
                arm, empties = self.ensure_rig()
            except Exception as exc:  # e.g. a modal tool holds the context: try again on the next poll
                self.build_errors += 1
                if self.build_errors == 1:
                    print(f"momu receiver: cannot build the rig yet ({exc!r})")
                return n
            for j, p in self.state.pos.items():
                ob = empties.get(j)
                if ob is not None:
                    ob.location = p
        return n

    def start(self, interval=1 / 60):
        import bpy

        def tick():
            if self.sock is None:
                return None  # stopped: the timer unregisters itself
            try:
                self.poll()
            except Exception as exc:  # never let the timer die silently with the socket still bound
                print(f"momu receiver: poll failed: {exc!r}")
            return interval

        self._timer = tick
        bpy.app.timers.register(tick, first_interval=0.0, persistent=True)
        return self

    def stop(self):
        if self._timer is not None:
            try:
                import bpy

                if bpy.app.timers.is_registered(self._timer):
                    bpy.app.timers.unregister(self._timer)
            except ImportError:
                pass
            self._timer = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ------------------------------------------------------------------------------------------- one per process
_STATE_MODULE = "_momu_receiver_state"


def _state():
    """Process-wide holder (``receiver``, ``unregister``) shared by every copy of this file that ran."""
    st = sys.modules.get(_STATE_MODULE)
    if st is None:
        st = types.ModuleType(_STATE_MODULE, "the running momu-live Blender receiver (presets/blender_receiver.py)")
        st.receiver = None
        st.unregister = None
        sys.modules[_STATE_MODULE] = st
    return st


def current_receiver():
    """The running receiver of this Blender process (started by any copy of this file), or None."""
    return _state().receiver


def momu_start(port=DEFAULT_PORT, person=0, source="pose", host="127.0.0.1", mode="empties", armature="",
               bone_map=""):
    """Stop the running receiver (freeing its port), then listen on ``host:port``; returns the receiver.
    ``mode="armature"`` drives an armature by rotations (``armature``: an existing one's name, ``bone_map``
    its bone names), see the module docstring."""
    parse_bone_map(bone_map)  # a bad map fails before the running receiver is stopped
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    momu_stop()
    rx = Receiver(port, host, person, source, mode=mode, armature=armature, bone_map=bone_map).start()
    _state().receiver = rx
    what = f", armature {armature or ROT_RIG_NAME} by rotations" if mode == "armature" else ""
    print(f"momu receiver: listening on {host}:{rx.port} (person {person}, {source}{what})")
    return rx


def momu_stop():
    """Stop the running receiver and close its socket (the port is free afterwards); True if one ran."""
    st = _state()
    rx, st.receiver = st.receiver, None
    if rx is None:
        return False
    rx.stop()
    print(f"momu receiver: stopped (port {rx.port} free)")
    return True


stop = momu_stop


# ------------------------------------------------------------------------------------------- UI (bpy classes)
_CLASSES = None
_CONSOLE_NAMES = ("momu_start", "momu_stop")


def _make_classes():
    import bpy

    class MomuSettings(bpy.types.PropertyGroup):
        port: bpy.props.IntProperty(name="Port", default=DEFAULT_PORT, min=1, max=65535,
                                    description="UDP port momu live sends to (preset blender: 9100)")
        host: bpy.props.StringProperty(name="Host", default="127.0.0.1",
                                       description="address to listen on (0.0.0.0: every interface)")
        person: bpy.props.IntProperty(name="Person", default=0, min=0, description="which dancer drives the rig")
        source: bpy.props.EnumProperty(name="Source", default="pose",
                                       items=[("pose", "Captured", "the dancer's poses (/momu/pose)"),
                                              ("gen", "Generated", "generated poses (/momu/gen/pose)")])
        mode: bpy.props.EnumProperty(
            name="Drive", default="empties",
            items=[("empties", "Positions", "joint empties and a stretchy armature 'momu' follow the positions"),
                   ("armature", "Rotations", "an armature follows the joint rotations (/momu/pose/rot)")])
        armature: bpy.props.StringProperty(
            name="Armature", default="",
            description="rotations: drive this existing armature object (your rig, T-pose rest, z up, facing -y); "
                        "empty: build 'momu_rot'")
        bone_map: bpy.props.StringProperty(
            name="Bone map", default="",
            description="rotations: joint=bone pairs for your rig, e.g. 'pelvis=Hips,spine=Spine' "
                        "(unmapped joints use a bone of the joint's name)")

    class MOMU_OT_start(bpy.types.Operator):
        """Listen for momu-live OSC pose frames (stops a running receiver first)"""
        bl_idname = "momu.start"
        bl_label = "Start"

        def execute(self, context):
            s = context.scene.momu
            try:
                momu_start(s.port, s.person, s.source, s.host, s.mode, s.armature, s.bone_map)
            except OSError as exc:
                self.report({"ERROR"}, f"cannot listen on {s.host}:{s.port} ({exc}); pick another port")
                return {"CANCELLED"}
            except ValueError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            return {"FINISHED"}

    class MOMU_OT_stop(bpy.types.Operator):
        """Stop the momu-live receiver and free its port"""
        bl_idname = "momu.stop"
        bl_label = "Stop"

        def execute(self, context):
            momu_stop()
            return {"FINISHED"}

    class MOMU_OT_build_rig(bpy.types.Operator):
        """Build the rig (at rest) now, before the first frame: joint empties and 'momu' (Positions), or the
        rotation-driven armature 'momu_rot' (Rotations)"""
        bl_idname = "momu.build_rig"
        bl_label = "Build rig"

        def execute(self, context):
            s = getattr(context.scene, "momu", None)
            if s is not None and s.mode == "armature":
                build_rot_armature(ROT_RIG_NAME)
            else:
                build_rig(RIG_NAME)
            return {"FINISHED"}

    class MOMU_PT_receiver(bpy.types.Panel):
        bl_label = "momu-live receiver"
        bl_idname = "MOMU_PT_receiver"
        bl_space_type = "VIEW_3D"
        bl_region_type = "UI"
        bl_category = "momu"

        def draw(self, context):
            col = self.layout.column()
            s = context.scene.momu
            rx = current_receiver()
            col.prop(s, "port")
            col.prop(s, "host")
            col.prop(s, "person")
            col.prop(s, "source")
            col.prop(s, "mode")
            if s.mode == "armature":
                col.prop(s, "armature")
                col.prop(s, "bone_map")
            row = col.row()
            row.operator("momu.start", icon="PLAY")
            row.operator("momu.stop", icon="PAUSE")
            col.operator("momu.build_rig", icon="ARMATURE_DATA")
            if rx is not None and rx.running:
                col.label(text=f"listening on {rx.host}:{rx.port}")
                col.label(text=f"{rx.state.frames} frames, {rx.state.rot_frames} rotation frames")
                col.label(text=f"{rx.packets} packets, {rx.malformed} malformed")
            else:
                col.label(text="stopped")

    classes = [MomuSettings, MOMU_OT_start, MOMU_OT_stop, MOMU_OT_build_rig, MOMU_PT_receiver]
    if __name__ != "__main__":  # loaded as an add-on: its preferences carry "listen at start-up"
        class MomuPreferences(bpy.types.AddonPreferences):
            bl_idname = __name__
            autostart: bpy.props.BoolProperty(
                name="Listen at start-up", default=False,
                description="start the receiver (port 9100 or the scene's) when Blender starts")

            def draw(self, context):
                self.layout.prop(self, "autostart")

        classes.append(MomuPreferences)
    return classes


def _autostart():
    """One-shot timer of the add-on (``autostart`` preference): start listening once Blender is up."""
    import bpy

    try:
        prefs = bpy.context.preferences.addons[__name__].preferences
    except (KeyError, AttributeError):
        return None
    if getattr(prefs, "autostart", False) and current_receiver() is None:
        s = getattr(bpy.context.scene, "momu", None)
        try:
            momu_start(s.port if s else DEFAULT_PORT, s.person if s else 0, s.source if s else "pose",
                       s.host if s else "127.0.0.1", s.mode if s else "empties", s.armature if s else "",
                       s.bone_map if s else "")
        except (OSError, ValueError) as exc:
            print(f"momu receiver: cannot listen at start-up ({exc})")
    return None


def register():
    """Register the classes, ``scene.momu``, the console names (and the autostart timer); builds nothing,
    binds nothing.  A previously registered copy (an earlier script run) is unregistered first."""
    global _CLASSES
    import builtins

    import bpy

    st = _state()
    if st.unregister is not None and st.unregister is not unregister:
        try:
            st.unregister()
        except Exception as exc:
            print(f"momu receiver: unregistering the previous copy failed: {exc!r}")
    if _CLASSES is not None:  # this copy registered already
        return
    _CLASSES = _make_classes()
    for c in _CLASSES:
        bpy.utils.register_class(c)
    bpy.types.Scene.momu = bpy.props.PointerProperty(type=_CLASSES[0])
    builtins.momu_start, builtins.momu_stop = momu_start, momu_stop
    st.unregister = unregister
    if __name__ != "__main__":
        bpy.app.timers.register(_autostart, first_interval=0.5)


def unregister():
    """Stop the receiver, remove the timer, ``scene.momu``, the classes and the console names (idempotent)."""
    global _CLASSES
    import builtins

    import bpy

    st = _state()
    if st.unregister is None or st.unregister is unregister:  # a copy replaced by a later run leaves its receiver
        momu_stop()
        st.unregister = None
    if bpy.app.timers.is_registered(_autostart):
        bpy.app.timers.unregister(_autostart)
    for n in _CONSOLE_NAMES:
        if getattr(builtins, n, None) is globals()[n]:
            delattr(builtins, n)
    if _CLASSES is None:
        return
    if hasattr(bpy.types.Scene, "momu"):
        del bpy.types.Scene.momu
    for c in reversed(_CLASSES):
        try:
            bpy.utils.unregister_class(c)
        except RuntimeError:
            pass
    _CLASSES = None


def _cli(argv):
    import argparse

    p = argparse.ArgumentParser(prog="blender --python blender_receiver.py --")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--person", type=int, default=0)
    p.add_argument("--source", choices=["pose", "gen"], default="pose")
    p.add_argument("--mode", choices=list(MODES), default="empties",
                   help="empties: positions drive empties + a stretchy armature; armature: rotations drive an armature")
    p.add_argument("--armature", default="",
                   help="--mode armature: an existing armature object (default: build momu_rot)")
    p.add_argument("--bone-map", default="", help="--mode armature: joint=bone pairs, e.g. pelvis=Hips,spine=Spine")
    return p.parse_known_args(argv)[0]


def main(argv=None):
    """Script entry: register the UI (replacing an earlier run's), then listen (replacing its receiver)."""
    argv = sys.argv[sys.argv.index("--") + 1:] if argv is None and "--" in sys.argv else (argv or [])
    a = _cli(argv)
    register()
    try:
        import bpy

        s = getattr(bpy.context.scene, "momu", None)
        if s is not None:
            s.port, s.host, s.person, s.source = a.port, a.host, a.person, a.source
            s.mode, s.armature, s.bone_map = a.mode, a.armature, a.bone_map
    except (ImportError, AttributeError):
        pass
    return momu_start(a.port, a.person, a.source, a.host, a.mode, a.armature, a.bone_map)


if __name__ == "__main__":
    main()
