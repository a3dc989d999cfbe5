"""Exact frame <-> time bookkeeping: rates as Fractions, no drift over an hour, aligned grids."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from momu_live.models.audio import n_mel_frames
from momu_live.models.timebase import (
    DEFAULT_TIMEBASE, Timebase, as_rate, convert_frames, frame_time, resample_times, time_to_frame,
)

HOUR = 3600


def test_default_rates():
    tb = DEFAULT_TIMEBASE
    assert tb.mel_rate == Fraction(22050, 256) and float(tb.mel_rate) == 86.1328125
    assert float(tb.motion_rate) == 21.533203125
    assert float(tb.latent_rate) == pytest.approx(10.7666015625)
    assert tb.motion_per_latent == 2 and tb.samples_per_latent == 2048


# NTSC rates as OpenCV/ffprobe report them (30000/1001 as a float); a literal 29.97 stays 2997/100
@pytest.mark.parametrize("rate, exact", [(25.0, Fraction(25)), (30000 / 1001, Fraction(30000, 1001)),
                                         (60000 / 1001, Fraction(60000, 1001)), (24000 / 1001, Fraction(24000, 1001)),
                                         (29.97, Fraction(2997, 100)), (21.533203125, Fraction(11025, 512)),
                                         ("30000/1001", Fraction(30000, 1001)), (60, Fraction(60))])
def test_as_rate_exact(rate, exact):
    assert as_rate(rate) == exact


@pytest.mark.parametrize("bad", [0.0, -25.0, float("nan"), float("inf")])
def test_as_rate_rejects(bad):
    with pytest.raises(ValueError):
        as_rate(bad)


@pytest.mark.parametrize("rate_in", [25.0, 30000 / 1001, 30.0, 60.0, 21.533203125])
def test_no_drift_over_an_hour(rate_in):
    tb = DEFAULT_TIMEBASE
    r = as_rate(rate_in)
    n = int(HOUR * r)
    # every 997th frame over the hour and the last one: the start time is exact, and converting
    # to the mel / model-motion grid agrees with exact rational arithmetic
    for k in list(range(0, n, 997)) + [n - 1, n]:
        t = frame_time(k, rate_in)
        assert t == Fraction(k) / r
        assert time_to_frame(t, rate_in) == k  # round trip, no off-by-one at any frame
        assert convert_frames(k, rate_in, tb.mel_rate) == math.floor(Fraction(k) * tb.mel_rate / r)
        assert convert_frames(k, rate_in, tb.motion_rate) == math.floor(Fraction(k) * tb.motion_rate / r)


def test_resample_positions_exact_over_an_hour():
    tb = DEFAULT_TIMEBASE
    n_out = int(HOUR * tb.motion_rate)
    pos = resample_times(n_out, tb.motion_rate, 25)  # positions in 25 fps frames
    for i in range(0, n_out, 4099):
        assert abs(pos[i] - float(Fraction(i) * 25 / tb.motion_rate)) < 1e-9
    assert pos[-1] < HOUR * 25  # never past the last input frame's time
    assert np.all(np.diff(pos) > 0) and len(pos) == n_out


def test_grids_align_on_samples():
    tb = DEFAULT_TIMEBASE
    # model motion frame k starts at audio sample 1024 k, latent frame i at sample 2048 i, mel frame m at 256 m
    for k in (0, 1, 7, 12345, int(HOUR * tb.motion_rate)):
        assert frame_time(k, tb.motion_rate) * tb.sample_rate == k * tb.hop_length * tb.motion_per_mel
    for i in (0, 3, 99999):
        assert frame_time(i, tb.latent_rate) * tb.sample_rate == i * tb.samples_per_latent
        assert frame_time(i, tb.latent_rate) == frame_time(i * tb.motion_per_latent, tb.motion_rate)
    n = HOUR * tb.sample_rate + 123
    assert n_mel_frames(n) == n // 256 == time_to_frame(Fraction(n, tb.sample_rate), tb.mel_rate)


def test_rounding_modes():
    assert time_to_frame(Fraction(1, 50), 25, "floor") == 0
    assert time_to_frame(Fraction(1, 50), 25, "round") == 1  # exactly half a frame rounds up
    assert time_to_frame(Fraction(1, 100), 25, "ceil") == 1
    with pytest.raises(ValueError):
        time_to_frame(1.0, 25, "nearest")


def test_custom_timebase():
    tb = Timebase(sample_rate=24000, hop_length=240, motion_per_mel=4, latent_per_mel=8)
    assert tb.mel_rate == 100 and tb.motion_rate == 25 and tb.latent_rate == Fraction(25, 2)
