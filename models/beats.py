"""Music onsets and beats with librosa, every parameter pinned (librosa imported lazily).

The old dance-to-music repos call librosa with defaults that changed over versions; here every
keyword is spelled out so results do not move with the librosa version (tested with 0.11):

- ``LORIS``: OpenGVLab/LORIS ``beats_scores.py`` (commit 443e4b9) ``beat_detect``:
  ``librosa.onset.onset_detect(y, sr=22050, wait=1, delta=0.2, pre_avg=3, post_avg=3, pre_max=3,
  post_max=3, units='time')`` on the default onset strength (hop 512).
- ``D2M_V1``: D2M-GAN / CDCD evaluation scripts (``beat_detect`` in their ``beats_scores.py``):
  ``onset_detect(x, sr=22050, wait=1, delta=0.2, pre_avg=1, post_avg=1, post_max=1)``; the pre_max
  left to the librosa default ``0.03 * sr // hop_length`` = 1 at 22.05 kHz / hop 512.
- Beats: ``librosa.beat.beat_track`` on the same onset strength (start_bpm 120, tightness 100,
  trim True), as Bailando / AIST++ feature extraction use it; ``beat_params_for(genre)`` swaps in a
  ballroom tempo prior (``GENRE_START_BPM``) as the honest variant when the genre is known.

Onset strength is ``librosa.onset.onset_strength(y, sr, hop_length=512, lag=1, max_size=1,
detrend=False, center=True)`` (mean over a 128-band mel power spectrogram in dB, n_fft 2048), and
``onset_detect(normalize=True)`` rescales it to [0, 1] before peak picking, as all old versions did.
All times are seconds from sample 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from momu_live import MomuError
from momu_live.models._librosa import librosa as _librosa
from momu_live.models.timebase import DEFAULT_TIMEBASE


@dataclass(frozen=True)
class OnsetParams:
    """Pinned ``librosa.onset.onset_detect`` peak-picking parameters (frames of ``hop_length``)."""

    name: str
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    hop_length: int = 512
    wait: int = 1
    delta: float = 0.2
    pre_avg: int = 3
    post_avg: int = 3
    pre_max: int = 3
    post_max: int = 3
    normalize: bool = True
    backtrack: bool = False


LORIS = OnsetParams("loris")
D2M_V1 = OnsetParams("d2m_v1", pre_avg=1, post_avg=1, pre_max=1, post_max=1)
ONSET_PRESETS = {p.name: p for p in (LORIS, D2M_V1)}


@dataclass(frozen=True)
class BeatParams:
    """Pinned ``librosa.beat.beat_track`` parameters."""

    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    hop_length: int = 512
    start_bpm: float = 120.0
    tightness: float = 100.0
    trim: bool = True


DEFAULT_BEATS = BeatParams()

# Tempo priors (``start_bpm`` of beat_track) from the ballroom competition tempo standards (WDSF/DSV,
# bars per minute x beats per bar): slow waltz 28-30 MPM x 3, tango 31-33 x 4, cha-cha 30-32 x 4,
# rumba 25-27 x 4.  With the field's default prior (120 BPM) librosa tracks half of the DwM waltzes
# at 1.5x or 2x the beat; a genre prior fixes the metrical level (it does not force the tempo: the
# prior is librosa's log-normal of one octave std).
GENRE_START_BPM = {"waltz": 87.0, "tango": 128.0, "cha-cha": 124.0, "rumba": 100.0}


def beat_params_for(genre: str | None, use_prior: bool = True) -> BeatParams:
    """``DEFAULT_BEATS`` with ``start_bpm`` from ``GENRE_START_BPM`` when the genre is known and ``use_prior``."""
    from dataclasses import replace

    g = (genre or "").strip().lower()
    if use_prior and g in GENRE_START_BPM:
        return replace(DEFAULT_BEATS, start_bpm=GENRE_START_BPM[g])
    return DEFAULT_BEATS


@dataclass
class MusicRhythm:
    """Onsets/beats of one waveform, in seconds, with the settings that produced them."""

    duration: float
    onsets: dict[str, np.ndarray]  # preset name -> onset times (s)
    beats: np.ndarray  # beat times (s)
    tempo: float  # BPM of librosa's estimate
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"duration": self.duration, "tempo_bpm": self.tempo, "beats": self.beats.tolist(),
                "onsets": {k: v.tolist() for k, v in self.onsets.items()}, "params": self.params}

    @classmethod
    def from_json(cls, d: dict) -> "MusicRhythm":
        return cls(float(d["duration"]), {k: np.asarray(v, float) for k, v in d["onsets"].items()},
                   np.asarray(d["beats"], float), float(d["tempo_bpm"]), d.get("params", {}))


def _prepare(wav: np.ndarray, sr: int, want_sr: int) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        raise MomuError(f"audio must be mono (N,), got shape {x.shape}; load it with models.audio.load_audio")
    if x.size < want_sr // 10:
        raise MomuError(f"audio too short for beat analysis: {x.size} samples")
    if not np.isfinite(x).all():
        raise MomuError("audio contains NaN/inf samples; re-export it")
    if float(np.max(np.abs(x))) < 1e-4:
        raise MomuError("audio is silent (peak < -80 dBFS): no beats can be found; check the file / input gain")
    if sr != want_sr:
        from momu_live.models.audio import resample

        x = resample(x, sr, want_sr)
    return x


def onset_strength(wav: np.ndarray, sr: int, hop_length: int = 512) -> np.ndarray:
    """librosa onset strength envelope with its defaults pinned (see module docstring), (frames,)."""
    librosa = _librosa()
    return librosa.onset.onset_strength(y=wav, sr=sr, hop_length=hop_length, lag=1, max_size=1,
                                        detrend=False, center=True)


def music_onsets(wav: np.ndarray, sr: int, params: OnsetParams | str = LORIS, envelope: np.ndarray | None = None) -> np.ndarray:
    """Onset times (s) with the pinned peak picking of ``params`` (``"loris"`` or ``"d2m_v1"``)."""
    librosa = _librosa()
    p = ONSET_PRESETS[params] if isinstance(params, str) else params
    x = _prepare(wav, sr, p.sample_rate)
    env = onset_strength(x, p.sample_rate, p.hop_length) if envelope is None else envelope
    return librosa.onset.onset_detect(
        onset_envelope=env, sr=p.sample_rate, hop_length=p.hop_length, backtrack=p.backtrack, units="time",
        normalize=p.normalize, wait=p.wait, delta=p.delta, pre_avg=p.pre_avg, post_avg=p.post_avg,
        pre_max=p.pre_max, post_max=p.post_max,
    ).astype(np.float64)


def music_beats(wav: np.ndarray, sr: int, params: BeatParams = DEFAULT_BEATS, envelope: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(tempo BPM, beat times (s)) from ``librosa.beat.beat_track`` with pinned parameters."""
    librosa = _librosa()
    x = _prepare(wav, sr, params.sample_rate)
    env = onset_strength(x, params.sample_rate, params.hop_length) if envelope is None else envelope
    tempo, frames = librosa.beat.beat_track(
        onset_envelope=env, sr=params.sample_rate, hop_length=params.hop_length, start_bpm=params.start_bpm,
        tightness=params.tightness, trim=params.trim, units="frames",
    )
    times = librosa.frames_to_time(frames, sr=params.sample_rate, hop_length=params.hop_length)
    return float(np.atleast_1d(tempo)[0]), np.asarray(times, dtype=np.float64)


def analyse_music(wav: np.ndarray, sr: int, beat_params: BeatParams = DEFAULT_BEATS) -> MusicRhythm:
    """Onsets for every preset and beat_track beats of one waveform (one onset-strength pass)."""
    if LORIS.sample_rate != beat_params.sample_rate or LORIS.hop_length != beat_params.hop_length:
        raise AssertionError("onset and beat presets must share sr/hop")
    x = _prepare(wav, sr, LORIS.sample_rate)
    env = onset_strength(x, LORIS.sample_rate, LORIS.hop_length)
    onsets = {name: music_onsets(x, LORIS.sample_rate, p, envelope=env) for name, p in ONSET_PRESETS.items()}
    tempo, beats = music_beats(x, LORIS.sample_rate, beat_params, envelope=env)
    params = {"onset_presets": {k: asdict(v) for k, v in ONSET_PRESETS.items()}, "beat_track": asdict(beat_params)}
    return MusicRhythm(len(x) / LORIS.sample_rate, onsets, beats, tempo, params)


def click_track(beat_times: np.ndarray, seconds: float, sr: int = DEFAULT_TIMEBASE.sample_rate, freq: float = 1000.0, click_s: float = 0.03) -> np.ndarray:
    """A click track (N,) float32: a decaying ``freq`` Hz burst at every beat time (tests, demos)."""
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float32)
    m = int(click_s * sr)
    t = np.arange(m) / sr
    click = (np.sin(2 * np.pi * freq * t) * np.exp(-t / (click_s / 5))).astype(np.float32)  # (m,)
    for bt in np.asarray(beat_times, float):
        i = int(round(bt * sr))
        if 0 <= i < n:
            k = min(m, n - i)
            out[i:i + k] += 0.8 * click[:k]
    return out


def analyse_music_clips(wav: np.ndarray, sr: int, windows: list[tuple[float, float]],
                        beat_params: BeatParams = DEFAULT_BEATS) -> tuple["MusicRhythm", list["MusicRhythm"]]:
    """Whole-track analysis plus per-clip rhythms for ``windows`` [(start_s, end_s)], times clip-relative.

    One onset-strength pass over the whole track; per clip the envelope slice is peak-picked on its
    own (``normalize=True`` rescales per clip, as LORIS runs ``onset_detect`` on each clip); beats
    come from one ``beat_track`` over the whole track (a stabler grid than per-clip tracking), cut to
    the clip.  Clip-relative times are accurate to half a hop (11.6 ms).
    """
    librosa = _librosa()
    x = _prepare(wav, sr, LORIS.sample_rate)
    sr0, hop = LORIS.sample_rate, LORIS.hop_length
    env = onset_strength(x, sr0, hop)  # (frames,)
    whole_onsets = {name: music_onsets(x, sr0, p, envelope=env) for name, p in ONSET_PRESETS.items()}
    tempo, beats = music_beats(x, sr0, beat_params, envelope=env)
    params = {"onset_presets": {k: asdict(v) for k, v in ONSET_PRESETS.items()}, "beat_track": asdict(beat_params),
              "clip_onsets": "per-clip peak picking of the whole-track envelope", "clip_beats": "whole-track beat_track, cut"}
    whole = MusicRhythm(len(x) / sr0, whole_onsets, beats, tempo, params)
    clips = []
    for start, end in windows:
        k0, k1 = int(round(start * sr0 / hop)), int(round(end * sr0 / hop))
        seg = env[k0:k1]
        off = k0 * hop / sr0 - start
        onsets = {}
        for name, p in ONSET_PRESETS.items():
            if seg.size < 2 or not np.any(seg > seg.min()):
                onsets[name] = np.zeros(0)
                continue
            fr = librosa.onset.onset_detect(
                onset_envelope=seg, sr=sr0, hop_length=hop, backtrack=False, units="frames", normalize=p.normalize,
                wait=p.wait, delta=p.delta, pre_avg=p.pre_avg, post_avg=p.post_avg, pre_max=p.pre_max, post_max=p.post_max)
            t = fr * hop / sr0 + off
            onsets[name] = t[(t >= 0) & (t < end - start)]
        b = beats[(beats >= start) & (beats < end)] - start
        clips.append(MusicRhythm(end - start, onsets, b, tempo, params))
    return whole, clips
