"""BVH import (hierarchy + channels -> forward kinematics -> canonical joints) and export.

Import: ``read_bvh`` parses any BVH (ROOT/JOINT/End Site, per-joint CHANNELS in any order, position
channels on any joint).  ``Bvh.positions()`` runs forward kinematics: a joint's local transform is
``T(offset or its position channels) @ R(c1) @ R(c2) @ R(c3)`` in the listed channel order
(intrinsic Euler, the BVH convention), world = parent world @ local.  ``load_bvh`` maps the rig to
the canonical skeleton by joint *names* (CMU, Mixamo, AIST++/SMPL, Daz "lShldr", Blender-style
".L" names; see ``rig_mapping``), converts units to metres and the up axis to +y.

Export: ``export_bvh(motion, path)`` writes a rigged BVH of the canonical skeleton that Blender
imports: rest offsets from the mean bone lengths along T-pose directions (arms along +-x, legs
down, toes forward; the pelvis/neck child triangles keep their mean shape), root translation =
pelvis, per-frame joint rotations solved from positions: the pelvis and neck turn with the frame
spanned by their left-right children and their upward child, every other joint takes the minimal
rotation that swings its rest bone onto the observed bone (twist inherited from the parent).
Positions of a motion with constant bone lengths come back exactly (up to the 6-decimal text);
see the README for the round-trip tolerance measured on real capture.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS, JOINT_INDEX

_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass
class BvhJoint:
    name: str
    parent: int  # -1 for the root
    offset: np.ndarray  # (3,)
    channels: tuple[str, ...] = ()
    end_site: bool = False


@dataclass
class Bvh:
    joints: list[BvhJoint]
    frame_time: float
    motion: np.ndarray  # (T, n_channels) float64
    channel_start: list[int] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def n_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        fps = 1.0 / self.frame_time
        return float(round(fps)) if abs(fps - round(fps)) < 1e-3 * fps else fps

    def positions(self, frames: np.ndarray | None = None) -> np.ndarray:
        """World positions (T, J, 3) of every joint and end site (file units, file axes)."""
        from scipy.spatial.transform import Rotation

        data = self.motion if frames is None else self.motion[frames]
        T = data.shape[0]
        J = len(self.joints)
        pos = np.zeros((T, J, 3))
        rot = np.zeros((T, J, 3, 3))
        for j, jt in enumerate(self.joints):
            t = np.broadcast_to(jt.offset, (T, 3)).copy()  # (T, 3)
            R = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()  # (T, 3, 3)
            if jt.channels:
                vals = data[:, self.channel_start[j]: self.channel_start[j] + len(jt.channels)]  # (T, C)
                rot_axes = "".join(c[0].upper() for c in jt.channels if c.lower().endswith("rotation"))
                rot_vals = np.stack([vals[:, i] for i, c in enumerate(jt.channels) if c.lower().endswith("rotation")], -1) if rot_axes else None
                pos_ch = [(i, c) for i, c in enumerate(jt.channels) if c.lower().endswith("position")]
                if pos_ch:  # position channels replace the offset (common reader convention)
                    for i, c in pos_ch:
                        t[:, _AXES[c[0].upper()]] = vals[:, i]
                if rot_axes:
                    R = Rotation.from_euler(rot_axes, rot_vals, degrees=True).as_matrix()  # intrinsic
            if jt.parent < 0:
                pos[:, j], rot[:, j] = t, R
            else:
                Rp = rot[:, jt.parent]  # (T, 3, 3)
                pos[:, j] = pos[:, jt.parent] + np.einsum("tij,tj->ti", Rp, t)
                rot[:, j] = Rp @ R
        return pos


def parse_bvh(text: str, source: str = "<text>") -> Bvh:
    """Parse BVH text; MomuError naming the line on malformed input."""
    tokens = text.split()
    i = 0

    def err(msg):
        return MomuError(f"{source}: not a valid BVH ({msg})")

    def need(k=1):
        if i + k > len(tokens):
            raise err("unexpected end of file")

    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise err("first word must be HIERARCHY")
    i = 1
    joints: list[BvhJoint] = []
    stack: list[int] = []
    pending: int | None = None
    n_ch = 0
    starts: list[int] = []
    while True:
        need()
        tok = tokens[i]
        up = tok.upper()
        if up in ("ROOT", "JOINT"):
            need(2)
            name = tokens[i + 1]
            parent = stack[-1] if stack else -1
            if up == "ROOT" and joints:
                raise err("only one ROOT is supported")
            joints.append(BvhJoint(name, parent, np.zeros(3)))
            starts.append(n_ch)
            pending = len(joints) - 1
            i += 2
        elif up == "END":
            need(2)
            parent = stack[-1]
            joints.append(BvhJoint(f"{joints[parent].name}_End", parent, np.zeros(3), end_site=True))
            starts.append(n_ch)
            pending = len(joints) - 1
            i += 2
        elif tok == "{":
            if pending is None:
                raise err("'{' without a joint")
            stack.append(pending)
            pending = None
            i += 1
        elif tok == "}":
            if not stack:
                raise err("unbalanced '}'")
            stack.pop()
            i += 1
            if not stack:
                break
        elif up == "OFFSET":
            need(4)
            try:
                joints[stack[-1]].offset = np.array([float(x) for x in tokens[i + 1: i + 4]])
            except (ValueError, IndexError):
                raise err(f"bad OFFSET near joint {joints[stack[-1]].name if stack else '?'}") from None
            i += 4
        elif up == "CHANNELS":
            need(2)
            try:
                k = int(tokens[i + 1])
            except ValueError:
                raise err("CHANNELS count is not an integer") from None
            need(2 + k)
            chans = tuple(tokens[i + 2: i + 2 + k])
            for c in chans:
                if c[0].upper() not in _AXES or not c.lower().endswith(("rotation", "position")):
                    raise err(f"unknown channel {c}")
            jt = joints[stack[-1]]
            jt.channels = chans
            starts[stack[-1]] = n_ch
            n_ch += k
            i += 2 + k
        else:
            raise err(f"unexpected word {tok!r} in HIERARCHY")
    need(1)
    if tokens[i].upper() != "MOTION":
        raise err("MOTION section missing")
    try:
        assert tokens[i + 1].rstrip(":").upper() == "FRAMES"
        n_frames = int(tokens[i + 2])
        assert tokens[i + 3].upper() == "FRAME" and tokens[i + 4].rstrip(":").upper() == "TIME"
        frame_time = float(tokens[i + 5])
    except (AssertionError, IndexError, ValueError):
        raise err("MOTION needs 'Frames: N' and 'Frame Time: S'") from None
    if not (frame_time > 0 and np.isfinite(frame_time)):
        raise err(f"Frame Time must be positive, got {frame_time}")
    vals = tokens[i + 6:]
    if n_frames < 1:
        raise err("no frames")
    if len(vals) < n_frames * n_ch:
        raise err(f"{n_frames} frames x {n_ch} channels need {n_frames * n_ch} numbers, file has {len(vals)}")
    try:
        motion = np.array(vals[: n_frames * n_ch], dtype=np.float64).reshape(n_frames, n_ch)
    except ValueError:
        raise err("non-numeric value in MOTION") from None
    if not np.isfinite(motion).all():
        raise err("NaN/inf in MOTION")
    return Bvh(joints, frame_time, motion, starts)


def read_bvh(path: str | Path) -> Bvh:
    path = Path(path)
    if not path.exists():
        raise MomuError(f"BVH file not found: {path}")
    try:
        text = path.read_text(errors="strict")
    except (UnicodeDecodeError, OSError) as exc:
        raise MomuError(f"cannot read {path} as BVH text: {exc}") from None
    return parse_bvh(text, str(path))


# ------------------------------------------------------------------------------------------------
# name-based rig mapping

# body part -> aliases (after side tokens are removed), best first
_PART_ALIASES: dict[str, tuple[str, ...]] = {
    "hip": ("upleg", "thigh", "upperleg", "hip"),
    "knee": ("leg", "knee", "shin", "lowerleg", "calf"),
    "ankle": ("ankle", "foot"),
    "toe": ("toebase", "toe", "toes", "foot", "footend", "toebaseend"),
    "shoulder": ("arm", "upperarm", "shldr", "shoulder"),
    "elbow": ("forearm", "elbow", "lowerarm"),
    "wrist": ("wrist", "hand"),
}
_HEAD = ("head",)
_HEAD_TOP = ("headtop", "headtopend", "headend", "headsiteend", "headsite")
_PARTS_ORDER = ("hip", "knee", "ankle", "toe", "shoulder", "elbow", "wrist")


def _tokens(name: str) -> list[str]:
    name = name.split(":")[-1].split("|")[-1]
    out = []
    for chunk in re.split(r"[^A-Za-z0-9]+", name):
        out += [t.lower() for t in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", chunk)]
    return out


def _side_and_base(name: str) -> tuple[str | None, str]:
    toks = _tokens(name)
    side = None
    rest = []
    for k, t in enumerate(toks):
        if side is None and t in ("left", "l"):
            side = "l"
        elif side is None and t in ("right", "r"):
            side = "r"
        else:
            rest.append(t)
    return side, "".join(rest)


def rig_mapping(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Canonical joint -> recipe of BVH joint names (mean), by name.

    pelvis = mid hips, neck = mid shoulders (upper-arm roots), spine = their midpoint (added by the
    caller), head = mean(head joint, its top/end site if any).  Raises MomuError listing what is missing.
    """
    if set(CANONICAL_JOINTS) <= set(names):
        return {n: (n,) for n in CANONICAL_JOINTS}
    parsed = [(n, *_side_and_base(n)) for n in names]
    out: dict[str, tuple[str, ...]] = {}
    used: set[str] = set()
    for side in ("l", "r"):
        for part in _PARTS_ORDER:
            for alias in _PART_ALIASES[part]:
                hit = [n for n, s, b in parsed if s == side and b == alias and n not in used]
                if hit:
                    out[f"{side}_{part}"] = (hit[0],)
                    used.add(hit[0])
                    break
    heads = [n for n, s, b in parsed if s is None and b in _HEAD]
    tops = [n for n, s, b in parsed if s is None and b in _HEAD_TOP]
    if heads:
        out["head"] = (heads[0], tops[0]) if tops else (heads[0],)
    missing = [c for c in CANONICAL_JOINTS if c not in ("pelvis", "spine", "neck") and c not in out]
    if missing:
        raise MomuError(
            f"BVH rig not recognised: no joint found for {missing} (joints: {list(names)[:12]}...); "
            "rename the joints CMU/Mixamo-style (LeftUpLeg, LeftLeg, LeftFoot, LeftToeBase, LeftArm, LeftForeArm, LeftHand, Head)"
        )
    out["pelvis"] = (out["l_hip"][0], out["r_hip"][0])
    out["neck"] = (out["l_shoulder"][0], out["r_shoulder"][0])
    return out


_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}


def _up_rotation(up: str) -> np.ndarray:
    """Rotation (3, 3) taking the file's up axis to +y (proper rotations only: handedness kept)."""
    if up == "y":
        return np.eye(3)
    if up == "z":  # z up -> y up: rotate -90 deg about x
        return np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    raise MomuError(f"up axis must be 'y', 'z' or 'auto', got {up!r}")


def load_bvh(path: str | Path, scale: str | float = "auto", up: str = "auto", canonical: bool = True):
    """Read a BVH file as a ``Motion`` (canonical 18 joints when ``canonical``, else every joint + end site).

    scale: 'auto' (rest-pose height 0.3-3 -> m, 3-50 -> CMU units (1/0.45 in), 50-300 -> cm, else
    rescaled to 1.7 m), a unit name (m, cm, mm, inch, cmu) or metres per file unit.  up: 'y', 'z'
    or 'auto' (the axis along which the rest pose is tallest).
    """
    from momu_live.models.motion import Motion
    from momu_live.models.skeleton import _derive

    bvh = read_bvh(path)
    rest_pos = _rest_positions(bvh)  # (J, 3)
    if up == "auto":
        ext = np.ptp(rest_pos, axis=0)
        up = "z" if ext[2] > 1.2 * ext[1] else "y"
    R_up = _up_rotation(up)
    height = float(np.ptp(rest_pos @ R_up.T, axis=0)[1])
    if isinstance(scale, str):
        if scale == "auto":
            if 0.3 <= height < 3:
                unit = 1.0
            elif 3 <= height < 50:
                unit = _UNITS["cmu"]
            elif 50 <= height <= 300:
                unit = 0.01
            else:
                unit = 1.7 / max(height, 1e-9)
        elif scale in _UNITS:
            unit = _UNITS[scale]
        else:
            raise MomuError(f"BVH scale must be 'auto', one of {sorted(_UNITS)} or a number, got {scale!r}")
    else:
        unit = float(scale)
    pos = (bvh.positions() @ R_up.T) * unit  # (T, J, 3) metres, y up
    meta = {"source": "bvh", "file": str(path), "up": up, "metres_per_unit": unit, "bvh_fps": bvh.fps}
    if not canonical:
        return Motion(joints=pos.astype(np.float32), fps=bvh.fps, joint_names=bvh.names, meta=meta)
    mapping = rig_mapping(bvh.names)
    idx = {n: i for i, n in enumerate(bvh.names)}
    out = np.zeros((bvh.n_frames, len(CANONICAL_JOINTS), 3), np.float32)
    for j, name in enumerate(CANONICAL_JOINTS):
        if name in mapping:
            out[:, j] = pos[:, [idx[s] for s in mapping[name]]].mean(axis=1)
    _derive(out, set(mapping))
    meta["rig_mapping"] = {k: list(v) for k, v in mapping.items()}
    return Motion(joints=out, fps=bvh.fps, meta=meta)


def _rest_positions(bvh: Bvh) -> np.ndarray:
    pos = np.zeros((len(bvh.joints), 3))
    for j, jt in enumerate(bvh.joints):
        pos[j] = jt.offset + (pos[jt.parent] if jt.parent >= 0 else 0.0)
    return pos


# ------------------------------------------------------------------------------------------------
# export

_J = JOINT_INDEX
# T-pose rest directions of single-child bones (child joint -> unit direction from its parent)
_REST_DIR = {
    "l_elbow": (1, 0, 0), "l_wrist": (1, 0, 0), "r_elbow": (-1, 0, 0), "r_wrist": (-1, 0, 0),
    "l_knee": (0, -1, 0), "l_ankle": (0, -1, 0), "r_knee": (0, -1, 0), "r_ankle": (0, -1, 0),
    "l_toe": (0, -0.3, 1), "r_toe": (0, -0.3, 1), "neck": (0, 1, 0),
}
# joints whose rotation is the frame of (left child - right child, up child)
_FRAME_JOINTS = {"pelvis": ("l_hip", "r_hip", "spine"), "neck": ("l_shoulder", "r_shoulder", "head")}
# end-site offsets (metres, in the leaf's rest frame)
_END_SITES = {"head": (0, 0.12, 0), "l_wrist": (0.08, 0, 0), "r_wrist": (-0.08, 0, 0), "l_toe": (0, 0, 0.04), "r_toe": (0, 0, 0.04)}


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _frame(left, upv):
    """Rotation matrices (T, 3, 3) with columns x = left, y = up (orthogonalised), z = x cross y."""
    x = _unit(left)
    y = _unit(upv - np.sum(upv * x, -1, keepdims=True) * x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def _swing(a, b):
    """Minimal rotations (T, 3, 3) taking unit vectors a -> b (T, 3); antiparallel: 180 deg about any normal."""
    from scipy.spatial.transform import Rotation

    a, b = _unit(a), _unit(b)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1)
    c = np.sum(a * b, -1)
    ang = np.arctan2(s, c)
    alt = np.cross(a, [1.0, 0, 0])
    alt = np.where(np.linalg.norm(alt, axis=-1, keepdims=True) < 1e-6, np.cross(a, [0, 1.0, 0]), alt)
    axis = np.where(s[:, None] > 1e-9, axis, alt)
    return Rotation.from_rotvec(_unit(axis) * ang[:, None]).as_matrix()


def solve_rest_and_rotations(joints: np.ndarray):
    """From canonical positions (T, 18, 3): rest offsets (18, 3) and global rotations (T, 18, 3, 3)."""
    T = joints.shape[0]
    children = {j: [c for c, p in enumerate(CANONICAL_PARENTS) if p == j] for j in range(len(CANONICAL_JOINTS))}
    length = {c: float(np.linalg.norm(joints[:, c] - joints[:, p], axis=-1).mean())
              for c, p in enumerate(CANONICAL_PARENTS) if p >= 0}
    frames = {name: _frame(joints[:, _J[l]] - joints[:, _J[r]], joints[:, _J[u]] - joints[:, _J[name]])
              for name, (l, r, u) in _FRAME_JOINTS.items()}  # (T, 3, 3) each
    offsets = np.zeros((len(CANONICAL_JOINTS), 3))
    for c, p in enumerate(CANONICAL_PARENTS):
        if p < 0:
            continue
        pname = CANONICAL_JOINTS[p]
        if pname in frames:  # mean direction of the child in the parent's frame
            d = np.einsum("tji,tj->ti", frames[pname], joints[:, c] - joints[:, p])  # (T, 3) local
            offsets[c] = _unit(_unit(d).mean(0)) * length[c]
        elif CANONICAL_JOINTS[c] in _REST_DIR:
            offsets[c] = _unit(np.asarray(_REST_DIR[CANONICAL_JOINTS[c]], float)) * length[c]
        else:  # shoulder/hip children of frame joints are handled above; spine chain
            offsets[c] = np.array([0.0, 1.0, 0.0]) * length[c]
    G = np.zeros((T, len(CANONICAL_JOINTS), 3, 3))
    for j, p in enumerate(CANONICAL_PARENTS):
        name = CANONICAL_JOINTS[j]
        Gp = G[:, p] if p >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        if name in frames:
            G[:, j] = frames[name]
        elif len(children[j]) == 1:
            c = children[j][0]
            rest_world = np.einsum("tij,j->ti", Gp, offsets[c])  # (T, 3)
            G[:, j] = _swing(rest_world, joints[:, c] - joints[:, j]) @ Gp
        else:  # leaf: keeps its parent's orientation
            G[:, j] = Gp
    return offsets, G


def _hierarchy(offsets: np.ndarray, k: float, fmt: str, positions: bool = False) -> tuple[list[str], list[int]]:
    """The HIERARCHY section of the canonical skeleton (``offsets`` (J, 3) already in file units) and the
    joints in channel order (depth first).  Root: 6 channels; others Z-X-Y rotations, with ``positions``
    their own position channels too (a stretchy rig).  Leaves get an End Site."""
    lines, order = ["HIERARCHY"], []

    def write(j, depth):
        order.append(j)
        ind = "  " * depth
        name = CANONICAL_JOINTS[j]
        root = CANONICAL_PARENTS[j] < 0
        lines.append(f"{ind}{'ROOT' if root else 'JOINT'} {name}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}  OFFSET {' '.join(fmt.format(v) for v in offsets[j])}")
        if root or positions:
            lines.append(f"{ind}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{ind}  CHANNELS 3 Zrotation Xrotation Yrotation")
        kids = [c for c, p in enumerate(CANONICAL_PARENTS) if p == j]
        for c in kids:
            write(c, depth + 1)
        if not kids:
            end = np.asarray(_END_SITES.get(name, (0, 0.05, 0)), float) * k
            lines.extend([f"{ind}  End Site", f"{ind}  {{", f"{ind}    OFFSET {' '.join(fmt.format(v) for v in end)}", f"{ind}  }}"])
        lines.append(f"{ind}}}")

    write(0, 0)
    return lines, order


def _write_bvh(path, lines: list[str], table: np.ndarray, fps: float, fmt: str) -> Path:
    """HIERARCHY ``lines`` + the MOTION section of ``table`` (T, channels) -> ``path``."""
    lines = lines + ["MOTION", f"Frames: {len(table)}", f"Frame Time: {1.0 / float(fps):.10f}"]
    lines += [" ".join(fmt.format(v) for v in row) for row in table]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def export_bvh(motion, path: str | Path, units: str = "m", decimals: int = 6, exact: bool = False) -> Path:
    """Write ``motion`` (any known skeleton; mapped to canonical) as a BVH rig of the canonical skeleton.

    Root ``pelvis`` has Xposition Yposition Zposition Zrotation Xrotation Yrotation, the other joints
    Zrotation Xrotation Yrotation (intrinsic Z-X-Y, degrees).  ``units``: 'm' (Blender imports 1:1)
    or 'cm'.  ``exact``: every joint also gets position channels (its per-frame offset in the parent's
    frame), so capture whose bone lengths vary comes back exactly (a stretchy rig); the default
    rigid rig uses the mean bone lengths.  Returns the path.
    """
    from scipy.spatial.transform import Rotation

    from momu_live.models.skeleton import to_canonical

    motion = to_canonical(motion)
    if units not in ("m", "cm"):
        raise MomuError(f"BVH export units must be 'm' or 'cm', got {units!r}")
    k = 1.0 if units == "m" else 100.0
    joints = motion.joints.astype(np.float64)  # (T, 18, 3)
    offsets, G = solve_rest_and_rotations(joints)
    T = joints.shape[0]
    local = np.empty_like(G)
    for j, p in enumerate(CANONICAL_PARENTS):
        local[:, j] = G[:, j] if p < 0 else np.swapaxes(G[:, p], -1, -2) @ G[:, j]
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(T, -1, 3)
    fmt = f"{{:.{decimals}f}}"
    lines, order = _hierarchy(offsets * k, k, fmt, positions=exact)
    root = joints[:, 0] * k  # (T, 3)
    cols = [root]
    for j in order:
        p = CANONICAL_PARENTS[j]
        if exact and p >= 0:  # offset of j in its parent's frame, this frame
            cols.append(np.einsum("tji,tj->ti", G[:, p], joints[:, j] - joints[:, p]) * k)  # (T, 3)
        cols.append(euler[:, j])  # (T, 3)
    table = np.concatenate(cols, axis=1)  # (T, channels)
    return _write_bvh(path, lines, table, motion.fps, fmt)


# ------------------------------------------------------------------------------------------------
# export of a rig (models/rig.py): its own rotations, no solving


def export_rig_bvh(rig, path: str | Path, units: str = "m", decimals: int = 6) -> Path:
    """Write a ``RigMotion`` (models/rig.py) as a BVH of the canonical skeleton with the rig's rotations.

    OFFSETs are the rig's rest offsets (constant bone lengths, T-pose ``skeleton.REST_DIRECTIONS``);
    root ``pelvis``: Xposition Yposition Zposition Zrotation Xrotation Yrotation, other joints
    Zrotation Xrotation Yrotation (intrinsic Z-X-Y Euler of the rig's local rotations, degrees);
    leaves (head, wrists, toes) carry their identity rotation and an End Site.  ``load_bvh`` of the
    file gives back the rig's FK positions (to the 6-decimal text).  ``units``: 'm' or 'cm'.
    """
    from scipy.spatial.transform import Rotation

    if units not in ("m", "cm"):
        raise MomuError(f"BVH export units must be 'm' or 'cm', got {units!r}")
    k = 1.0 if units == "m" else 100.0
    local = rig.local_matrices()  # (T, J, 3, 3)
    T, J = local.shape[:2]
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(T, J, 3)
    offsets = rig.offsets * k  # (J, 3)
    fmt = f"{{:.{decimals}f}}"
    lines, order = _hierarchy(offsets, k, fmt)
    table = np.concatenate([rig.root * k] + [euler[:, j] for j in order], axis=1)  # (T, 3 + 3 J)
    return _write_bvh(path, lines, table, rig.fps, fmt)
