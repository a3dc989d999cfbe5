"""Output continuity: generated audio and poses stay contiguous and moving when windows come late."""
from __future__ import annotations

import numpy as np

from momu_live.bridge.events import AudioBlock, PoseFrame
from momu_live.live.continuity import AudioStitcher, ContinuityConfig, PoseFiller

SR = 8000


def _tone(t0: float, seconds: float, f: float = 220.0) -> AudioBlock:
    n0, n = int(round(t0 * SR)), int(round(seconds * SR))
    t = (n0 + np.arange(n)) / SR
    return AudioBlock((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32), SR, n0 / SR)


def _stream(blocks):
    st = AudioStitcher(SR)
    out = []
    for b in blocks:
        out += st.add(b)
    return st, out


def _check_contiguous(out):
    for a, b in zip(out, out[1:]):
        assert round(b.time * SR) == round(a.time * SR) + len(a.samples), "gap or overlap on the stream clock"


def test_contiguous_blocks_pass_through_untouched():
    blocks = [_tone(0.5 * k, 0.5) for k in range(6)]
    st, out = _stream(blocks)
    assert len(out) == 6 and st.filled_s == 0 and st.trimmed_s == 0
    for a, b in zip(blocks, out):
        assert np.array_equal(a.samples, b.samples) and a.time == b.time


def test_a_gap_is_continued_and_the_late_block_crossfaded_in():
    blocks = [_tone(0.0, 1.0), _tone(1.0, 0.5), _tone(2.3, 0.5)]  # 0.8 s missing (skipped windows)
    st, out = _stream(blocks)
    _check_contiguous(out)
    y = np.concatenate([b.samples for b in out])
    assert len(y) == round(2.8 * SR)
    gap = y[int(1.5 * SR):int(2.3 * SR)]
    assert np.abs(gap).max() > 0.2  # not silence: the tail continues (at -3 dB)
    run = max(len(r) for r in np.split(gap, np.flatnonzero(np.abs(gap) > 1e-3)) if len(r))
    assert run < 0.01 * SR  # no silent stretch over 10 ms anywhere in the fill
    assert np.abs(np.diff(y)).max() < 0.25  # no click at any seam (a 220 Hz tone moves < 0.09 a sample)
    assert abs(st.filled_s - 0.8) < 1e-3 and st.seams >= 2


def test_a_watchdog_fill_then_the_late_block_is_trimmed_not_doubled():
    st = AudioStitcher(SR)
    out = st.add(_tone(0.0, 1.0))
    out.append(st.fill_until(1.4))  # the next window is late: keep going
    out += st.add(_tone(1.0, 0.8))  # it arrives, covering [1.0, 1.8): its first 0.4 s is already played
    _check_contiguous(out)
    assert abs(st.trimmed_s - 0.4) < 1e-3 and st.end == round(1.8 * SR)
    y = np.concatenate([b.samples for b in out])
    assert np.abs(np.diff(y)).max() < 0.25


def test_pose_filler_ping_pongs_without_jumps_and_blends_back():
    rate = 20.0
    f = PoseFiller(ContinuityConfig(tail_s=1.0, pose_blend_s=0.2))
    t = np.arange(40) / rate
    base = np.zeros((18, 3), np.float32)
    sent = []
    for k, tk in enumerate(t):
        j = base + np.float32(np.sin(2 * np.pi * 0.7 * tk))  # a moving body
        sent.append(f.real(PoseFrame(0, k, float(tk), j, (), None, "generated")).joints)
    fill = f.fill(t[-1] + 1.5)  # 1.5 s without generated poses
    assert len(fill) == 30 and all(abs((b[0] - a[0]) - 1 / rate) < 1e-9 for a, b in zip(fill, fill[1:]))
    js = np.stack(sent + [j for _, j in fill])
    step = np.abs(np.diff(js[:, 0, 0]))
    real_step = np.abs(np.diff(np.stack(sent)[:, 0, 0])).max()
    assert step.max() <= real_step + 1e-6  # continuous: no jump at the start or the turns of the ping-pong
    assert np.ptp(js[40:, 0, 0]) > 0.3  # and it keeps moving
    late = f.real(PoseFrame(0, 99, float(t[-1] + 1.0), base, (), None, "generated"))
    assert late is None  # already covered by the continuation
    back = f.real(PoseFrame(0, 100, float(fill[-1][0] + 1 / rate), base + 1, (), None, "generated"))
    assert back is not None and 0 < np.abs(back.joints - (base + 1)).max()  # blended in, not a jump


def test_bench_tap_measures_gaps_and_silence_in_constant_memory():
    from momu_live.commands.bench_live import _GeneratedTap

    tap = _GeneratedTap(warmup_s=0.0)
    tone = _tone(0.0, 1.0).samples
    tap.emit(AudioBlock(tone, SR, 0.0))
    quiet = tone.copy()
    quiet[: int(0.3 * SR)] = 0.0  # 0.3 s of silence at the head of the next block
    tap.emit(AudioBlock(quiet, SR, 1.0))
    tap.emit(AudioBlock(tone, SR, 2.2))  # 0.2 s nobody delivered
    s = tap.summary()
    assert abs(s["longest_audio_gap_ms"] - 200.0) < 1.0 and abs(s["longest_silence_ms"] - 300.0) < 1.0
    assert s["audio_seconds"] == 3.0 and not hasattr(tap, "audio")  # nothing of the samples is kept
