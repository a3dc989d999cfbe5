"""Paired motion/music datasets and windowing.

``load_dwm`` reads the shared Dance-with-Melody format (``<root>/<dance_id>/{motion.npy,audio.flac,meta.json}``,
``index.csv``, ``skeleton.json``); see that folder's README.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

# Dances that share bit-identical motion stretches (DwM README): keep each group on one side of a split.
DWM_SHARED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("DANCE_W_1", "DANCE_W_3", "DANCE_W_6", "DANCE_W_11", "DANCE_W_21", "DANCE_W_26", "DANCE_W_27",
     "DANCE_W_30", "DANCE_W_31", "DANCE_W_32", "DANCE_W_33"),
    ("DANCE_W_15", "DANCE_W_17", "DANCE_W_25", "DANCE_W_28", "DANCE_W_5"),
    ("DANCE_W_10", "DANCE_W_14", "DANCE_W_7"),
    ("DANCE_W_20", "DANCE_W_8"),
)
# Fixed validation dances (documented in README): one shared-motion-free waltz group member set,
# plus one rumba and one cha-cha with medium/high alignment confidence.
DWM_VALIDATION: tuple[str, ...] = ("DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6")


@dataclass
class DancePair:
    name: str
    motion: "Motion"  # noqa: F821  (momu_live.models.motion.Motion)
    wav: np.ndarray  # (N,) float32
    sample_rate: int
    genre: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate


def dwm_ids(root: str | Path) -> list[str]:
    root = Path(root)
    index = root / "index.csv"
    if not index.exists():
        raise MomuError(f"{root} is not a DwM-format folder: index.csv missing (see ../shared/data/dwm/README.md)")
    with open(index) as f:
        return [row["dance_id"] for row in csv.DictReader(f)]


def load_dwm(root: str | Path, ids: list[str] | None = None, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, canonical: bool = True) -> list[DancePair]:
    """Load DwM-format dances; motion mapped to the canonical skeleton when ``canonical``."""
    from momu_live.models.audio import load_audio
    from momu_live.models.motion import Motion

    root = Path(root)
    ids = ids or dwm_ids(root)
    names = json.loads((root / "skeleton.json").read_text())["joint_names"]
    out = []
    for did in ids:
        d = root / did
        meta = json.loads((d / "meta.json").read_text())
        joints = np.load(d / "motion.npy").astype(np.float32)  # (T, 23, 3)
        motion = Motion(joints=joints, fps=float(meta["fps"]), joint_names=tuple(names), meta={"source": "dwm", "id": did})
        if canonical:
            from momu_live.models.skeleton import to_canonical

            motion = to_canonical(motion)
        wav, sr = load_audio(d / "audio.flac", sample_rate)
        out.append(DancePair(did, motion, wav, sr, meta.get("genre", ""), meta))
    return out


def split_dwm(ids: list[str], validation: tuple[str, ...] = DWM_VALIDATION) -> tuple[list[str], list[str]]:
    """Train/validation split by dance, keeping shared-motion groups on one side."""
    val = set(validation)
    for group in DWM_SHARED_GROUPS:
        if val & set(group) and not set(group) <= val:
            raise MomuError(f"validation set splits shared-motion group {group}; include the whole group or none")
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def split_pairs(pairs: list[DancePair], validation: tuple[str, ...] = DWM_VALIDATION) -> tuple[list[DancePair], list[DancePair]]:
    """Split loaded pairs by dance (``split_dwm`` rules: shared-motion groups stay on one side)."""
    train_ids, val_ids = split_dwm([p.name for p in pairs], validation)
    by = {p.name: p for p in pairs}
    return [by[i] for i in train_ids], [by[i] for i in val_ids]


# ------------------------------------------------------------------------------------------------
# AIST++ as published: <root>/keypoints3d/<seq>.pkl (COCO-17, 60 fps, cm) + a folder of wavs


class _NumpyOnlyUnpickler:
    """Unpickler that builds only plain containers and numeric numpy arrays (no code can run).

    AIST++ ships its keypoints as pickles of ``{"keypoints3d": ndarray, "keypoints3d_optim": ndarray}``;
    only numpy's array reconstruction helpers are allowed, anything else raises MomuError.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
    }

    @classmethod
    def load(cls, path: Path):
        import pickle

        allowed = cls.ALLOWED

        class _U(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) in allowed:
                    return super().find_class(module, name)
                raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

        try:
            with open(path, "rb") as f:
                obj = _U(f, encoding="latin1").load()
        except Exception as exc:
            raise MomuError(
                f"{path}: not a plain numpy pickle ({exc}); only AIST++ keypoint files (dicts of arrays) are read, "
                "convert others to .npz with arrays 'keypoints3d' [T,17,3]"
            ) from None
        return obj


def _aist_keypoints(path: Path, use_optim: bool) -> np.ndarray:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            obj = {k: z[k] for k in z.files}
    else:
        obj = _NumpyOnlyUnpickler.load(path)
    if not isinstance(obj, dict):
        raise MomuError(f"{path}: expected a dict with 'keypoints3d', got {type(obj).__name__}")
    key = "keypoints3d_optim" if use_optim and "keypoints3d_optim" in obj else "keypoints3d"
    if key not in obj:
        raise MomuError(f"{path}: no 'keypoints3d' array (keys: {sorted(obj)})")
    kp = np.asarray(obj[key])
    if kp.dtype == object or kp.ndim != 3 or kp.shape[1:] != (17, 3):
        raise MomuError(f"{path}: '{key}' must be a numeric [T, 17, 3] array, got {kp.dtype} {kp.shape}")
    return kp.astype(np.float32)


def _interpolate_missing(kp: np.ndarray, source) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN/inf keypoints (T, J, 3) by linear interpolation over time (edges held); returns (kp, missing (T, J))."""
    missing = ~np.isfinite(kp).all(axis=-1)  # (T, J)
    if not missing.any():
        return kp, missing
    kp = kp.copy()
    t = np.arange(kp.shape[0])
    for j in range(kp.shape[1]):
        ok = ~missing[:, j]
        if not ok.any():
            raise MomuError(f"{source}: keypoint {j} is missing in every frame")
        if not ok.all():
            for c in range(3):
                kp[:, j, c] = np.interp(t, t[ok], kp[ok, j, c])
    return kp, missing


def aist_music_id(seq: str) -> str:
    """Music id of an AIST++ sequence name: 'gBR_sBM_cAll_d04_mBR0_ch01' -> 'mBR0'."""
    for tok in seq.split("_"):
        if len(tok) >= 4 and tok[0] == "m" and tok[1:3].isalpha() and tok[1:3].isupper():
            return tok
    raise MomuError(f"cannot find the music id (mXXn) in AIST++ sequence name {seq!r}")


def orient_up(joints: np.ndarray, head: list[int], feet: list[int]) -> tuple[np.ndarray, str]:
    """Rotate (T, J, 3) so the feet -> head direction is +y (a proper rotation, handedness kept)."""
    d = (joints[:, head].mean(1) - joints[:, feet].mean(1)).mean(0)  # (3,)
    axis = int(np.argmax(np.abs(d)))
    sign = 1.0 if d[axis] > 0 else -1.0
    rots = {
        (1, 1.0): np.eye(3), (1, -1.0): np.diag([1.0, -1.0, -1.0]),
        (2, 1.0): np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]), (2, -1.0): np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
        (0, 1.0): np.array([[0, 1.0, 0], [-1, 0, 0], [0, 0, 1]]), (0, -1.0): np.array([[0, -1.0, 0], [1, 0, 0], [0, 0, 1]]),
    }
    R = rots[(axis, sign)]
    return (joints @ R.T).astype(np.float32), f"{'+' if sign > 0 else '-'}{'xyz'[axis]}"


def aist_split(root: str | Path, name: str = "crossmodal_train") -> list[str]:
    """Sequence names of an official AIST++ split file (``<root>/splits/<name>.txt``)."""
    path = Path(root) / "splits" / f"{name}.txt"
    if not path.exists():
        raise MomuError(f"AIST++ split {path} not found; splits ship in aist_plusplus_final/splits/")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def load_aist(
    root: str | Path,
    wav_dir: str | Path | None = None,
    ids: list[str] | None = None,
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate,
    use_optim: bool = True,
    canonical: bool = True,
    fps: float = 60.0,
) -> list[DancePair]:
    """Load AIST++ (``aist_plusplus_final``): ``keypoints3d/<seq>.pkl`` (or ``.npz``) + ``<wav_dir>/<music>.wav``.

    Keypoints are COCO-17 3-D at 60 fps; units are detected (cm -> m), the up axis is turned to +y
    from the data, handedness is checked with ``chirality_score`` (mirrored -> x negated, recorded
    in meta), toes are derived with confidence 0.  Sequences listed in ``ignore_list.txt`` are skipped.
    Motion frame 0 = music time 0 (AIST++ convention); both are cut to the shorter.
    """
    from momu_live.models.audio import load_audio
    from momu_live.models.motion import Motion
    from momu_live.models.skeleton import COCO17_JOINTS, chirality_score, map_joints_with_confidence, to_canonical

    root = Path(root)
    kdir = root / "keypoints3d"
    if not kdir.is_dir():
        raise MomuError(f"{root} is not an AIST++ folder: keypoints3d/ missing (expected aist_plusplus_final/)")
    wav_dir = Path(wav_dir) if wav_dir else next((d for d in (root / "wavs", root.parent / "wavs", root / "music") if d.is_dir()), None)
    if wav_dir is None or not wav_dir.is_dir():
        raise MomuError(f"AIST++ music folder not found (tried {root / 'wavs'}, {root.parent / 'wavs'}); pass wav_dir=")
    files = {p.stem: p for p in sorted(kdir.iterdir()) if p.suffix in (".pkl", ".npz")}
    ignore = set()
    if (root / "ignore_list.txt").exists():
        ignore = {ln.strip() for ln in (root / "ignore_list.txt").read_text().splitlines() if ln.strip()}
    ids = ids or [s for s in files if s not in ignore]
    out = []
    for seq in ids:
        if seq not in files:
            raise MomuError(f"AIST++ sequence {seq} not in {kdir}")
        kp = _aist_keypoints(files[seq], use_optim)  # (T, 17, 3)
        mid = aist_music_id(seq)
        wav_path = next((wav_dir / f"{mid}{ext}" for ext in (".wav", ".mp3", ".flac", ".ogg") if (wav_dir / f"{mid}{ext}").exists()), None)
        if wav_path is None:
            raise MomuError(f"music {mid} for {seq} not found in {wav_dir} (expected {mid}.wav)")
        kp, missing = _interpolate_missing(kp, files[seq])  # (T, 17, 3), (T, 17) bool
        kp, up = orient_up(kp, head=[0, 3, 4], feet=[15, 16])
        height = float(np.median(kp[:, 0, 1] - kp[:, [15, 16], 1].mean(1)))
        unit = 0.01 if height > 10 else 1.0
        kp *= unit
        meta = {"source": "aist++", "id": seq, "up": up, "metres_per_unit": unit}
        motion = to_canonical(Motion(joints=kp, fps=fps, joint_names=COCO17_JOINTS, meta=meta))
        chir = chirality_score(motion.joints)
        if chir < 0.35:  # a mirrored world frame: negate x so left/right are anatomical, then map again
            kp[..., 0] *= -1  # (the derived toes follow the facing, so they must be derived after the flip)
            motion = to_canonical(Motion(joints=kp, fps=fps, joint_names=COCO17_JOINTS, meta=meta))
        motion.meta.update(chirality=chir, mirrored=chir < 0.35, missing_keypoints=int(missing.sum()))
        if missing.any():  # untriangulated keypoints: interpolated in time, confidence 0 where used
            _, lost = map_joints_with_confidence(np.zeros(kp.shape), COCO17_JOINTS, confidence=(~missing).astype(np.float32))
            motion.confidence = np.minimum(motion.confidence, (lost >= 1.0).astype(np.float32))
        wav, sr = load_audio(wav_path, sample_rate)
        n = min(motion.n_frames, int(len(wav) * fps // sr))
        if n < 1:
            raise MomuError(f"{seq}: no overlap between motion and music")
        wav = wav[: int(round(n * sr / fps))]
        motion = Motion(joints=motion.joints[:n], fps=fps, confidence=motion.confidence[:n] if motion.confidence is not None else None,
                        meta=motion.meta)
        genre = seq.split("_")[0][1:] if seq.startswith("g") else ""
        out.append(DancePair(seq, motion, wav, sr, genre, {"music": mid, "keypoints": str(files[seq])}))
    return out


# ------------------------------------------------------------------------------------------------
# a folder of dance videos with their soundtracks (pose extracted once, cached by content hash)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
POSE_CACHE_VERSION = 1


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def cached_pose(video: str | Path, cache_dir: str | Path, model_complexity: int = 1, max_gap_s: float = 0.5, progress: bool = True):
    """``extract_video`` once per (file content, settings); later calls read ``<cache_dir>/<hash>.npz``.

    Returns (motion, hit) with ``hit`` True when the cache answered.
    """
    from momu_live.models.motion import load_motion

    video = Path(video)
    key = f"{file_hash(video)[:24]}-c{model_complexity}-g{max_gap_s:g}-v{POSE_CACHE_VERSION}"
    cache = Path(cache_dir) / f"{key}.npz"
    if cache.exists():
        try:
            return load_motion(cache), True
        except MomuError:
            cache.unlink()  # damaged cache entry: extract again
    from momu_live.pose import extract_video  # mediapipe: only when needed

    motion = extract_video(video, model_complexity=model_complexity, max_gap_s=max_gap_s, progress=progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    motion.save(tmp)
    tmp.replace(cache)  # atomic: a killed run never leaves half a cache file
    return motion, False


def load_video_folder(
    root: str | Path, cache_dir: str | Path | None = None, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, model_complexity: int = 1,
    max_gap_s: float = 0.5, progress: bool = True,
) -> list[DancePair]:
    """Every video in ``root`` as a DancePair: MediaPipe pose (cached in ``cache_dir``, default
    ``<root>/.momu_pose_cache``) + its soundtrack (``load_audio``, ffmpeg fallback), cut to the
    shorter.  Video frame 0 and audio sample 0 are taken as simultaneous."""
    from momu_live.models.audio import load_audio

    root = Path(root)
    if not root.is_dir():
        raise MomuError(f"video folder {root} not found")
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise MomuError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {root}")
    cache_dir = Path(cache_dir) if cache_dir else root / ".momu_pose_cache"
    out = []
    for v in videos:
        motion, hit = cached_pose(v, cache_dir, model_complexity, max_gap_s, progress)
        wav, sr = load_audio(v, sample_rate)
        offset = av_offset_s(v)  # audio start - video start (container timestamps)
        shift = int(round(abs(offset) * sr))
        if offset > 0:  # audio starts late: silence before it, so sample 0 = video frame 0
            wav = np.concatenate([np.zeros(shift, np.float32), wav])
        elif offset < 0:
            wav = wav[shift:]
        n = min(motion.n_frames, int(len(wav) * motion.fps // sr))
        if n < 1:
            raise MomuError(f"{v}: soundtrack and video do not overlap")
        from dataclasses import replace

        motion = replace(motion, joints=motion.joints[:n], joints2d=motion.joints2d[:n] if motion.joints2d is not None else None,
                         confidence=motion.confidence[:n] if motion.confidence is not None else None)
        wav = wav[: int(round(n * sr / motion.fps))]
        out.append(DancePair(v.stem, motion, wav, sr, "", {"video": str(v), "pose_cache_hit": hit, "av_offset_s": offset}))
    return out


def av_offset_s(path: str | Path) -> float:
    """Start time of the first audio stream minus that of the first video stream (s), from ffprobe; 0 if unknown."""
    import shutil
    import subprocess

    if shutil.which("ffprobe") is None:
        return 0.0

    def start(sel: str) -> float | None:
        r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", sel, "-show_entries", "stream=start_time",
                            "-of", "json", str(path)], capture_output=True, text=True)
        try:
            return float(json.loads(r.stdout)["streams"][0]["start_time"])
        except (KeyError, IndexError, ValueError, TypeError, json.JSONDecodeError):
            return None

    a, v = start("a:0"), start("v:0")
    return 0.0 if a is None or v is None else a - v


# ------------------------------------------------------------------------------------------------
# windowing into aligned motion/music clips at the model time base


@dataclass
class Clip:
    name: str  # dance name
    start: int  # first model-rate motion frame (a multiple of motion frames per latent)
    motion: np.ndarray  # (T, 18, 3) float32 at timebase.motion_rate
    wav: np.ndarray  # (T * samples_per_frame,) float32
    samples_per_frame: int = 1024  # hop * motion_per_mel of the time base

    @property
    def start_sample(self) -> int:
        return self.start * self.samples_per_frame


def to_model_rate(pair: DancePair, timebase=None) -> tuple[np.ndarray, np.ndarray]:
    """(motion (T, 18, 3) at the model motion rate, wav (T * samples_per_frame,)) of one pair, exactly aligned.

    Audio is resampled to the time base's rate if needed; T = min(motion frames, audio samples // samples_per_frame).
    """
    from momu_live.models.audio import resample
    from momu_live.models.skeleton import to_canonical
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    tb = timebase or DEFAULT_TIMEBASE
    spf = tb.hop_length * tb.motion_per_mel  # audio samples per model motion frame (1024)
    motion = to_canonical(pair.motion).resample(float(tb.motion_rate))
    wav = pair.wav if pair.sample_rate == tb.sample_rate else resample(pair.wav, pair.sample_rate, tb.sample_rate)
    T = min(motion.n_frames, len(wav) // spf)
    return motion.joints[:T], np.ascontiguousarray(wav[: T * spf], dtype=np.float32)


def window_starts(n_frames: int, window: int, hop: int, align: int = 1) -> list[int]:
    """Start frames of windows of ``window`` frames every ``hop`` frames (multiples of ``align``) fitting in ``n_frames``."""
    if window < 1 or hop < 1:
        raise MomuError(f"window and hop must be >= 1 frame, got {window}, {hop}")
    hop = max(align, (hop // align) * align)
    return list(range(0, n_frames - window + 1, hop))


def window_frames(seconds: float, timebase=None) -> int:
    """Model-rate motion frames of a ``seconds`` window, rounded down to whole latent frames."""
    from momu_live.models.timebase import DEFAULT_TIMEBASE, time_to_frame

    tb = timebase or DEFAULT_TIMEBASE
    n = time_to_frame(seconds, tb.motion_rate, "floor")
    n -= n % tb.motion_per_latent
    if n < tb.motion_per_latent:
        raise MomuError(f"window of {seconds} s is shorter than one latent frame ({float(1 / tb.latent_rate):.3f} s)")
    return n


def make_clips(pairs: list[DancePair], seconds: float, hop_seconds: float | None = None, timebase=None) -> list[Clip]:
    """Cut pairs into aligned clips: motion (T, 18, 3) at the model rate and T * 1024 audio samples.

    Windows start on latent boundaries, so latent frame i of both modalities covers samples
    [i * 2048, (i + 1) * 2048) of the clip (README "Time bases").
    """
    from momu_live.models.timebase import DEFAULT_TIMEBASE, time_to_frame

    tb = timebase or DEFAULT_TIMEBASE
    spf = tb.hop_length * tb.motion_per_mel
    T = window_frames(seconds, tb)
    hop = time_to_frame(hop_seconds, tb.motion_rate, "floor") if hop_seconds else T
    clips = []
    for pair in pairs:
        motion, wav = to_model_rate(pair, tb)
        for s in window_starts(len(motion), T, hop, tb.motion_per_latent):
            clips.append(Clip(pair.name, s, motion[s: s + T], wav[s * spf: (s + T) * spf], spf))
    return clips


try:  # torch is a dependency of the package, but keep this module importable without it
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object


class ClipDataset(_TorchDataset):
    """Aligned (motion (T, 18, 3), wav (T * 1024,)) float32 training pairs cut from dances.

    Holds each dance once at the model rate and cuts windows on access.  ``mirror_prob`` mirrors
    the motion left <-> right (music unchanged); ``random_yaw`` turns it about +y; ``seed`` makes
    the augmentation of item i reproducible (rng = seed + i + epoch * len).
    """

    def __init__(self, pairs: list[DancePair], seconds: float, hop_seconds: float | None = None, timebase=None,
                 mirror_prob: float = 0.0, random_yaw: bool = False, seed: int = 0, as_torch: bool = True):
        from momu_live.models.timebase import DEFAULT_TIMEBASE, time_to_frame

        self.tb = timebase or DEFAULT_TIMEBASE
        self.spf = self.tb.hop_length * self.tb.motion_per_mel
        self.window = window_frames(seconds, self.tb)
        hop = time_to_frame(hop_seconds, self.tb.motion_rate, "floor") if hop_seconds else self.window
        self.dances = [(p.name, *to_model_rate(p, self.tb)) for p in pairs]
        self.index = [(d, s) for d, (_, m, _) in enumerate(self.dances)
                      for s in window_starts(len(m), self.window, hop, self.tb.motion_per_latent)]
        if not self.index:
            raise MomuError(f"no {seconds} s window fits in any of the {len(pairs)} dances")
        self.mirror_prob, self.random_yaw, self.seed, self.as_torch = mirror_prob, random_yaw, seed, as_torch
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.index)

    def clip(self, i: int) -> Clip:
        d, s = self.index[i]
        name, motion, wav = self.dances[d]
        return Clip(name, s, motion[s: s + self.window], wav[s * self.spf: (s + self.window) * self.spf], self.spf)

    def __getitem__(self, i: int):
        c = self.clip(i)
        motion = c.motion.copy()
        if self.mirror_prob > 0 or self.random_yaw:
            rng = np.random.default_rng(self.seed + i + self.epoch * len(self))
            if rng.uniform() < self.mirror_prob:
                from momu_live.models.skeleton import mirror

                motion = mirror(motion)
            if self.random_yaw:
                from momu_live.models.normalize import rotate_y

                motion = rotate_y(motion, rng.uniform(-np.pi, np.pi))
        if not self.as_torch:
            return motion, c.wav
        import torch

        return torch.from_numpy(np.ascontiguousarray(motion)), torch.from_numpy(c.wav.copy())  # (T, 18, 3), (N,)
