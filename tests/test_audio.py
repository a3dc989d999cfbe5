"""Audio loading and the HiFi-GAN log-mel: filterbank and full recipe against librosa, frame counts, errors."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from momu_live import MomuError
from momu_live.models.audio import DEFAULT_MEL, LOG_SILENCE, load_audio, log_mel, mel_filterbank, n_mel_frames, resample, save_wav

SR = 22050


def _music(seconds=3.0, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375.5 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    x += 0.05 * rng.normal(size=t.shape)
    return x.astype(np.float32)


def _librosa_reference(wav: np.ndarray, cfg=DEFAULT_MEL) -> np.ndarray:
    """HiFi-GAN meldataset.py recipe written with librosa/numpy in float64."""
    from momu_live.models._librosa import librosa as _librosa

    librosa = _librosa()
    pad = (cfg.n_fft - cfg.hop_length) // 2
    y = np.pad(wav.astype(np.float64), (pad, pad), mode="reflect")
    S = librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window="hann",
                     center=False, dtype=np.complex128)
    mag = np.sqrt(np.abs(S) ** 2 + 1e-9)
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                             htk=False, norm="slaney", dtype=np.float64)
    return np.log(np.maximum(fb @ mag, cfg.log_clamp))


def test_filterbank_matches_librosa():
    from momu_live.models._librosa import librosa as _librosa

    librosa = _librosa()
    for sr, n_fft, n_mels, fmax in [(22050, 1024, 80, 8000.0), (44100, 2048, 128, 22050.0), (16000, 512, 40, 7600.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, 0.0, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax, htk=False, norm="slaney")
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_log_mel_matches_librosa_recipe():
    wav = _music()
    ours = log_mel(wav).numpy()
    ref = _librosa_reference(wav)
    assert ours.shape == ref.shape == (80, len(wav) // 256)
    assert (ref > LOG_SILENCE + 3).mean() > 0.5  # a real spectrum, not clamped silence
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=0)  # float32 torch vs float64 librosa: ~5e-6 measured


@pytest.mark.parametrize("n", [256, 257, 511, 1023, 1024, 22050, 22051, 65535])
def test_frame_counts_for_odd_lengths(n):
    wav = np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32)
    assert log_mel(wav).shape == (80, n // 256) == (80, n_mel_frames(n))


def test_batch_matches_single_and_is_differentiable():
    a, b = _music(1.0, seed=1), _music(1.0, seed=2)
    batch = log_mel(np.stack([a, b]))
    torch.testing.assert_close(batch[0], log_mel(a))
    torch.testing.assert_close(batch[1], log_mel(b))
    x = torch.tensor(a, requires_grad=True)
    log_mel(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_mel_equals_whole_log_mel_on_interior_frames(seed):
    """``mel_stream`` fed random chunks (tiny ones too) == ``log_mel`` of the whole signal on interior frames."""
    from momu_live.models.audio import mel_stream, mel_stream_init

    rng = np.random.default_rng(seed)
    n = int(rng.integers(SR, 3 * SR))
    x = (0.3 * rng.standard_normal(n) + 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)).astype(np.float32)
    st, parts, i = mel_stream_init(), [], 0
    while i < n:
        k = int(rng.integers(1, 4000)) if rng.random() > 0.2 else int(rng.integers(1, 40))
        m, st = mel_stream(x[i:i + k], st)
        parts.append(m)
        i += k
    mel = torch.cat(parts, dim=-1)  # (80, F')
    whole = log_mel(x)  # (80, n // 256)
    # the stream has every frame whose right context (640 samples) has arrived
    assert mel.shape[-1] == (n - 640) // 256 + 1 and mel.shape[-1] <= whole.shape[-1]
    lo, hi = 2, mel.shape[-1]  # frames 0-1 reach before the signal start (log_mel reflect-pads them)
    assert (mel[:, lo:hi] - whole[:, lo:hi]).abs().max().item() < 1e-4
    assert st.frames == mel.shape[-1]


def test_silence_and_bad_waveforms():
    assert torch.allclose(log_mel(np.zeros(SR, np.float32)), torch.tensor(LOG_SILENCE))
    with pytest.raises(MomuError, match="NaN"):
        log_mel(np.array([0.0, np.nan] * 1000, np.float32))
    with pytest.raises(MomuError, match="too short"):
        log_mel(np.zeros(100, np.float32))
    with pytest.raises(MomuError, match=r"\(T,\) or \(B, T\)"):
        log_mel(np.zeros((2, 2, 512), np.float32))


@pytest.mark.parametrize("fmt, sr", [("wav", 22050), ("flac", 44100), ("ogg", 48000)])
def test_load_formats_resample_and_mono(tmp_path, fmt, sr):
    t = np.arange(sr) / sr
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32)
    path = tmp_path / f"a.{fmt}"
    sf.write(path, stereo, sr)
    wav, out_sr = load_audio(path, SR)
    assert out_sr == SR and wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - SR) <= 1
    spec = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spec) * SR / len(wav) - 440) < 2  # pitch kept by the resampler
    assert 0.3 < np.abs(wav).max() < 0.6
    native, nsr = load_audio(path, None)
    assert nsr == sr


def test_load_video_soundtrack_with_ffmpeg(dancer_video):
    wav, sr = load_audio(dancer_video, SR)  # .avi: soundfile cannot, ffmpeg decodes it
    assert sr == SR and 60 < len(wav) / SR < 65 and np.abs(wav).max() > 0.01


def test_load_m4a_via_ffmpeg(tmp_path):
    src = tmp_path / "a.wav"
    save_wav(src, _music(1.0), SR)
    out = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "aac", str(out)], check=True)
    wav, sr = load_audio(out, SR)
    assert sr == SR and abs(len(wav) / SR - 1.0) < 0.1


def test_load_errors(tmp_path):
    with pytest.raises(MomuError, match="not found"):
        load_audio(tmp_path / "none.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF nonsense" * 10)
    with pytest.raises(MomuError, match="junk.wav"):
        load_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(MomuError):
        load_audio(empty)


def test_save_wav_round_trip(tmp_path):
    x = _music(0.5)
    p = save_wav(tmp_path / "x.wav", x, SR)
    y, sr = load_audio(p, None)
    assert sr == SR and np.abs(y - x).max() < 1e-4
    with pytest.raises(MomuError, match="exists"):
        save_wav(p, x, SR, force=False)
    np.testing.assert_allclose(resample(x, SR, SR), x)
