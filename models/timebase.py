"""Exact frame <-> time bookkeeping between motion frame rates, mel frames and latent frames.

All rates are kept as ``fractions.Fraction`` so that frame indices over minutes or hours never
drift: frame ``k`` of a stream at rate ``r`` starts at exactly ``k / r`` seconds, and conversions
round only once, at the end.

Default rates (see README "Time bases"):
- audio 22050 Hz, mel hop 256 -> mel rate 22050/256 = 86.1328125 Hz
- model motion rate = mel rate / 4 = 21.533203125 fps (motion is resampled to it)
- latent rate = mel rate / 8 = 10.7666015625 Hz (music VAE downsamples mels x8,
  motion VAE downsamples model-rate motion x2: latent frame i of both covers the same time)
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import math


def as_rate(rate: float | int | Fraction | str) -> Fraction:
    """A frame rate as an exact Fraction.

    Floats equal to an NTSC rate (30000/1001 as OpenCV/ffprobe report it) become 30000/1001; a
    literal 29.97 stays 2997/100 (pass "30000/1001" to mean NTSC).
    """
    if isinstance(rate, Fraction):
        r = rate
    elif isinstance(rate, int):
        r = Fraction(rate)
    elif isinstance(rate, str):
        r = Fraction(rate)
    else:
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"frame rate must be positive and finite, got {rate}")
        if abs(rate * 1001 / 1000 - round(rate * 1001 / 1000)) < 1e-6 and abs(rate - round(rate)) > 1e-6:
            r = Fraction(round(rate * 1001 / 1000) * 1000, 1001)  # NTSC rates
        else:
            r = Fraction(rate).limit_denominator(1_000_000)
    if r <= 0:
        raise ValueError(f"frame rate must be positive, got {rate}")
    return r


@dataclass(frozen=True)
class Timebase:
    sample_rate: int = 22050
    hop_length: int = 256
    motion_per_mel: int = 4  # mel frames per model motion frame
    latent_per_mel: int = 8  # mel frames per latent frame

    @property
    def mel_rate(self) -> Fraction:
        return Fraction(self.sample_rate, self.hop_length)

    @property
    def motion_rate(self) -> Fraction:
        return self.mel_rate / self.motion_per_mel

    @property
    def latent_rate(self) -> Fraction:
        return self.mel_rate / self.latent_per_mel

    @property
    def motion_per_latent(self) -> int:
        assert self.latent_per_mel % self.motion_per_mel == 0
        return self.latent_per_mel // self.motion_per_mel

    @property
    def samples_per_latent(self) -> int:
        return self.hop_length * self.latent_per_mel


DEFAULT_TIMEBASE = Timebase()


def frame_time(index: int, rate: float | Fraction) -> Fraction:
    """Exact start time (s) of frame ``index`` at ``rate``."""
    return Fraction(index) / as_rate(rate)


def time_to_frame(seconds: float | Fraction, rate: float | Fraction, rounding: str = "floor") -> int:
    """Index of the frame at ``rate`` that contains (floor) / is nearest to (round) ``seconds``."""
    x = Fraction(seconds) * as_rate(rate)
    if rounding == "floor":
        return math.floor(x)
    if rounding == "ceil":
        return math.ceil(x)
    if rounding == "round":
        return math.floor(x + Fraction(1, 2))
    raise ValueError(rounding)


def convert_frames(n: int, rate_in: float | Fraction, rate_out: float | Fraction, rounding: str = "floor") -> int:
    """Number/index of frames at ``rate_out`` spanning the same time as ``n`` frames at ``rate_in``."""
    return time_to_frame(Fraction(n) / as_rate(rate_in), rate_out, rounding)


def resample_times(n_out: int, rate_out: float | Fraction, rate_in: float | Fraction):
    """Positions (in input-frame units, float64) of ``n_out`` output frames, for interpolation."""
    import numpy as np

    ratio = as_rate(rate_in) / as_rate(rate_out)
    k = np.arange(n_out, dtype=np.int64)
    # exact rational product, then one float division: no accumulated drift
    return (k * ratio.numerator).astype(np.float64) / ratio.denominator
