"""Audio I/O: sound-device output through a ring buffer, input streams delivering ``AudioBlock``s, WAV recording.

- ``AudioOutput``: ``write(samples)`` from any thread (never blocks: a full ring drops the oldest
  audio, counted as ``overflows``); the PortAudio callback reads the ring and plays silence on an
  underrun (counted in ``underruns``, frames in ``underrun_frames``).  The model's rate (22,050 Hz)
  is resampled to the device's rate with a streaming soxr resampler (chunked == whole).
- ``AudioInput``: a device chosen by name substring, resampled to the requested rate, delivered as
  ``AudioBlock(samples, sample_rate, time)`` through a bounded queue (``read()``); ``time`` counts
  samples since the stream opened, so it never drifts.
- ``WavRecorder``: libsndfile writes every block straight to disk and rewrites the WAV header after
  each write (``SFC_SET_UPDATE_HEADER_AUTO``), so a crash loses at most the block being written;
  ``close()`` (also at interpreter exit) finishes the file.

sounddevice is imported lazily: PortAudio scans host APIs when it is imported, so a JACK server must
be running before the first ``AudioOutput``/``AudioInput``/``list_devices`` call that should see it.
"""
from __future__ import annotations

import atexit
import time
import logging
import queue
import threading
import weakref
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.bridge.events import AudioBlock
from momu_live.models.timebase import DEFAULT_TIMEBASE

log = logging.getLogger(__name__)
SFC_SET_UPDATE_HEADER_AUTO = 0x1061  # libsndfile sf_command: rewrite the header after every write


# --------------------------------------------------------------------------------------------- limiter
def soft_limit(x: np.ndarray, ceiling: float = 0.891, knee: float = 0.708) -> np.ndarray:
    """Memoryless soft limiter with headroom: identity below ``knee`` (-3 dBFS), a tanh curve above it that
    approaches ``ceiling`` (-1 dBFS) and never exceeds it, so generated audio never clips however loud the
    model or the gain makes it.  Per-sample, so chunked == whole; NaN/inf become silence."""
    y = np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    a = np.abs(y)
    over = a > knee
    if not over.any():
        return y
    room = ceiling - knee
    out = y.copy()
    out[over] = np.sign(y[over]) * (knee + room * np.tanh((a[over] - knee) / room))
    return out


# --------------------------------------------------------------------------------------------- ring buffer
class RingBuffer:
    """Fixed-capacity float32 ring of ``(frames, channels)``; thread-safe single producer/consumer.

    ``write`` drops the oldest frames when full (``overflows`` counts frames dropped); ``read(n)``
    returns exactly ``n`` frames, zero-padded on underrun (``underruns`` counts events,
    ``underrun_frames`` the missing frames).
    """

    def __init__(self, capacity: int, channels: int = 1):
        self.capacity, self.channels = int(capacity), int(channels)
        self._buf = np.zeros((self.capacity, self.channels), np.float32)  # (C, ch)
        self._r = self._n = 0
        self._lock = threading.Lock()
        self.overflows = self.underruns = self.underrun_frames = 0
        self.primed = False  # becomes True at the first write: no underruns are counted before audio starts

    def __len__(self) -> int:
        return self._n

    def write(self, x: np.ndarray) -> int:
        x = np.asarray(x, np.float32)
        if x.ndim == 1:
            x = x[:, None]  # (N, 1)
        if x.shape[1] != self.channels:
            x = np.repeat(x[:, :1], self.channels, axis=1) if x.shape[1] == 1 else x[:, : self.channels]
        with self._lock:
            n = x.shape[0]
            if n >= self.capacity:
                self.overflows += self._n + n - self.capacity
                x, n = x[-self.capacity:], self.capacity
                self._r, self._n = 0, 0
            elif self._n + n > self.capacity:
                drop = self._n + n - self.capacity
                self.overflows += drop
                self._r = (self._r + drop) % self.capacity
                self._n -= drop
            w = (self._r + self._n) % self.capacity
            first = min(n, self.capacity - w)
            self._buf[w: w + first] = x[:first]
            self._buf[: n - first] = x[first:]
            self._n += n
            self.primed = True
            return n

    def read(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((n, self.channels), np.float32) if out is None else out  # (n, ch)
        with self._lock:
            k = min(n, self._n)
            first = min(k, self.capacity - self._r)
            out[:first] = self._buf[self._r: self._r + first]
            out[first:k] = self._buf[: k - first]
            out[k:] = 0.0
            self._r = (self._r + k) % self.capacity
            self._n -= k
            if k < n and self.primed:
                self.underruns += 1
                self.underrun_frames += n - k
        return out


class StreamResampler:
    """Streaming resampler (soxr ``ResampleStream``; identity when rates match): chunked == whole."""

    def __init__(self, in_rate: float, out_rate: float, channels: int = 1, quality: str = "HQ"):
        self.in_rate, self.out_rate, self.channels = float(in_rate), float(out_rate), int(channels)
        self._rs = None
        if abs(self.in_rate - self.out_rate) > 1e-6:
            import soxr

            self._rs = soxr.ResampleStream(self.in_rate, self.out_rate, self.channels, dtype="float32", quality=quality)

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if self._rs is None:
            return x
        return self._rs.resample_chunk(x, last=last)


# --------------------------------------------------------------------------------------------- devices
def _sd():
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise MomuError(f"audio I/O unavailable: {exc}; install libportaudio2") from None
    return sd


def list_devices() -> list[dict]:
    """Audio devices: ``index, name, hostapi, inputs, outputs, default_samplerate``."""
    sd = _sd()
    apis = sd.query_hostapis()
    return [{"index": i, "name": d["name"], "hostapi": apis[d["hostapi"]]["name"], "inputs": d["max_input_channels"],
             "outputs": d["max_output_channels"], "default_samplerate": d["default_samplerate"]}
            for i, d in enumerate(sd.query_devices())]


def find_device(name: str | int | None, kind: str = "output") -> int | None:
    """Device index whose name contains ``name`` (case-insensitive) and has ``kind`` channels.

    ``None``/``""``/``"default"``: the host's default (``None``); an int or digit string: that index.
    """
    if name is None or str(name).strip() in ("", "default"):
        return None
    devs = list_devices()
    key = "inputs" if kind == "input" else "outputs"
    if isinstance(name, int) or str(name).isdigit():
        i = int(name)
        if 0 <= i < len(devs) and devs[i][key] > 0:
            return i
    else:
        for d in devs:
            if str(name).lower() in d["name"].lower() and d[key] > 0:
                return d["index"]
    have = ", ".join(f"{d['index']}: {d['name']} ({d['hostapi']})" for d in devs if d[key] > 0) or "none"
    raise MomuError(f"no audio {kind} device matches {name!r}; {kind} devices: {have} (see `momu devices`)")


# --------------------------------------------------------------------------------------------- output
class AudioOutput:
    """Play float32 audio at ``sample_rate`` on ``device`` through a ring buffer (see module doc)."""

    def __init__(self, device: str | int | None = None, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, channels: int = 1,
                 buffer_s: float = 2.0, blocksize: int = 0, latency: str | float = "high"):
        sd = _sd()
        self.device = find_device(device, "output")
        info = sd.query_devices(self.device, "output")
        self.sample_rate = int(sample_rate)
        self.device_rate = self._pick_rate(sd, info)
        self.channels = int(min(max(1, channels), info["max_output_channels"]))
        self._resample = StreamResampler(self.sample_rate, self.device_rate, 1)
        self.ring = RingBuffer(int(buffer_s * self.device_rate), self.channels)
        self.frames_played = 0
        self.status_flags = 0
        self._lock = threading.Lock()
        try:
            self.stream = sd.OutputStream(device=self.device, samplerate=self.device_rate, channels=self.channels,
                                          dtype="float32", blocksize=blocksize, latency=latency, callback=self._callback)
            self.stream.start()
        except Exception as exc:
            raise MomuError(f"cannot open audio output {info['name']!r} at {self.device_rate} Hz: {exc}") from None

    def _pick_rate(self, sd, info) -> int:
        try:
            sd.check_output_settings(device=self.device, samplerate=self.sample_rate, channels=1, dtype="float32")
            return self.sample_rate
        except Exception:
            return int(info["default_samplerate"])

    def _callback(self, outdata, frames, time_info, status) -> None:
        if status:
            self.status_flags += 1
        self.ring.read(frames, outdata)
        self.frames_played += frames

    def write(self, samples: np.ndarray, sample_rate: int | None = None) -> int:
        """Queue mono (N,) or (N, C) audio at ``sample_rate`` (default: the output's); returns device
        frames queued.  Never blocks; NaN/inf become silence, samples are clipped to [-1, 1]."""
        x = np.asarray(samples, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)  # (N,)
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        sr = int(sample_rate or self.sample_rate)
        with self._lock:
            if sr != self._resample.in_rate:  # the stream's rate changed: a fresh resampler
                self._resample = StreamResampler(sr, self.device_rate, 1)
            y = self._resample(x)  # (M,)
            return self.ring.write(y)

    def emit(self, event) -> None:
        """Router sink interface: plays ``AudioBlock``s, ignores other events."""
        if isinstance(event, AudioBlock):
            self.write(event.samples, event.sample_rate)

    @property
    def underruns(self) -> int:
        return self.ring.underruns

    def stats(self) -> dict:
        return {"underruns": self.ring.underruns, "underrun_frames": self.ring.underrun_frames,
                "overflows": self.ring.overflows, "buffered_s": len(self.ring) / self.device_rate,
                "frames_played": self.frames_played, "device_rate": self.device_rate}

    def close(self, drain: bool = False) -> None:
        """Stop the stream (``drain=True`` first plays what is buffered)."""
        import time

        if drain:
            deadline = time.monotonic() + len(self.ring) / self.device_rate + 0.5
            while len(self.ring) and time.monotonic() < deadline:
                time.sleep(0.01)
        try:
            self.stream.stop()
            self.stream.close()
        except Exception as exc:
            log.debug("closing audio output: %r", exc)


def open_output(device: str | int | None, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, **kw) -> AudioOutput:
    """The live engine's audio output: ``write(samples)``, ``close()``, ``stats()``."""
    return AudioOutput(device, sample_rate, **kw)


# --------------------------------------------------------------------------------------------- input
class AudioInput:
    """Record from ``device`` (name substring) as ``AudioBlock``s at ``sample_rate`` (None: device rate).

    Blocks go into a bounded queue (``queue_blocks``); when the consumer lags the oldest are dropped and
    counted in ``overflows`` (with their time stamps kept honest: ``time`` comes from the sample count).
    """

    def __init__(self, device: str | int | None = None, sample_rate: int | None = DEFAULT_TIMEBASE.sample_rate,
                 channels: int = 1, blocksize: int = 1024, queue_blocks: int = 256, latency: str | float = "high",
                 mono: bool = False):
        sd = _sd()
        self.device = find_device(device, "input")
        info = sd.query_devices(self.device, "input")
        self.name = str(info["name"])
        self.device_rate = int(info["default_samplerate"])
        try:
            if sample_rate:
                sd.check_input_settings(device=self.device, samplerate=sample_rate, channels=1, dtype="float32")
                self.device_rate = int(sample_rate)
        except Exception:
            pass
        self.sample_rate = int(sample_rate or self.device_rate)
        # mono: open up to two channels and average them (a stereo DAW bus), deliver one channel
        self.mono = bool(mono)
        n_open = min(2, int(info["max_input_channels"])) if self.mono else int(min(max(1, channels), info["max_input_channels"]))
        self.channels = 1 if self.mono else n_open
        self._resample = StreamResampler(self.device_rate, self.sample_rate, self.channels)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, queue_blocks))
        self.samples_out = 0
        self.overflows = self.status_flags = 0
        try:
            self.stream = sd.InputStream(device=self.device, samplerate=self.device_rate, channels=n_open,
                                         dtype="float32", blocksize=blocksize, latency=latency, callback=self._callback)
            self.stream.start()
        except Exception as exc:
            raise MomuError(f"cannot open audio input {info['name']!r} at {self.device_rate} Hz: {exc}") from None

    def _callback(self, indata, frames, time_info, status) -> None:
        wall = time.monotonic()
        if status:
            self.status_flags += 1
        x = indata.mean(axis=1) if self.mono else (indata if self.channels > 1 else indata[:, 0])
        y = self._resample(x)
        if len(y) == 0:
            return
        block = AudioBlock(np.array(y, np.float32), self.sample_rate, self.samples_out / self.sample_rate)
        self.samples_out += len(y)
        try:
            self._q.put_nowait((block, wall))
        except queue.Full:
            self.overflows += 1
            try:
                self._q.get_nowait()
                self._q.put_nowait((block, wall))
            except (queue.Empty, queue.Full):
                pass

    def read(self, timeout: float | None = 1.0) -> AudioBlock | None:
        """Next block, or None after ``timeout`` seconds."""
        got = self.read_timed(timeout)
        return None if got is None else got[0]

    def read_timed(self, timeout: float | None = 1.0) -> tuple[AudioBlock, float] | None:
        """Next ``(block, wall)``: ``wall`` is the ``time.monotonic()`` of the device callback that delivered it."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def stats(self) -> dict:
        return {"overflows": self.overflows, "status_flags": self.status_flags, "samples": self.samples_out,
                "device_rate": self.device_rate}

    def close(self) -> None:
        try:
            self.stream.stop()
            self.stream.close()
        except Exception as exc:
            log.debug("closing audio input: %r", exc)


# --------------------------------------------------------------------------------------------- recording
_open_recorders: "weakref.WeakSet[WavRecorder]" = weakref.WeakSet()


@atexit.register
def _close_all_recorders() -> None:
    for r in list(_open_recorders):
        r.close()


class WavRecorder:
    """Incremental WAV writer (float32 by default); each ``write`` reaches the file and its header at once."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int = 1, subtype: str = "FLOAT"):
        import soundfile as sf

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        try:
            self._f = sf.SoundFile(str(self.path), "w", samplerate=self.sample_rate, channels=self.channels,
                                   format="WAV", subtype=subtype)
        except Exception as exc:
            raise MomuError(f"cannot write {self.path}: {exc}") from None
        sf._snd.sf_command(self._f._file, SFC_SET_UPDATE_HEADER_AUTO, sf._ffi.NULL, 1)
        self.frames = 0
        self.errors = 0
        self._lock = threading.RLock()  # re-entrant: a Ctrl-C landing inside write leaves it held by this thread, and atexit close() must still run
        self._closed = False
        _open_recorders.add(self)

    def write(self, samples) -> int:
        """Append samples ((N,) or (N, channels)) or an ``AudioBlock``; returns frames written."""
        if isinstance(samples, AudioBlock):
            if samples.sample_rate != self.sample_rate:
                raise MomuError(f"recording at {self.sample_rate} Hz got a {samples.sample_rate} Hz block")
            samples = samples.samples
        x = np.nan_to_num(np.asarray(samples, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if x.ndim == 1 and self.channels > 1:
            x = np.repeat(x[:, None], self.channels, axis=1)  # (N, C)
        with self._lock:
            if self._closed:
                self.errors += 1
                return 0
            self._f.write(x)
            self._f.flush()  # libsndfile buffers -> OS; the header was rewritten by the write
            self.frames += len(x)
        return len(x)

    def emit(self, event) -> None:
        """Router sink interface: records ``AudioBlock``s."""
        if isinstance(event, AudioBlock):
            self.write(event)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._f.close()
        _open_recorders.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
