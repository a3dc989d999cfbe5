"""Audio I/O and the log-mel features every model and metric of momu-live shares.

The mel matches the HiFi-GAN universal vocoder's training features (Kong et al. 2020,
``meldataset.py``): 22.05 kHz, n_fft 1024, win 1024, hop 256, 80 Slaney mels 0-8000 Hz,
reflect padding of (n_fft - hop) / 2 on each side with ``center=False`` (so N samples give exactly
N // 256 frames), magnitude ``sqrt(re^2 + im^2 + 1e-9)``, natural log with a 1e-5 clamp.

The filterbank is computed here (Slaney mel scale and area normalisation, as
``librosa.filters.mel(htk=False, norm="slaney")``) so this module imports without librosa; the test
suite checks it against librosa to 1e-6.  Loading uses soundfile (WAV/FLAC/OGG/MP3 where libsndfile
has it) and falls back to librosa/audioread, then ffmpeg, for other containers.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE


@dataclass(frozen=True)
class MelConfig:
    """HiFi-GAN universal mel settings (config_v1.json of the universal checkpoint)."""

    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_clamp: float = 1e-5

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (86.1328125 for the defaults)."""
        return self.sample_rate / self.hop_length


DEFAULT_MEL = MelConfig()
LOG_SILENCE = math.log(DEFAULT_MEL.log_clamp)  # log-mel value of digital silence (-11.51)


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = f / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, mel)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, float32 (n_mels, n_fft // 2 + 1)."""
    fftfreqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights.astype(np.float32)


def n_mel_frames(n_samples: int, cfg: MelConfig = DEFAULT_MEL) -> int:
    """Frames ``log_mel`` returns for ``n_samples`` samples: exactly ``n_samples // hop``."""
    return n_samples // cfg.hop_length


def log_mel(wav: torch.Tensor | np.ndarray, cfg: MelConfig = DEFAULT_MEL) -> torch.Tensor:
    """Log-mel spectrogram as a differentiable torch op.

    wav: (T,) or (B, T) float waveform in [-1, 1] at ``cfg.sample_rate``.
    Returns (n_mels, T // hop) or (B, n_mels, T // hop), float32.
    """
    x = torch.as_tensor(wav, dtype=torch.float32)
    squeeze = x.dim() == 1
    if squeeze:
        x = x[None]  # (1, T)
    if x.dim() != 2:
        raise MomuError(f"log_mel expects a (T,) or (B, T) waveform, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise MomuError("audio contains NaN or infinite samples; clean or re-export the file")
    n_frames = x.shape[-1] // cfg.hop_length
    if n_frames < 1:
        raise MomuError(f"audio too short for a mel frame: {x.shape[-1]} samples < hop {cfg.hop_length}")
    pad = (cfg.n_fft - cfg.hop_length) // 2
    # reflect padding needs pad < T; fall back to zero padding for very short clips
    mode = "reflect" if x.shape[-1] > pad else "constant"
    x = torch.nn.functional.pad(x[:, None], (pad, pad), mode=mode)[:, 0]  # (B, T + 2 pad)
    window = torch.hann_window(cfg.win_length, device=x.device, dtype=x.dtype)
    spec = torch.stft(
        x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
        center=False, onesided=True, return_complex=True,
    )  # (B, F, frames)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)  # (B, F, frames)
    fb = torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)).to(x)
    mel = torch.matmul(fb, mag)[..., :n_frames]  # (B, n_mels, frames)
    out = torch.log(torch.clamp(mel, min=cfg.log_clamp))
    return out[0] if squeeze else out


# ------------------------------------------------------------------------------------------------
# streaming log-mel (live input)


@dataclass(frozen=True, eq=False)
class MelStreamState:
    """``mel_stream``'s continuation: samples not yet consumed by a whole frame, and the frames emitted."""

    buf: np.ndarray  # (c,) float32: the next frame's left context (zeros before the stream start) + newer samples
    frames: int = 0  # mel frames emitted so far


@functools.lru_cache(maxsize=4)
def _mel_consts(cfg: MelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    fb = torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax))  # (80, F)
    return fb, torch.hann_window(cfg.win_length, dtype=torch.float32)


def mel_stream_init(cfg: MelConfig = DEFAULT_MEL) -> MelStreamState:
    """A fresh ``mel_stream``: (n_fft - hop) / 2 zeros of left context before the first sample."""
    return MelStreamState(np.zeros((cfg.n_fft - cfg.hop_length) // 2, np.float32))


def mel_stream(samples: np.ndarray, state: MelStreamState, cfg: MelConfig = DEFAULT_MEL
               ) -> tuple[torch.Tensor, MelStreamState]:
    """Next log-mel frames (80, m) of a sample stream; frame ``k`` covers samples [256k - 384, 256k + 640).

    Equals ``log_mel`` of the whole signal on every frame whose window lies inside the signal
    (log_mel reflect-pads its first and last frames; the stream zero-pads before its start and
    waits for the right context instead of padding the end).
    """
    x = np.asarray(samples, np.float32).reshape(-1)
    buf = np.concatenate([state.buf, x]) if len(x) else state.buf  # (c + N,)
    n = (len(buf) - cfg.n_fft) // cfg.hop_length + 1 if len(buf) >= cfg.n_fft else 0
    if n <= 0:
        return torch.zeros(cfg.n_mels, 0), MelStreamState(buf, state.frames)
    fb, window = _mel_consts(cfg)
    seg = torch.from_numpy(buf[: (n - 1) * cfg.hop_length + cfg.n_fft].copy())  # (L,)
    spec = torch.stft(seg, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
                      center=False, onesided=True, return_complex=True)  # (F, n)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)  # (F, n)
    mel = torch.log(torch.clamp(fb @ mag, min=cfg.log_clamp))  # (80, n)
    return mel, MelStreamState(buf[n * cfg.hop_length:].copy(), state.frames + n)


def load_audio(path: str | Path, sample_rate: int | None = DEFAULT_MEL.sample_rate, mono: bool = True) -> tuple[np.ndarray, int]:
    """Load an audio file as float32 in [-1, 1], mixed to mono and resampled (soxr HQ).

    Returns (wav (T,), sample_rate).  ``sample_rate=None`` keeps the file's rate.
    Raises MomuError naming the file when it cannot be read or holds no samples.
    """
    path = Path(path)
    if not path.exists():
        raise MomuError(f"audio file not found: {path}")
    data = sr = None
    try:
        import soundfile as sf

        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
        data = data.T  # (C, T)
    except Exception:
        data = None
    if data is None:
        data, sr = _load_with_ffmpeg(path)
    if data.size == 0:
        raise MomuError(f"audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise MomuError(f"audio file {path} contains NaN/inf samples; re-export it")
    wav = data.mean(axis=0) if mono else data
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def _load_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode any container ffmpeg knows (mp4/mkv/avi soundtracks, m4a, ...) to float32."""
    import json
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        raise MomuError(f"cannot read {path}: soundfile does not know the format and ffmpeg is not installed")
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
         "-of", "json", str(path)], capture_output=True, text=True,
    )
    try:
        st = json.loads(probe.stdout)["streams"][0]
        sr, ch = int(st["sample_rate"]), int(st["channels"])
    except (KeyError, IndexError, ValueError, json.JSONDecodeError):
        raise MomuError(f"cannot read {path}: no audio stream found (is it an audio or video file?)") from None
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        capture_output=True,
    )
    if proc.returncode != 0:
        raise MomuError(f"cannot decode {path}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    data = np.frombuffer(proc.stdout, dtype=np.float32).reshape(-1, ch).T  # (C, T)
    return data, sr


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr 'HQ'), along the last axis."""
    if sr_in == sr_out:
        return wav
    import soxr

    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)
    return soxr.resample(x.T, sr_in, sr_out, quality="HQ").T.astype(np.float32)


def save_wav(path: str | Path, wav: np.ndarray, sample_rate: int, force: bool = True) -> Path:
    """Write float audio as 16-bit PCM WAV (clipped to [-1, 1])."""
    import soundfile as sf

    path = Path(path)
    if path.exists() and not force:
        raise MomuError(f"{path} exists; pass --force to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1, 1), sample_rate, subtype="PCM_16")
    return path
