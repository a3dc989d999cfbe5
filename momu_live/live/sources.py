"""Live input sources: each runs on its own thread(s) and pushes timestamped items to the engine.

One interface (``Source``): ``start(emit, report, clock)``, ``stop()``, ``join()``, ``finished``, ``stats``.
``emit(item)`` must never block (the engine's ingest is O(1)); ``report(msg)`` surfaces problems in
the status heartbeat; ``clock()`` is the engine's stream clock (s since start).

- ``CameraSource``: a webcam (``webcam[:N]``) or a video file (``video:PATH``) played at real-time pace
  (or as fast as possible with ``realtime=False``).  A capture thread decodes frames into a 2-slot
  dropping queue; a pose thread runs MediaPipe (``momu_live.pose.PoseEstimator``), person tracking and
  One-Euro smoothing.  A camera that fails or disappears is reported and re-opened with back-off; a
  slow pose stage drops frames (counted) instead of queueing them.
- ``AudioDeviceSource``: DAW/loopback input through the bridge's ``AudioInput`` (sounddevice, device
  chosen by name substring, resampled with soxr streaming to the engine rate).
- ``AudioFileSource``: an audio file played at pace.
- ``OscPoseSource``: ``/momu/pose/frame`` messages from an external tracker (handled on the control
  server's socket, see ``control.py``).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from momu_live import MomuError
from momu_live.bridge.grammar import POSE_INPUT_ADDR
from momu_live.live.buffer import DropQueue
from momu_live.live.smoothing import MEDIAPIPE_WORLD, OneEuroParams, PoseSmoother
from momu_live.models.timebase import DEFAULT_TIMEBASE

log = logging.getLogger(__name__)
N_JOINTS = 18


@dataclass
class PoseItem:
    t: float  # stream time of the frame (s)
    joints: np.ndarray | None  # (J, 3) metres, y up; None = no person
    confidence: np.ndarray | None = None  # (J,)
    person: int = 0
    frame: int = 0  # source frame index
    wall: float = 0.0  # time.monotonic() when the frame was captured (end-to-end latency origin)
    capture_ms: float = 0.0
    pose_ms: float = 0.0


@dataclass
class AudioItem:
    t: float  # stream time of the first sample
    samples: np.ndarray  # (N,) float32 mono at ``sample_rate``
    sample_rate: int
    wall: float = 0.0
    capture_ms: float = 0.0


@dataclass
class SourceStats:
    frames: int = 0
    dropped: int = 0
    no_person: int = 0
    errors: int = 0
    reopens: int = 0
    extra: dict = field(default_factory=dict)


class Source:
    """Base class: subclasses implement ``_threads()`` returning the thread targets to run."""

    kind = "pose"  # "pose" | "audio"
    name = "source"

    def __init__(self):
        self._stop = threading.Event()
        self._threads_: list[threading.Thread] = []
        self.finished = False
        self.stats = SourceStats()
        self.emit: Callable = lambda item: None
        self.report: Callable[[str], None] = lambda msg: None
        self.clock: Callable[[], float] = time.monotonic

    def start(self, emit: Callable, report: Callable[[str], None], clock: Callable[[], float]) -> None:
        self.emit, self.report, self.clock = emit, report, clock
        for i, target in enumerate(self._threads()):
            th = threading.Thread(target=self._guard(target), name=f"{self.name}-{i}", daemon=True)
            th.start()
            self._threads_.append(th)

    def _guard(self, target):
        def run():
            try:
                target()
            except MomuError as exc:
                self.stats.errors += 1
                self.report(f"{self.name}: {exc}")
                self.finished = True
            except Exception as exc:  # a source must never take the engine down
                self.stats.errors += 1
                log.exception("%s crashed", self.name)
                self.report(f"{self.name}: stopped after an error: {exc!r}")
                self.finished = True
        return run

    def _threads(self) -> list[Callable[[], None]]:
        return []

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 5.0) -> None:
        for th in self._threads_:
            th.join(timeout)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self._stop.wait(max(0.0, seconds))


# ------------------------------------------------------------------------------------------------
# camera / video


class PersonTracker:
    """Minimal single-view tracking: a track ends after ``lost_s`` without a person or on a jump larger than
    ``max_jump`` (normalised image units) of the body centre; the new track gets the lowest free slot id,
    so a single dancer keeps person 0, and every new track starts a fresh smoothing filter.
    """

    def __init__(self, lost_s: float = 0.5, max_jump: float = 0.25):
        self.lost_s, self.max_jump = lost_s, max_jump
        self.last_t: float | None = None
        self.last_centre: np.ndarray | None = None
        self.track = 0  # increments on every new track
        self.new_track = True

    def update(self, joints2d: np.ndarray | None, t: float) -> tuple[int, bool]:
        """Returns (person slot, True when this frame starts a new track)."""
        if joints2d is None or not np.isfinite(joints2d).any():
            return 0, False
        c = np.nanmean(np.asarray(joints2d, np.float64), axis=0)  # (2,)
        new = (self.last_t is None or t - self.last_t > self.lost_s
               or (self.last_centre is not None and float(np.linalg.norm(c - self.last_centre)) > self.max_jump))
        if new:
            self.track += 1
        self.last_t, self.last_centre = t, c
        return 0, new


def parse_webcam(spec: str) -> int:
    _, _, idx = spec.partition(":")
    try:
        return int(idx) if idx else 0
    except ValueError:
        raise MomuError(f"--source {spec}: the camera index must be a number (webcam:0)") from None


class CameraSource(Source):
    """Webcam (``index``) or video file (``path``) -> MediaPipe poses; see the module docstring."""

    kind = "pose"

    def __init__(self, path: str | Path | None = None, index: int | None = None, realtime: bool = True,
                 fps: float | None = None, loop: bool = False, smoothing: OneEuroParams | None = MEDIAPIPE_WORLD,
                 model_complexity: int = 1, retry_s: tuple[float, float] = (0.5, 5.0), estimator_factory=None):
        super().__init__()
        if (path is None) == (index is None):
            raise ValueError("give a video path or a camera index")
        self.path = Path(path) if path is not None else None
        self.index = index
        self.is_camera = index is not None
        self.name = f"webcam:{index}" if self.is_camera else f"video:{self.path.name}"
        if self.path is not None and not self.path.exists():
            raise MomuError(f"video file not found: {self.path}")
        self.realtime, self.fps_override, self.loop = realtime, fps, loop
        self.smoother = PoseSmoother(smoothing) if smoothing is not None else None
        self.tracker = PersonTracker()
        self.model_complexity = model_complexity
        self.retry_s = retry_s
        self.estimator_factory = estimator_factory
        self.frames = DropQueue(2)
        self.video_fps: float | None = None
        self._capture_done = threading.Event()

    def _threads(self):
        return [self._capture_loop, self._pose_loop]

    def _open(self):
        import cv2

        cap = cv2.VideoCapture(self.index) if self.is_camera else cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            return None, 0.0
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (1.0 <= fps <= 1000.0):
            fps = 30.0
        return cap, (self.fps_override or fps)

    def _capture_loop(self) -> None:
        backoff = self.retry_s[0]
        media_offset = 0.0  # media time of the current file pass (loops continue the clock)
        k_total = 0
        while not self._stop.is_set():
            cap, fps = self._open()
            if cap is None:
                self.stats.errors += 1
                what = f"camera {self.index}" if self.is_camera else f"video {self.path}"
                self.report(f"{self.name}: cannot open {what}; retrying in {backoff:.1f} s")
                if self._sleep(backoff):
                    break
                backoff = min(backoff * 2, self.retry_s[1])
                self.stats.reopens += 1
                continue
            backoff = self.retry_s[0]
            self.video_fps = fps
            k = 0
            ended = False
            try:
                while not self._stop.is_set():
                    if self.is_camera:
                        wall0 = time.monotonic()
                    else:
                        t_media = media_offset + k / fps
                        if self.realtime:
                            lag = self.clock() - t_media
                            if lag < 0 and self._sleep(-lag):
                                break
                            if lag > 2.0 / fps:  # far behind (machine stalled): skip decoding late frames
                                if cap.grab():
                                    k += 1
                                    k_total += 1
                                    self.stats.dropped += 1
                                    continue
                        wall0 = time.monotonic()
                    ok, frame = cap.read()
                    cap_ms = (time.monotonic() - wall0) * 1000.0
                    if not ok or frame is None:
                        ended = True
                        break
                    t = self.clock() if self.is_camera else media_offset + k / fps
                    if not self.realtime:  # --fast: wait for the pose stage instead of dropping frames
                        while len(self.frames) >= 1 and not self._stop.is_set():
                            time.sleep(0.001)
                    if not self.frames.put((frame, t, k_total, wall0, cap_ms)):
                        self.stats.dropped += 1
                    k += 1
                    k_total += 1
            finally:
                cap.release()
            if self._stop.is_set():
                break
            if ended and self.is_camera:
                self.stats.errors += 1
                self.report(f"{self.name}: camera stopped delivering frames; re-opening")
                self.stats.reopens += 1
                if self._sleep(backoff):
                    break
                continue
            if ended and self.loop and k > 0:
                media_offset += k / fps
                continue
            if ended:
                self.report(f"{self.name}: end of file after {k} frames ({k / fps:.1f} s)" if k else
                            f"{self.name}: no frame could be decoded")
                break
        self._capture_done.set()

    def prepare(self) -> None:
        """Start MediaPipe before the engine's clock starts (its start-up takes ~1 s)."""
        if getattr(self, "_est", None) is None:
            self._est = self._make_estimator()

    def _make_estimator(self):
        if self.estimator_factory is not None:
            return self.estimator_factory()
        from momu_live.pose import PoseEstimator

        # MediaPipe's own landmark smoothing is off: the One-Euro filter here does it, per track.
        return PoseEstimator(model_complexity=self.model_complexity, smooth_landmarks=self.smoother is None)

    def _pose_loop(self) -> None:
        est = getattr(self, "_est", None) or self._make_estimator()
        self._est = None
        try:
            while not (self._stop.is_set() or (self._capture_done.is_set() and len(self.frames) == 0)):
                got = self.frames.get(timeout=0.1)
                if got is None:
                    continue
                frame, t, k, wall0, cap_ms = got
                p0 = time.monotonic()
                try:
                    res = est.process(frame, t)
                except MomuError:
                    raise
                except Exception as exc:  # a bad frame must not stop the stream
                    self.stats.errors += 1
                    self.report(f"{self.name}: pose estimation failed on frame {k}: {exc!r}")
                    continue
                pose_ms = (time.monotonic() - p0) * 1000.0
                joints = res.joints
                if joints is not None and not np.isfinite(joints).any():
                    joints = None
                self.stats.frames += 1
                if joints is None:
                    self.stats.no_person += 1
                    self.emit(PoseItem(t, None, None, 0, k, wall0, cap_ms, pose_ms))
                    continue
                person, new = self.tracker.update(res.joints2d, t)
                if self.smoother is not None:
                    if new:
                        self.smoother.reset(person)
                    joints = self.smoother(person, joints, t)
                self.emit(PoseItem(t, joints, res.confidence, person, k, wall0, cap_ms, pose_ms))
        finally:
            est.close()
            self.finished = not self.is_camera


# ------------------------------------------------------------------------------------------------
# audio


class AudioFileSource(Source):
    """An audio file streamed in blocks at real-time pace (or as fast as possible)."""

    kind = "audio"

    def __init__(self, path: str | Path, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, realtime: bool = True, block: int = 1024,
                 loop: bool = False):
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise MomuError(f"audio file not found: {self.path}")
        self.name = f"file:{self.path.name}"
        self.sample_rate, self.realtime, self.block, self.loop = sample_rate, realtime, block, loop
        self._wav: np.ndarray | None = None

    def _threads(self):
        return [self._run]

    def prepare(self) -> None:
        """Decode the file before the engine's clock starts (so playback does not start with a burst)."""
        if self._wav is None:
            from momu_live.models.audio import load_audio

            self._wav, _ = load_audio(self.path, self.sample_rate)
            if len(self._wav) == 0:
                raise MomuError(f"{self.path} holds no audio")

    def _run(self) -> None:
        self.prepare()
        wav, sr = self._wav, self.sample_rate
        n = 0  # samples emitted (exact clock)
        while not self._stop.is_set():
            i = n % len(wav) if self.loop else n
            if i >= len(wav):
                break
            blk = wav[i:i + self.block]
            t = n / sr
            if self.realtime:
                lag = self.clock() - (t + len(blk) / sr)  # a block is available once its last sample "played"
                if lag < 0 and self._sleep(-lag):
                    break
            self.emit(AudioItem(t, blk.astype(np.float32), sr, time.monotonic(), 0.0))
            self.stats.frames += 1
            n += len(blk)
        self.report(f"{self.name}: end of file ({n / sr:.1f} s)")
        self.finished = True


class AudioDeviceSource(Source):
    """DAW/loopback input: the bridge's ``AudioInput`` (device by name substring, stereo averaged to mono,
    resampled to ``sample_rate`` with the streaming soxr resampler), reopened after a device error."""

    kind = "audio"

    def __init__(self, device: str, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, block: int = 512,
                 retry_s: float = 1.0):
        from momu_live.bridge.audio_io import find_device

        super().__init__()
        self.device = device
        self.name = f"audio:{device}"
        self.sample_rate, self.block, self.retry_s = sample_rate, block, retry_s
        find_device(device, "input")  # fail early with the list of inputs

    def _threads(self):
        return [self._run]

    def _run(self) -> None:
        from momu_live.bridge.audio_io import AudioInput

        n_out = 0  # samples emitted over every (re)opened stream: stream time never jumps back
        while not self._stop.is_set():
            inp = None
            try:
                inp = AudioInput(self.device, self.sample_rate, blocksize=self.block, queue_blocks=64, latency="low",
                                 mono=True)
                self.stats.extra.update(device=inp.name, device_rate=inp.device_rate)
                while not self._stop.is_set():
                    got = inp.read_timed(timeout=0.2)
                    if got is None:
                        continue
                    block, wall = got
                    y = block.samples
                    if len(y):
                        self.emit(AudioItem(n_out / self.sample_rate, y, self.sample_rate, wall, 0.0))
                        n_out += len(y)
                        self.stats.frames += 1
            except MomuError as exc:
                self.report(f"{self.name}: {exc}; retrying")
            except Exception as exc:  # device vanished, PortAudio error: report and retry
                self.stats.errors += 1
                self.report(f"{self.name}: audio input failed ({exc}); retrying in {self.retry_s:.1f} s")
            finally:
                if inp is not None:
                    self.stats.dropped += inp.overflows
                    inp.close()
            self.stats.reopens += 1
            if self._sleep(self.retry_s):
                break


# ------------------------------------------------------------------------------------------------
# OSC poses


class OscPoseSource(Source):
    """Poses from an external tracker as ``/momu/pose/frame i person, i frame, i time_s, f time_frac, x y z ...``
    (J*3 floats; the older layout with one ``f time`` is accepted too: the argument count tells them apart).

    Has no thread of its own: the control input (``control.ControlInput``) calls ``on_message``.
    Frames are stamped with the engine clock at arrival; NaN joints are allowed (missing), a frame of
    the wrong length is counted as malformed and ignored.
    """

    kind = "pose"
    ADDRESS = POSE_INPUT_ADDR

    def __init__(self, smoothing: OneEuroParams | None = None, n_joints: int = N_JOINTS):
        super().__init__()
        self.name = "osc"
        self.n_joints = n_joints
        self.smoother = PoseSmoother(smoothing) if smoothing is not None else None
        self.malformed = 0

    def on_message(self, address: str, args: list) -> None:
        wall = time.monotonic()
        head = len(args) - 3 * self.n_joints  # 4: i time_s + f time_frac (momu's own output); 3: f time
        if head not in (3, 4):
            self.malformed += 1
            return
        try:
            person, frame = int(args[0]), int(args[1])
            joints = np.asarray(args[head:], np.float32).reshape(self.n_joints, 3)  # (J, 3)
        except (TypeError, ValueError):
            self.malformed += 1
            return
        t = self.clock()
        self.stats.frames += 1
        if not np.isfinite(joints).any():
            self.stats.no_person += 1
            self.emit(PoseItem(t, None, None, person, frame, wall))
            return
        if self.smoother is not None:
            joints = self.smoother(person, joints, t)
        conf = np.isfinite(joints).all(-1).astype(np.float32)  # (J,)
        self.emit(PoseItem(t, joints, conf, person, frame, wall))


class NullSource(Source):
    """No input (joint/idle mode): the engine free-runs."""

    name = "none"
    kind = "none"


def make_source(spec: str, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, realtime: bool = True, fps: float | None = None,
                loop: bool = False) -> Source:
    """``webcam[:N] | video:PATH | audio:DEVICE | file:PATH | osc | none`` -> a Source."""
    kind, _, arg = spec.partition(":")
    if kind == "webcam":
        return CameraSource(index=parse_webcam(spec))
    if kind == "video":
        if not arg:
            raise MomuError("--source video:PATH needs a path")
        return CameraSource(path=arg, realtime=realtime, fps=fps, loop=loop)
    if kind == "audio":
        if not arg:
            raise MomuError("--source audio:DEVICE needs a device name (substring; see `momu devices`)")
        return AudioDeviceSource(arg, sample_rate)
    if kind == "file":
        if not arg:
            raise MomuError("--source file:PATH needs a path")
        return AudioFileSource(arg, sample_rate, realtime=realtime, loop=loop)
    if kind == "osc":
        return OscPoseSource()
    if kind == "none":
        return NullSource()
    raise MomuError(f"unknown --source {spec!r}; use webcam[:N], video:PATH, audio:DEVICE, file:PATH, osc or none")
