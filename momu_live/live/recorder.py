"""Recording of everything the engine emits: WAV of generated audio, .npz of poses, JSONL of events.

Files in the record directory:

- ``generated.wav`` - all generated audio (16-bit PCM at the engine rate), written as it arrives
  (gaps between blocks are filled with silence so the file stays on the stream clock) through the
  bridge's one WAV writer (``momu_live.bridge.audio_io.WavRecorder``), whose header is rewritten on
  every write, so the file plays even if the process is killed;
- ``poses.npz`` - ``capture_*`` and ``generated_*`` arrays (``times`` (N,), ``frames`` (N,),
  ``persons`` (N,), ``joints`` (N, J, 3), ``confidence`` (N, J)), written (empty) when the recording
  opens, then re-written atomically every ``flush_s`` and on close;
- ``capture_motion.npz``, ``generated_motion.npz`` - the same poses in the motion format of the CLI
  (``momu_live.models.motion``: ``joints`` [T, J, 3], ``fps``, ``joint_names``, ``confidence`` [T, J],
  ``meta``), so ``momu generate motion2music --motion DIR/capture_motion.npz`` reads a live session:
  one person (the one with the most frames), resampled onto a uniform grid at the stream's rate
  (``motion_from_frames``); grid frames without a recorded frame within half a period (a dropped
  frame, no person, a non-finite joint) hold the last value with confidence 0.  Written atomically
  with ``poses.npz`` once the stream has frames;
- ``events.jsonl`` - one JSON object per event (pose frames without their joints: those are in the
  .npz), line-buffered;
- ``session.json`` - mode, source, back-end label, counters at close.

``Recorder`` is a ``Sink`` (``emit``/``close``).  ``close()`` is idempotent and is what SIGINT/SIGTERM
end in: nothing recorded is lost.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Status
from momu_live.models.timebase import DEFAULT_TIMEBASE

log = logging.getLogger(__name__)


class Recorder:
    FILES = ("generated.wav", "poses.npz", "events.jsonl", "session.json", "capture_motion.npz",
             "generated_motion.npz")

    def __init__(self, directory: str | Path, sample_rate: int, meta: dict | None = None, flush_s: float = 5.0,
                 overwrite: bool = False):
        from momu_live import MomuError
        from momu_live.bridge.audio_io import WavRecorder

        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise MomuError(f"--record {self.dir}: is a file; give a folder to record into")
        held = [f for f in self.FILES if (self.dir / f).exists()]
        if held and not overwrite:
            raise MomuError(f"--record {self.dir} already holds a recording ({', '.join(held)}); pick another folder "
                            "or pass --force to overwrite it")
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in held:  # --force: no file of the old session may pass for part of this one
            (self.dir / f).unlink()
        self.sample_rate = int(sample_rate)
        self.meta = dict(meta or {})
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._wav = WavRecorder(self.dir / "generated.wav", self.sample_rate, 1, subtype="PCM_16")
        self._wav_n = 0  # samples written
        self._wav_t0: float | None = None
        self._events = open(self.dir / "events.jsonl", "w", buffering=1, encoding="utf-8")
        self._poses: dict[str, dict[str, list]] = {k: {"times": [], "frames": [], "persons": [], "joints": [], "confidence": []}
                                                   for k in ("capture", "generated")}
        self._names: dict[str, tuple[str, ...]] = {}  # joint names per stream (its first frame's)
        self.motion_errors = 0
        self._last_flush = time.monotonic()
        self.closed = False
        self.counts = {"pose": 0, "beat": 0, "status": 0, "audio_samples": 0}
        self._flush()  # poses.npz exists (empty) from the start: a kill before the first flush_s loses nothing

    def emit(self, ev) -> None:
        with self._lock:
            if self.closed:
                return
            if isinstance(ev, AudioBlock):
                self._add_audio(ev)
            elif isinstance(ev, PoseFrame):
                self._add_pose(ev)
            else:
                d = asdict(ev)
                d["type"] = type(ev).__name__.lower()
                self._write(d)
                if isinstance(ev, Beat):
                    self.counts["beat"] += 1
                elif isinstance(ev, Status):
                    self.counts["status"] += 1
            if time.monotonic() - self._last_flush >= self.flush_s:
                self._flush()

    def _write(self, d: dict) -> None:
        try:
            line = json.dumps(d, default=_json_default, allow_nan=False)
        except ValueError:  # a NaN/inf somewhere: write it as null rather than lose the event
            line = json.dumps(_finite(d), default=_json_default, allow_nan=False)
        self._events.write(line + "\n")

    def _add_audio(self, ev: AudioBlock) -> None:
        x = np.asarray(ev.samples, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        x = np.clip(np.nan_to_num(x), -1.0, 1.0)
        if self._wav_t0 is None:
            self._wav_t0 = float(ev.time)
        start = int(round((ev.time - self._wav_t0) * self.sample_rate))
        if start > self._wav_n:  # gap (skipped windows): keep the file on the stream clock
            self._wav.write(np.zeros(start - self._wav_n, np.float32))
            self._wav_n = start
        elif start < self._wav_n:  # overlap: keep what was written
            x = x[self._wav_n - start:]
        if len(x):
            self._wav.write(x)
            self._wav_n += len(x)
            self.counts["audio_samples"] += len(x)

    def _add_pose(self, ev: PoseFrame) -> None:
        key = "generated" if ev.source == "generated" else "capture"
        p = self._poses[key]
        j = np.asarray(ev.joints, np.float32)
        if key not in self._names:
            from momu_live.bridge.grammar import joint_names

            self._names[key] = joint_names(ev)
        elif j.shape[0] != len(self._names[key]):  # a frame of another skeleton: not part of this stream
            return
        p["times"].append(float(ev.time))
        p["frames"].append(int(ev.frame))
        p["persons"].append(int(ev.person))
        p["joints"].append(j)
        c = ev.confidence if ev.confidence is not None else np.ones(len(j), np.float32)
        p["confidence"].append(np.asarray(c, np.float32))
        self.counts["pose"] += 1
        self._write({"type": "poseframe", "source": ev.source, "person": int(ev.person), "frame": int(ev.frame),
                     "time": float(ev.time)})

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        self._events.flush()
        arrays = {}
        for key, p in self._poses.items():
            n = len(p["times"])
            J = p["joints"][0].shape[0] if n else 18
            arrays[f"{key}_times"] = np.asarray(p["times"], np.float64)
            arrays[f"{key}_frames"] = np.asarray(p["frames"], np.int64)
            arrays[f"{key}_persons"] = np.asarray(p["persons"], np.int32)
            arrays[f"{key}_joints"] = np.stack(p["joints"]) if n else np.zeros((0, J, 3), np.float32)
            arrays[f"{key}_confidence"] = np.stack(p["confidence"]) if n else np.zeros((0, J), np.float32)
        tmp = self.dir / "poses.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.dir / "poses.npz")
        for key in self._poses:
            try:
                self._write_motion(key, arrays)
            except Exception as exc:  # never cost the WAV, the events or the close
                self.motion_errors += 1
                log.warning("recording %s: cannot write %s_motion.npz: %r", self.dir, key, exc)

    def _write_motion(self, key: str, arrays: dict) -> None:
        """``<key>_motion.npz`` (the motion format) from the stream's recorded frames, atomically."""
        times, persons = arrays[f"{key}_times"], arrays[f"{key}_persons"]
        if not len(times):
            return
        ids, counts = np.unique(persons, return_counts=True)
        person = int(ids[np.argmax(counts)])  # the most seen dancer (lowest id on a tie)
        sel = persons == person
        default_fps = float(DEFAULT_TIMEBASE.motion_rate) if key == "generated" else 30.0
        motion = motion_from_frames(times[sel], arrays[f"{key}_joints"][sel], arrays[f"{key}_confidence"][sel],
                                    self._names.get(key, ()), default_fps=default_fps)
        motion.meta = {**_finite(self.meta), **motion.meta, "source": "momu live --record", "stream": key,
                       "person": person, "persons": ids.tolist()}
        tmp = self.dir / f"{key}_motion.tmp.npz"
        save_motion_npz(motion, tmp)
        os.replace(tmp, self.dir / f"{key}_motion.npz")

    def close(self, extra: dict | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self._flush()
            self.closed = True
            self._wav.close()
            self._events.close()
            meta = {**self.meta, **(extra or {}), "counts": self.counts, "sample_rate": self.sample_rate,
                    "audio_seconds": self._wav_n / self.sample_rate,
                    "audio_start_s": self._wav_t0}  # stream time of generated.wav's first sample
            (self.dir / "session.json").write_text(json.dumps(meta, indent=2, default=_json_default))


# rates a recorded stream is snapped to when its measured rate is within 1 % (cameras, video, the model)
_COMMON_FPS = (float(DEFAULT_TIMEBASE.motion_rate), 24000 / 1001, 30000 / 1001, 60000 / 1001,
               *map(float, range(1, 241)))


def stream_fps(times: np.ndarray, default: float = 30.0) -> float:
    """The rate of a recorded stream, snapped to a common rate within 1 %.

    Periods counted over the whole span (each interval is a whole number of median intervals: a dropped
    frame counts two), so the jitter of single capture times averages out.
    """
    t = np.unique(np.asarray(times, np.float64))
    dt = np.diff(t)
    dt = dt[dt > 1e-6]
    if not len(dt):
        return float(default)
    periods = np.maximum(1, np.round(dt / float(np.median(dt))))
    fps = float(periods.sum()) / float(dt.sum())
    best = min(_COMMON_FPS, key=lambda c: abs(c - fps) / c)
    return float(best) if abs(best - fps) / best <= 0.01 else fps


def motion_from_frames(times, joints, confidence=None, joint_names=(), fps: float | None = None,
                       default_fps: float = 30.0):
    """Recorded frames of one person (stream times (N,), joints (N, J, 3), confidence (N, J)) -> a ``Motion``
    on the uniform grid ``t0 + k / fps`` (``fps``: given, else ``stream_fps``), ``t0`` the first frame's time.

    Per joint, a grid frame between two finite recorded samples at most 1.5 periods apart is interpolated
    linearly (confidence too); else, if a finite sample lies within half a period, it takes that sample;
    else it is a gap: it holds the last finite value (the first one before any) with confidence 0.  A joint
    never seen finite is 0 with confidence 0.  ``meta`` says ``t0``, the rate and how many frames were held.
    """
    from momu_live.models.motion import Motion
    from momu_live.models.skeleton import CANONICAL_JOINTS

    times = np.asarray(times, np.float64)  # (N,)
    joints = np.asarray(joints, np.float32)  # (N, J, 3)
    N, J = joints.shape[:2]
    conf = np.ones((N, J), np.float32) if confidence is None else np.nan_to_num(np.asarray(confidence, np.float32))
    order = np.argsort(times, kind="stable")
    times, joints, conf = times[order], joints[order], conf[order]
    keep = np.append(np.diff(times) > 0, True)  # equal times: the later frame wins
    times, joints, conf = times[keep], joints[keep], conf[keep]
    fps = float(fps) if fps else stream_fps(times, default_fps)
    t0 = float(times[0])
    T = int(np.floor((times[-1] - t0) * fps + 1e-6)) + 1
    grid = t0 + np.arange(T) / fps  # (T,)
    period = 1.0 / fps
    out = np.zeros((T, J, 3), np.float32)
    out_c = np.zeros((T, J), np.float32)
    for j in range(J):
        ok = np.isfinite(joints[:, j]).all(-1)  # (N,)
        vt, vx, vc = times[ok], joints[ok, j], conf[ok, j]
        M = len(vt)
        if M == 0:
            continue
        i1 = np.searchsorted(vt, grid, side="right")  # first sample after each grid time
        i0 = np.clip(i1 - 1, 0, M - 1)  # last sample at or before it (clipped)
        i1c = np.clip(i1, 0, M - 1)
        has0, has1 = i1 >= 1, i1 < M
        left, right = vt[i0], vt[i1c]
        both = has0 & has1 & (right - left <= 1.5 * period + 1e-9)
        w = np.where(both, (grid - left) / np.maximum(right - left, 1e-12), 0.0)[:, None]  # (T, 1)
        x = np.where(both[:, None], (1 - w) * vx[i0] + w * vx[i1c], vx[i0])  # held: last sample (first before)
        c = np.where(both, (1 - w[:, 0]) * vc[i0] + w[:, 0] * vc[i1c], 0.0)
        near0 = has0 & (grid - left <= 0.5 * period + 1e-9)
        near1 = has1 & (right - grid <= 0.5 * period + 1e-9)
        near1 &= ~near0 | (right - grid < grid - left)
        x = np.where((~both & near1)[:, None], vx[i1c], x)
        c = np.where(~both & near1, vc[i1c], c)
        c = np.where(~both & near0 & ~near1, vc[i0], c)
        out[:, j], out_c[:, j] = x, c
    names = tuple(joint_names) if len(joint_names) == J else (
        CANONICAL_JOINTS if J == len(CANONICAL_JOINTS) else tuple(f"j{i}" for i in range(J)))
    held = int((out_c == 0).all(axis=1).sum())
    meta = {"t0": t0, "fps": fps, "frames_recorded": int(N), "frames_held": held}
    return Motion(joints=out, fps=fps, joint_names=names, confidence=np.clip(out_c, 0.0, 1.0), meta=meta)


def save_motion_npz(motion, path: str | Path) -> None:
    """``motion`` in the motion file format (``momu_live.models.motion``), uncompressed: a flush of a long
    session must not stall the recorder for seconds of zlib."""
    arrays = {"joints": motion.joints, "fps": np.float64(motion.fps), "joint_names": np.array(motion.joint_names)}
    if motion.confidence is not None:
        arrays["confidence"] = motion.confidence
    if motion.meta:
        arrays["meta"] = np.array(json.dumps(motion.meta, default=_json_default, allow_nan=False))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _finite(o):
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, (float, np.floating)) and not math.isfinite(float(o)):
        return None
    return o


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating,)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    return str(o)
