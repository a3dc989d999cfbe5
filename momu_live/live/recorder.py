"""Recording of everything the engine emits: WAV of generated audio, .npz of poses, JSONL of events.

Files in the record directory:

- ``generated.wav`` - all generated audio (16-bit PCM at the engine rate), written as it arrives
  (gaps between blocks are filled with silence so the file stays on the stream clock) through the
  bridge's one WAV writer (``momu_live.bridge.audio_io.WavRecorder``), whose header is rewritten on
  every write, so the file plays even if the process is killed;
- ``poses.npz`` - ``capture_*`` and ``generated_*`` arrays (``times`` (N,), ``frames`` (N,),
  ``persons`` (N,), ``joints`` (N, J, 3), ``confidence`` (N, J)), re-written atomically every
  ``flush_s`` and on close;
- ``events.jsonl`` - one JSON object per event (pose frames without their joints: those are in the
  .npz), line-buffered;
- ``session.json`` - mode, source, back-end label, counters at close.

``Recorder`` is a ``Sink`` (``emit``/``close``).  ``close()`` is idempotent and is what SIGINT/SIGTERM
end in: nothing recorded is lost.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from momu_live.bridge.events import AudioBlock, Beat, PoseFrame, Status


class Recorder:
    FILES = ("generated.wav", "poses.npz", "events.jsonl", "session.json")

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
        self._last_flush = time.monotonic()
        self.closed = False
        self.counts = {"pose": 0, "beat": 0, "status": 0, "audio_samples": 0}

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

    def close(self, extra: dict | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self._flush()
            self.closed = True
            self._wav.close()
            self._events.close()
            meta = {**self.meta, **(extra or {}), "counts": self.counts, "sample_rate": self.sample_rate,
                    "audio_seconds": self._wav_n / self.sample_rate}
            (self.dir / "session.json").write_text(json.dumps(meta, indent=2, default=_json_default))


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
