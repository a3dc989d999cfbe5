"""Pose extraction with MediaPipe: a per-frame ``PoseEstimator`` (live use) and ``extract_video`` (files).

Two back-ends behind one class:
- ``mediapipe.solutions.pose`` (MediaPipe 0.10.21 "legacy" solution; model complexity 1 ships in the
  wheel, 0 and 2 are downloaded on first use and fail offline with a clear error);
- the Tasks API ``PoseLandmarker`` with a user-supplied ``.task`` model file (``task_file=``).

Output per frame, in the canonical skeleton (``momu_live.models.skeleton``): world landmarks mapped to
metres, y up, +z towards the camera (MediaPipe world: x right, y down, z away -> (x, -y, -z), a
proper rotation), pelvis-centred; ``joints2d`` in MediaPipe's normalised image coordinates (x right,
y down, [0, 1]); ``confidence`` = landmark visibility.

MediaPipe's TFLite runs on its default single thread: two threads stalled it for ~1.2 s a frame on
a real video (../shared/ANCHORS.md), so nothing here changes it.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from momu_live import MomuError
from momu_live.models.skeleton import CANONICAL_JOINTS, FEET, JOINT_INDEX, map_joints_with_confidence

log = logging.getLogger(__name__)

N_JOINTS = len(CANONICAL_JOINTS)
# MediaPipe world (x right, y down, z away from the camera) -> canonical (x right, y up, z towards it)
_MP_TO_CANONICAL = np.array([1.0, -1.0, -1.0], dtype=np.float32)
_COMPLEXITY_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


class PoseResult(NamedTuple):
    """One frame: ``joints`` (18, 3) metres (None: no person), ``joints2d`` (18, 2) or None, ``confidence`` (18,)."""

    joints: np.ndarray | None
    joints2d: np.ndarray | None
    confidence: np.ndarray


def landmarks_to_canonical(world: np.ndarray, image: np.ndarray, visibility: np.ndarray) -> PoseResult:
    """MediaPipe-33 arrays -> canonical ``PoseResult``.

    world (33, 3) MediaPipe world landmarks (m, y down, z away); image (33, 2) normalised image
    coordinates; visibility (33,).  The spine is the pelvis-neck midpoint.
    """
    world = np.asarray(world, dtype=np.float32) * _MP_TO_CANONICAL  # (33, 3) y up, z to camera
    joints, conf = map_joints_with_confidence(world, _mp_names(), "mediapipe33", np.asarray(visibility, np.float32))
    j2d, _ = map_joints_with_confidence(np.asarray(image, np.float32), _mp_names(), "mediapipe33")
    return PoseResult(joints, j2d, np.clip(conf, 0.0, 1.0))  # (18, 3), (18, 2), (18,)


def _mp_names():
    from momu_live.models.skeleton import MEDIAPIPE33_JOINTS

    return MEDIAPIPE33_JOINTS


class PoseEstimator:
    """Per-frame single-person pose estimator (MediaPipe), for webcam frames or video files.

    ``process(frame_bgr, timestamp_s) -> PoseResult(joints (18,3) | None, joints2d (18,2) | None, confidence (18,))``.
    Tracking state lives inside MediaPipe's graph (one estimator per stream); use as a context
    manager or call ``close()``.  An empty/None frame counts as "no person" and never raises, so a
    live loop survives a dropped camera frame.
    """

    def __init__(
        self,
        model_complexity: int = 1,
        task_file: str | Path | None = None,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        smooth_landmarks: bool = True,
        static_image_mode: bool = False,
    ):
        self.model_complexity = int(model_complexity)
        self.task_file = Path(task_file) if task_file else None
        self._last_ts_ms = -1
        self.backend = "tasks" if self.task_file else "solutions"
        if self.task_file:
            self._impl = _make_tasks_landmarker(self.task_file, min_detection_confidence, min_tracking_confidence)
        else:
            self._impl = _make_solution(
                self.model_complexity, min_detection_confidence, min_tracking_confidence, smooth_landmarks, static_image_mode
            )

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        impl, self._impl = getattr(self, "_impl", None), None
        if impl is not None:
            impl.close()

    # -- one frame --------------------------------------------------------------------------
    def process(self, frame_bgr: np.ndarray | None, timestamp_s: float) -> PoseResult:
        """Estimate the pose in one BGR uint8 frame (H, W, 3) taken at ``timestamp_s`` (seconds)."""
        if self._impl is None:
            raise MomuError("PoseEstimator is closed; create a new one")
        none = PoseResult(None, None, np.zeros(N_JOINTS, np.float32))
        if frame_bgr is None or getattr(frame_bgr, "size", 0) == 0:
            return none
        frame = np.asarray(frame_bgr)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=-1)  # (H, W, 3) grey -> BGR
        if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            raise MomuError(f"a video frame must be (H, W, 3) BGR, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        rgb = np.ascontiguousarray(frame[..., 2::-1])  # (H, W, 3) RGB
        ts_ms = max(int(round(float(timestamp_s) * 1000.0)), self._last_ts_ms + 1)  # strictly increasing
        self._last_ts_ms = ts_ms
        arrays = self._run(rgb, ts_ms)
        if arrays is None:
            return none
        return landmarks_to_canonical(*arrays)

    def _run(self, rgb: np.ndarray, ts_ms: int):
        if self.backend == "solutions":
            res = self._impl.process(rgb)
            if res.pose_world_landmarks is None or res.pose_landmarks is None:
                return None
            world = np.array([(p.x, p.y, p.z) for p in res.pose_world_landmarks.landmark], np.float32)  # (33, 3)
            lms = res.pose_landmarks.landmark
            image = np.array([(p.x, p.y) for p in lms], np.float32)  # (33, 2)
            vis = np.array([p.visibility for p in lms], np.float32)  # (33,)
            return world, image, vis
        import mediapipe as mp

        res = self._impl.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ts_ms)
        if not res.pose_world_landmarks or not res.pose_landmarks:
            return None
        world = np.array([(p.x, p.y, p.z) for p in res.pose_world_landmarks[0]], np.float32)  # (33, 3)
        image = np.array([(p.x, p.y) for p in res.pose_landmarks[0]], np.float32)  # (33, 2)
        vis = np.array([(p.visibility if p.visibility is not None else 1.0) for p in res.pose_landmarks[0]], np.float32)
        return world, image, vis


def _import_mediapipe():
    try:
        import mediapipe as mp  # noqa: F401
    except ImportError as exc:
        raise MomuError(f"mediapipe is not installed ({exc}); install momu-live with its pinned deps (mediapipe==0.10.21)") from None
    return mp


def _make_solution(complexity: int, det: float, track: float, smooth: bool, static: bool):
    if complexity not in _COMPLEXITY_FILES:
        raise MomuError(f"--model-complexity must be 0, 1 or 2, got {complexity}")
    mp = _import_mediapipe()
    from mediapipe.python.solutions import pose as mp_pose

    model = Path(mp.__file__).parent / "modules" / "pose_landmark" / _COMPLEXITY_FILES[complexity]
    bundled = model.exists()
    try:
        return mp_pose.Pose(
            static_image_mode=static, model_complexity=complexity, smooth_landmarks=smooth,
            enable_segmentation=False, min_detection_confidence=det, min_tracking_confidence=track,
        )
    except Exception as exc:
        hint = "" if bundled else (
            f" MediaPipe downloads {model.name} on first use and this machine could not (offline?); "
            "use --model-complexity 1 (bundled) or pass --task-file with a downloaded pose_landmarker .task"
        )
        raise MomuError(f"cannot start MediaPipe pose (complexity {complexity}): {exc}.{hint}") from None


def _make_tasks_landmarker(task_file: Path, det: float, track: float):
    if not task_file.exists():
        raise MomuError(f"--task-file {task_file} not found; download a pose_landmarker_*.task model from MediaPipe")
    _import_mediapipe()
    try:
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode
    except ImportError as exc:
        raise MomuError(f"this mediapipe has no Tasks API PoseLandmarker ({exc}); drop --task-file to use the bundled model") from None
    try:
        opts = PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task_file)), running_mode=RunningMode.VIDEO, num_poses=1,
            min_pose_detection_confidence=det, min_tracking_confidence=track,
        )
        return PoseLandmarker.create_from_options(opts)
    except Exception as exc:
        raise MomuError(f"cannot load MediaPipe task file {task_file}: {exc}; is it a pose_landmarker .task?") from None


# ------------------------------------------------------------------------------------------------
# video files


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    n_frames: int  # container's count (may be approximate for some codecs)
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps


def _open_capture(path: Path):
    import cv2

    if not path.exists():
        raise MomuError(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MomuError(f"cannot open video {path}: OpenCV/ffmpeg does not recognise it; re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)")
    return cap


def _ffprobe_fps(path: Path) -> float | None:
    if shutil.which("ffprobe") is None:
        return None
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=avg_frame_rate,r_frame_rate",
         "-of", "json", str(path)], capture_output=True, text=True,
    )
    try:
        st = json.loads(proc.stdout)["streams"][0]
    except (KeyError, IndexError, ValueError):
        return None
    for key in ("avg_frame_rate", "r_frame_rate"):
        num, _, den = st.get(key, "0/0").partition("/")
        try:
            fps = float(num) / float(den or 1)
        except (ValueError, ZeroDivisionError):
            continue
        if math.isfinite(fps) and fps > 0:
            return fps
    return None


def video_info(path: str | Path) -> VideoInfo:
    """Frame rate, frame count and size of a video (OpenCV, ffprobe as fall-back for the rate)."""
    import cv2

    path = Path(path)
    cap = _open_capture(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w <= 0 or h <= 0:
            raise MomuError(f"{path} has no readable video stream")
        ok, _ = cap.read()
        if not ok:
            raise MomuError(f"cannot decode any frame of {path}; the file is damaged or not a video")
    finally:
        cap.release()
    if not (math.isfinite(fps) and 1.0 <= fps <= 1000.0):
        fps = _ffprobe_fps(path) or 0.0
    if fps <= 0:
        raise MomuError(f"cannot tell the frame rate of {path}; re-encode it with a constant frame rate")
    return VideoInfo(str(path), fps, n, w, h)


@dataclass
class GapReport:
    """Frames with no person: ``start`` .. ``end`` (exclusive) and how they were filled."""

    start: int
    end: int
    fps: float
    filled: str  # "interpolated" | "held" (long gap or at an end: last pose held, confidence 0)

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / self.fps

    def as_dict(self) -> dict:
        return {"start_frame": self.start, "end_frame": self.end, "start_s": round(self.start / self.fps, 3),
                "seconds": round(self.seconds, 3), "filled": self.filled}


def fill_gaps(joints, joints2d, confidence, detected, fps: float, max_gap_s: float = 0.5):
    """Fill frames without a detection, in place, so every array is finite.

    joints (T, J, 3), joints2d (T, J, 2), confidence (T, J), detected (T,) bool.  Gaps of at most
    ``max_gap_s`` between two detections are interpolated linearly (confidence interpolated too);
    longer gaps and gaps at either end hold the nearest detected pose with confidence 0.
    Returns the list of ``GapReport``.  Raises MomuError when nothing was detected.
    """
    detected = np.asarray(detected, bool)
    T = len(detected)
    if not detected.any():
        raise MomuError("no person detected in any frame; is a full body visible? Try better light or framing")
    max_gap = int(math.floor(max_gap_s * fps + 1e-9))
    gaps: list[GapReport] = []
    t = 0
    while t < T:
        if detected[t]:
            t += 1
            continue
        s = t
        while t < T and not detected[t]:
            t += 1
        e = t  # gap is [s, e)
        inner = s > 0 and e < T
        if inner and (e - s) <= max_gap:
            w = ((np.arange(s, e) - (s - 1)) / (e - (s - 1)))[:, None, None].astype(np.float32)  # (G, 1, 1)
            for arr in (joints, joints2d):
                arr[s:e] = (1 - w) * arr[s - 1] + w * arr[e]
            confidence[s:e] = (1 - w[..., 0]) * confidence[s - 1] + w[..., 0] * confidence[e]
            gaps.append(GapReport(s, e, fps, "interpolated"))
        else:
            src = s - 1 if s > 0 else e  # hold the last pose (or the first one, for a leading gap)
            joints[s:e] = joints[src]
            joints2d[s:e] = joints2d[src]
            confidence[s:e] = 0.0
            gaps.append(GapReport(s, e, fps, "held"))
    return gaps


def _image_root(joints: np.ndarray, joints2d: np.ndarray, valid: np.ndarray, width: int, height: int) -> np.ndarray:
    """Approximate root trajectory (T, 3) from the pelvis's image position (depth stays 0).

    Metres per pixel = median over valid frames of (3-D / 2-D pixel length) of neck-pelvis and both
    thigh+shin chains (near the image plane for an upright dancer), so one scale for the clip.
    """
    J = JOINT_INDEX
    px = joints2d * np.array([width, height], np.float32)  # (T, J, 2) pixels
    chains = [("pelvis", "neck"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("r_hip", "r_knee"), ("r_knee", "r_ankle")]
    l3 = sum(np.linalg.norm(joints[:, J[a]] - joints[:, J[b]], axis=-1) for a, b in chains)  # (T,)
    l2 = sum(np.linalg.norm(px[:, J[a]] - px[:, J[b]], axis=-1) for a, b in chains)  # (T,)
    ok = valid & (l2 > 1.0)
    if not ok.any():
        return np.zeros((len(joints), 3), np.float32)
    scale = float(np.median(l3[ok] / l2[ok]))  # metres per pixel
    pel = px[:, J["pelvis"]]  # (T, 2)
    ref = np.median(pel[ok], axis=0)
    root = np.zeros((len(joints), 3), np.float32)
    root[:, 0] = (pel[:, 0] - ref[0]) * scale
    root[:, 1] = -(pel[:, 1] - ref[1]) * scale
    return root


@dataclass
class ExtractReport:
    frames: int
    detected: int
    gaps: list = field(default_factory=list)

    @property
    def detected_fraction(self) -> float:
        return self.detected / max(1, self.frames)


def extract_video(
    path: str | Path,
    model_complexity: int = 1,
    task_file: str | Path | None = None,
    max_gap_s: float = 0.5,
    start_s: float = 0.0,
    max_seconds: float | None = None,
    progress: bool = True,
    root_from_image: bool = True,
    floor: bool = True,
):
    """Run MediaPipe over a video file; returns a canonical ``Motion`` at the video's frame rate.

    Short gaps (<= ``max_gap_s``) are interpolated, long ones hold the last pose with confidence 0
    (all arrays finite); the gaps are logged and kept in ``motion.meta["gaps"]``.  With
    ``root_from_image`` the pelvis-centred world landmarks get an approximate root trajectory from the
    pelvis's image position; with ``floor`` the lowest feet are shifted to y = 0 (as the DwM data).
    """
    import cv2
    from tqdm import tqdm

    from momu_live.models.motion import Motion

    path = Path(path)
    info = video_info(path)
    cap = _open_capture(path)
    first = int(round(start_s * info.fps))
    if first > 0:
        cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    limit = None if max_seconds is None else max(1, int(round(max_seconds * info.fps)))
    total = max(0, info.n_frames - first)
    total = min(total, limit) if limit else total
    J3, J2, C, D = [], [], [], []
    try:
        with PoseEstimator(model_complexity=model_complexity, task_file=task_file) as est, tqdm(
            total=total or None, unit="frame", desc=f"pose {path.name}", disable=not progress, leave=False
        ) as bar:
            k = 0
            while limit is None or k < limit:
                ok, frame = cap.read()
                if not ok:
                    break
                res = est.process(frame, (first + k) / info.fps)
                det = res.joints is not None and bool(np.isfinite(res.joints).all())
                J3.append(res.joints if det else np.zeros((N_JOINTS, 3), np.float32))
                J2.append(res.joints2d if det else np.zeros((N_JOINTS, 2), np.float32))
                C.append(res.confidence if det else np.zeros(N_JOINTS, np.float32))
                D.append(det)
                k += 1
                bar.update(1)
    finally:
        cap.release()
    if not D:
        raise MomuError(f"no frames could be decoded from {path} (start {start_s:.2f} s of {info.seconds:.2f} s)")
    joints, joints2d, conf, detected = np.stack(J3), np.stack(J2), np.stack(C), np.array(D)  # (T,18,3) (T,18,2) (T,18) (T,)
    gaps = fill_gaps(joints, joints2d, conf, detected, info.fps, max_gap_s)
    if root_from_image:
        joints = joints + _image_root(joints, joints2d, detected, info.width, info.height)[:, None, :]
    if floor:
        lowest = joints[:, list(FEET), 1].min(axis=1)  # (T,)
        joints[..., 1] -= float(np.percentile(lowest[detected], 5))
    for g in gaps:
        if g.filled == "held":
            log.warning("%s: no person for %.2f s from %.2f s; held the last pose with confidence 0",
                        path.name, g.seconds, g.start / info.fps)
    meta = {
        "source": "mediapipe", "video": str(path), "video_fps": info.fps, "width": info.width, "height": info.height,
        "start_frame": first, "detected_fraction": float(detected.mean()), "gaps": [g.as_dict() for g in gaps],
        "root": "image-plane estimate (x, y), depth 0" if root_from_image else "pelvis-centred",
        "backend": "tasks" if task_file else f"solutions/complexity{model_complexity}",
    }
    return Motion(joints=joints, fps=info.fps, joints2d=joints2d, confidence=conf, meta=meta)


def plot_motion_report(motion, path: str | Path, n_poses: int = 6) -> Path:
    """PNG summary of an extracted motion: stick figures (front view) at evenly spaced frames,
    mean confidence over time with filled gaps shaded, and the root trajectory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momu_live.models.skeleton import BONES

    j = motion.joints  # (T, 18, 3)
    T = motion.n_frames
    t = np.arange(T) / motion.fps
    fig = plt.figure(figsize=(12, 7))
    ax = fig.add_subplot(2, 1, 1)
    frames = np.linspace(0, T - 1, min(n_poses, T)).astype(int)
    for i, k in enumerate(frames):
        dx = i * 1.2 - j[k, JOINT_INDEX["pelvis"], 0]
        for p, c in BONES:
            side = CANONICAL_JOINTS[c][:2]
            col = "tab:blue" if side == "l_" else "tab:red" if side == "r_" else "k"
            ax.plot([j[k, p, 0] + dx, j[k, c, 0] + dx], [j[k, p, 1], j[k, c, 1]], color=col, lw=2)
        ax.text(i * 1.2, -0.15, f"{k / motion.fps:.1f} s", ha="center", fontsize=8)
    ax.set_aspect("equal")
    ax.set_title(f"{motion.meta.get('video', 'motion')}: front view (blue = left, red = right), metres")
    ax.set_xlim(-0.8, 1.2 * (len(frames) - 1) + 0.8)
    ax.set_xticks([])
    ax2 = fig.add_subplot(2, 2, 3)
    if motion.confidence is not None:
        ax2.plot(t, motion.confidence.mean(axis=1), lw=1)
    for g in motion.meta.get("gaps", []):
        ax2.axvspan(g["start_s"], g["start_s"] + g["seconds"], color="orange" if g["filled"] == "interpolated" else "red", alpha=0.3)
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("mean confidence")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_title("confidence (orange: interpolated gap, red: held gap)")
    ax3 = fig.add_subplot(2, 2, 4)
    ax3.plot(t, j[:, JOINT_INDEX["pelvis"], 0], label="pelvis x")
    ax3.plot(t, j[:, JOINT_INDEX["pelvis"], 1], label="pelvis y")
    ax3.plot(t, j[:, list(FEET), 1].min(axis=1), label="lowest foot y")
    ax3.set_xlabel("time (s)")
    ax3.set_ylabel("m")
    ax3.legend(fontsize=8)
    ax3.set_title("root trajectory")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
