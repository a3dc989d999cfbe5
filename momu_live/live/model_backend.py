"""The generation model as a live back-end: MoMu-Diffusion behind the ``Backend`` protocol of backend.py.

``ModelBackend(mode, pipeline, ...)`` wraps a models/generation.Pipeline (``load_pipeline``) and turns
the engine's analysis windows into the pipeline's explicit-state streaming steps:

- motion2music: the window's new poses are resampled (linear) onto the model's absolute motion grid
  (frame ``n`` at exactly ``n / motion_rate`` s of stream time, ``n`` an integer in the state);
  whole latents (2 frames) go to ``Pipeline.motion2music_step``, the remainder waits for the next
  window.  Audio sample ``s`` of the output stream sits at ``(1024 n0 + s) / 22050`` s, where ``n0``
  is the first grid frame: ``audio_time`` comes from an integer sample counter, so every call's audio
  is contiguous with the previous one (the fast vocoder's algorithmic latency and the ``blend``
  held-back latents only delay when samples are *emitted*, never where they sit).
- music2motion: new input samples (tracked by an absolute sample counter) go through a streaming
  log-mel (models/audio.mel_stream; equal to ``log_mel`` of the whole signal on every interior frame),
  whole latents (8 mel frames) to ``Pipeline.music2motion_step``; generated poses carry exact times
  (model frame ``m`` at ``(s0 + 1024 m) / 22050`` s).
- joint: ``Pipeline.joint_step(k)`` with ``k`` latent frames per hop, counted exactly from integer
  sample positions of the hop ends; audio and poses out, beats tracked on the generated audio.

All continuation state (pipeline stream state, grid counters, buffers, sampler spec, beat tracker)
lives in the ``ModelBackendState`` the engine passes back in: ``step`` never writes continuation state
on ``self``.  The pipeline is used through its public streaming API only: steps with ``vocode=False``
return the mel, and ``Pipeline.vocode_stream`` runs the vocoder timed here (``decode_ms``).
Live control: ``STEPS_ADDR``, ``GUIDANCE_ADDR`` and ``BEAT_ADDR`` (bridge/grammar.py, which validated
the values) in ``window.controls`` change the sampler spec from the next step on.

Beat guidance (models/guidance.py): every window is guided onto the engine's beat grid (``window.bpm``
and the last tracked beat ``window.beat_time``: the input dancer's or music's tempo, or the one forced
with ``/momu/tempo/set/bpm``; Ableton Link follows the same tracker), expressed in the model stream's
time (seconds from its first frame).  No tempo yet: the window is sampled unguided.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from momu_live import MomuError
from momu_live.bridge.grammar import BEAT_ADDR, GUIDANCE_ADDR, LOOKAHEAD_ADDR, STEPS_ADDR
from momu_live.live.beatclock import BeatClockConfig, BeatClockState, beatclock_step, due_beats
from momu_live.live.tempo import AudioOnsetState, audio_onset_step
from momu_live.live.window import BackendInfo, BackendOutput, LiveWindow
from momu_live.models.audio import MelStreamState, mel_stream, mel_stream_init
from momu_live.models.generation import SamplerSpec, StreamState, with_steps
from momu_live.models.guidance import BeatGrid, BeatSpec, grid_from_tempo
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.modes import Mode

TB = DEFAULT_TIMEBASE
BEATCLOCK = BeatClockConfig()  # joint: beats of the generated music
SAMPLES_PER_FRAME = TB.hop_length * TB.motion_per_mel  # 1024 audio samples per model motion frame


def window_grid(w: LiveWindow, stream_t0: float, lead_s: float = 10.0) -> BeatGrid | None:
    """The engine's beat grid around window ``w`` in model-stream time (s since ``stream_t0``), or None when
    the tempo is unknown.  Anchored on the last tracked beat (on the stream start when none was tracked)."""
    if not (w.bpm and math.isfinite(w.bpm) and 20.0 <= w.bpm <= 400.0):
        return None
    period = 60.0 / float(w.bpm)
    anchor = (float(w.beat_time) if w.beat_time is not None else stream_t0) - stream_t0
    lo, hi = (w.t_start - stream_t0) - lead_s, (w.t_end - stream_t0) + lead_s
    first = anchor + period * math.floor((lo - anchor) / period)  # the grid's beat at or before lo
    g = grid_from_tempo(float(w.bpm), hi, max(1, int(w.meter)), offset_s=first)
    return BeatGrid(g.beats, g.beats_per_bar, "live tempo")


# ------------------------------------------------------------------------------------------------
# motion on the model grid


def fill_invalid(poses: np.ndarray, valid: np.ndarray, last: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Hold the last valid pose over invalid frames; returns (poses, usable mask, last valid pose)."""
    out = np.array(poses, np.float32, copy=True)  # (T, J, 3)
    ok = np.asarray(valid, bool) & np.isfinite(out).all(axis=(1, 2))
    usable = np.zeros(len(out), bool)
    for i in range(len(out)):
        if ok[i]:
            last = out[i]
        elif last is not None:
            out[i] = last
        usable[i] = last is not None
    return out, usable, None if last is None else np.array(last, np.float32)


def extrapolate_poses(history: np.ndarray, n: int, period: int, root: int = 0) -> np.ndarray:
    """The next ``n`` poses (n, J, 3) of a motion on a uniform grid, continued periodically: the last
    ``period`` frames (one beat) repeat, relative to the root joint, with the root held where it is, and the
    first repeated frame blended from the last real pose so the guess starts where the dancer is."""
    h = np.asarray(history, np.float32)  # (H, J, 3)
    period = int(min(max(2, period), len(h)))
    cycle = h[-period:] - h[-period:, root:root + 1] * np.array([1, 0, 1], np.float32)  # (P, J, 3) root-relative in x/z
    here = h[-1, root] * np.array([1, 0, 1], np.float32)  # (3,) hold the floor position
    out = cycle[np.arange(n) % period] + here  # (n, J, 3)
    k = min(n, max(1, period // 2))
    w = ((np.arange(k) + 1) / (k + 1)).astype(np.float32)[:, None, None]  # (k, 1, 1) ease from the last pose
    out[:k] = w * out[:k] + (1 - w) * h[-1]
    return out.astype(np.float32)


def interp_poses(times: np.ndarray, poses: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Poses (K, J, 3) at times ``t`` (K,), linear between samples (T, J, 3), held outside them."""
    T = len(times)
    if T == 1:
        return np.repeat(poses[:1], len(t), axis=0)
    i1 = np.clip(np.searchsorted(times, t, side="right"), 1, T - 1)  # (K,)
    i0 = i1 - 1
    dt = np.maximum(times[i1] - times[i0], 1e-9)
    w = np.clip((t - times[i0]) / dt, 0.0, 1.0)[:, None, None].astype(np.float32)
    return (1 - w) * poses[i0] + w * poses[i1]


# ------------------------------------------------------------------------------------------------
# the back-end


@dataclass(frozen=True, eq=False)
class ModelBackendState:
    """``ModelBackend``'s continuation: the pipeline stream, the sampler spec and the exact grid counters.

    ``stream`` None: not started (first window, or restarted after a gap).  Sample/frame counters are
    absolute integers on the 22.05 kHz clock; fields marked with a mode are used by that mode only."""

    spec: SamplerSpec  # the sampler spec (live controls change it)
    lookahead_s: float = 0.0  # motion2music: audio generated this far beyond the newest pose (live control)
    stream: StreamState | None = None  # models/generation.Pipeline stream
    out_samples: int = 0  # audio samples emitted since the stream start
    out_frames: int = 0  # generated motion frames emitted
    fed: int = 0  # model motion frames (motion2music) / mel frames (music2motion) / latents (joint) fed
    # motion2music: the absolute model motion grid
    last_valid: np.ndarray | None = None  # (J, 3) last valid input pose, held over invalid frames
    n0: int = 0  # first grid frame of the stream (audio sample 0 sits at n0 / motion_rate)
    n_next: int = 0  # next grid frame to resample
    pending: np.ndarray | None = None  # (r < 2, J, 3) resampled poses waiting for a whole latent
    history: np.ndarray | None = None  # (H, J, 3) the last grid poses (the lookahead continues them)
    # music2motion / joint: the absolute sample grid
    s0: int = 0  # stream start sample (a multiple of 1024 / of one latent)
    in_next: int = 0  # music2motion: next input sample to take
    mel: MelStreamState | None = None  # music2motion: streaming log-mel
    mel_pending: torch.Tensor | None = None  # (80, r < 8) mel frames waiting for a whole latent
    beats: BeatClockState | None = None  # joint: the beat clock on the generated audio (live/beatclock.py)
    onsets: AudioOnsetState | None = None  # joint: its onset envelope state


class ModelBackend:
    """MoMu-Diffusion as a live back-end (see the module docstring); ``info.passthrough`` is False."""

    def __init__(self, mode: str, pipeline, steps: int = 4, guidance: float = 3.5, seed: int = 0, overlap: int = 8,
                 blend: int = 1, name: str = "MoMu-Diffusion", max_gap_s: float = 1.0, beat: float = 1.0,
                 lookahead_s: float = 0.0):
        try:
            m = Mode.parse(mode)
        except ValueError:
            m = None
        if m is None or not m.generates:
            raise MomuError(f"the generation model has no live mode {mode!r}; use motion2music, music2motion or joint")
        if overlap < 0 or blend < 0:
            raise MomuError("--overlap and --blend must be >= 0")
        self.mode, self.pipe = m, pipeline
        self.spec0 = with_steps(SamplerSpec(beat=BeatSpec().scaled(beat)), steps, guidance)
        self.spec0.sigmas()  # validates steps
        self.seed, self.overlap, self.blend = int(seed), int(overlap), int(blend)
        self.name, self.max_gap_s = name, float(max_gap_s)
        if not (0.0 <= lookahead_s <= 5.0):
            raise MomuError(f"--lookahead {lookahead_s} s: use 0 (off) to 5 s")
        self.lookahead_s = float(lookahead_s)
        self.sr = int(TB.sample_rate)
        self.rate = TB.motion_rate  # Fraction
        if m != Mode.MUSIC2MOTION and pipeline.vocoder is None:
            raise MomuError(f"{m.value} needs a vocoder; load the pipeline with vocoder='fast'")
        self.info = self._info(self.spec0)

    def _info(self, spec: SamplerSpec) -> BackendInfo:
        strength = spec.beat.music_step / BeatSpec().music_step
        label = f"model: {self.name}, {spec.steps} steps, guidance {spec.guidance:g}, beat {strength:g}"
        if self.lookahead_s and self.mode == Mode.MOTION2MUSIC:
            label += f", lookahead {self.lookahead_s:g} s"
        rate = 0.0 if self.mode == Mode.MOTION2MUSIC else float(self.rate)
        return BackendInfo(f"model-{self.mode.value}", self.mode.value, label, False, self.sr, rate, self.spec0.steps)

    # -- state -------------------------------------------------------------------------------
    def init_state(self) -> ModelBackendState:
        return ModelBackendState(spec=self.spec0, lookahead_s=self.lookahead_s)

    def _start(self, state: ModelBackendState, **grid) -> ModelBackendState:
        """A fresh pipeline stream and output counters; ``grid``: the mode's start fields (n0, s0, ...)."""
        return replace(state, stream=self.pipe.init_stream(self.mode.value, self.overlap, self.seed, self.blend),
                       out_samples=0, out_frames=0, fed=0, **grid)

    def _controls(self, window: LiveWindow, state: ModelBackendState) -> ModelBackendState:
        """Apply the live controls (already validated by bridge/grammar.parse_control) to the sampler spec."""
        c = window.controls or {}
        new = with_steps(state.spec, c.get(STEPS_ADDR), c.get(GUIDANCE_ADDR))
        if BEAT_ADDR in c:
            new = replace(new, beat=BeatSpec().scaled(c[BEAT_ADDR]))
        lookahead = float(c.get(LOOKAHEAD_ADDR, state.lookahead_s))
        if lookahead != state.lookahead_s:
            state = replace(state, lookahead_s=lookahead)
        if new == state.spec:
            return state
        self.info = self._info(new)  # display only (the status label); the spec itself lives in the state
        return replace(state, spec=new)

    # -- step --------------------------------------------------------------------------------
    def step(self, window: LiveWindow, state: ModelBackendState) -> tuple[BackendOutput, ModelBackendState]:
        state = self._controls(window, state)
        if self.mode == Mode.MOTION2MUSIC:
            return self._motion2music(window, state)
        if self.mode == Mode.MUSIC2MOTION:
            return self._music2motion(window, state)
        return self._joint(window, state)

    def _grid(self, w: LiveWindow, state: ModelBackendState, stream_t0: float) -> BeatGrid | None:
        """The engine's grid for this window: it sets the DiT's rhythm control (when the DiT has one) and beat
        guidance (when its strength is > 0; the load ladder's "beat guidance off" keeps the rhythm control)."""
        if not state.spec.beat.active and not self.pipe.sampler.has_rhythm:
            return None
        return window_grid(w, stream_t0)

    def _vocode(self, mel: torch.Tensor, state: ModelBackendState, final: bool = False
                ) -> tuple[np.ndarray, ModelBackendState, float]:
        """Mel (80, m) -> the final waveform samples (N,), timed (ms), through ``Pipeline.vocode_stream``."""
        d0 = time.perf_counter()
        if mel.shape[-1] == 0 and not final:
            return np.zeros(0, np.float32), state, 0.0
        wav, stream = self.pipe.vocode_stream(mel, state.stream, final=final)  # (N,)
        y = np.clip(wav.detach().float().cpu().numpy(), -1.0, 1.0).astype(np.float32)  # full scale (device / wav)
        return y, replace(state, stream=stream), (time.perf_counter() - d0) * 1000.0

    def _audio_out(self, n: int, state: ModelBackendState, base_sample: int) -> tuple[float, ModelBackendState]:
        """Time of the next ``n`` emitted samples (s) and the state counting them."""
        t = (base_sample + state.out_samples) / self.sr
        return t, replace(state, out_samples=state.out_samples + n)

    # motion -> music
    def _silence(self, state: ModelBackendState) -> BackendOutput:
        t = (state.n0 * SAMPLES_PER_FRAME + state.out_samples) / self.sr
        return BackendOutput(audio=np.zeros(0, np.float32), audio_time=t)

    def _motion2music(self, w: LiveWindow, state: ModelBackendState) -> tuple[BackendOutput, ModelBackendState]:
        poses, usable, last = fill_invalid(w.poses, w.pose_valid, state.last_valid)
        state = replace(state, last_valid=last)
        times = np.asarray(w.pose_times, np.float64)[usable]
        poses = poses[usable]
        if len(times) == 0:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=w.t_end), state
        rate = self.rate
        n_last = math.floor(float(times[-1]) * rate.numerator / rate.denominator + 1e-9)  # newest grid frame covered
        if state.stream is not None and state.n_next * rate.denominator / rate.numerator < times[0] - self.max_gap_s:
            state = replace(state, stream=None)  # windows were skipped: the input jumped, restart the stream
        if state.stream is None:
            n0 = max(math.ceil(max(float(times[0]), w.hop_start) * rate - 1e-9), 0)
            state = self._start(state, n0=n0, n_next=n0, pending=np.zeros((0,) + poses.shape[1:], np.float32))
        if n_last < state.n_next:
            return self._silence(state), state
        grid = np.arange(state.n_next, n_last + 1, dtype=np.float64) * rate.denominator / rate.numerator  # (K,) n / rate
        new = interp_poses(times, poses, grid)  # (K, J, 3)
        buf = np.concatenate([state.pending, new])  # (r + K, J, 3)
        hist = new if state.history is None else np.concatenate([state.history, new])
        per = TB.motion_per_latent
        use = (len(buf) // per) * per
        state = replace(state, n_next=n_last + 1, pending=buf[use:], history=hist[-int(4 * float(rate)):])
        if use == 0:
            return self._silence(state), state
        grid = self._grid(w, state, state.n0 * rate.denominator / rate.numerator)
        out, stream = self.pipe.motion2music_step(buf[:use], state.stream, state.spec, grid=grid, vocode=False)
        state = replace(state, stream=stream, fed=state.fed + use)
        wav, state, dec_ms = self._vocode(out.mel, state)
        t, state = self._audio_out(len(wav), state, state.n0 * SAMPLES_PER_FRAME)
        if state.lookahead_s > 0:
            ahead, ms = self._lookahead(w, state, grid)
            wav, dec_ms = np.concatenate([wav, ahead]), dec_ms + ms
        return BackendOutput(audio=wav, audio_time=t, decode_ms=dec_ms), state

    def _lookahead(self, w: LiveWindow, state: ModelBackendState, grid) -> tuple[np.ndarray, float]:
        """Audio ``lookahead_s`` beyond the input, generated from the dancer's motion continued one beat period
        at a time (``extrapolate_poses``), from a *copy* of the stream: the state carried on never sees the
        guess, and the next window's real audio replaces the guess wherever it has not been played yet
        (the playout trims what was), so the guess only ever covers the time the model cannot know yet."""
        per = TB.motion_per_latent
        rate = float(self.rate)
        n_ahead = int(math.ceil(state.lookahead_s * rate / per)) * per - len(state.pending)
        if n_ahead <= 0 or state.history is None or len(state.history) < 2:
            return np.zeros(0, np.float32), 0.0
        period = int(round(rate * 60.0 / w.bpm)) if w.bpm and 30.0 <= w.bpm <= 300.0 else int(round(rate))
        guess = extrapolate_poses(state.history, n_ahead, max(2, period))  # (n_ahead, J, 3)
        feed = np.concatenate([state.pending, guess])  # whole latents
        out, stream = self.pipe.motion2music_step(feed, state.stream, state.spec, grid=grid, vocode=False)
        fl, stream = self.pipe.flush(stream, vocode=False)  # the held-back (blend) latents of the guess too
        mel = torch.cat([out.mel, fl.mel], dim=-1)  # (80, m)
        wav, _, ms = self._vocode(mel, replace(state, stream=stream))
        return wav, ms

    def flush(self, state: ModelBackendState) -> tuple[BackendOutput, ModelBackendState]:
        """End of a stream (motion2music): the latents held back for cross-fading and the vocoder's tail.

        After it, the emitted audio covers exactly the fed motion frames (1024 samples per frame).
        """
        if self.mode != Mode.MOTION2MUSIC or state.stream is None:
            return BackendOutput(), state
        out, stream = self.pipe.flush(state.stream, vocode=False)  # out.mel (80, 8 blend)
        wav, state, dec_ms = self._vocode(out.mel, replace(state, stream=stream), final=True)
        t, state = self._audio_out(len(wav), state, state.n0 * SAMPLES_PER_FRAME)
        return BackendOutput(audio=wav, audio_time=t, decode_ms=dec_ms), state

    # music -> motion
    def _music2motion(self, w: LiveWindow, state: ModelBackendState) -> tuple[BackendOutput, ModelBackendState]:
        audio = np.asarray(w.audio, np.float32).reshape(-1)
        sr_in = int(w.sample_rate)
        if sr_in != self.sr and len(audio):
            from momu_live.models.audio import resample

            audio = resample(audio, sr_in, self.sr)
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
        first = int(round(w.t_end * self.sr)) - len(audio)  # absolute sample index of audio[0]
        if state.stream is not None and state.in_next < first - self.max_gap_s * self.sr:
            state = replace(state, stream=None)  # windows were skipped: restart the stream
        if state.stream is None:
            # start on the absolute motion grid (a multiple of 1024 samples) at or after the hop start
            s0 = -(-int(round(w.hop_start * self.sr)) // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
            state = self._start(state, s0=s0, in_next=s0, mel=mel_stream_init(), mel_pending=torch.zeros(80, 0))
        i0 = max(state.in_next - first, 0)
        new = audio[i0:]
        mel, ms = mel_stream(new, state.mel)  # (80, m)
        buf = torch.cat([state.mel_pending, mel], dim=-1)  # (80, r + m)
        per = TB.latent_per_mel
        use = (buf.shape[-1] // per) * per
        state = replace(state, in_next=max(state.in_next, first) + len(new), mel=ms, mel_pending=buf[:, use:])
        if use == 0:
            return BackendOutput(pose_times=np.zeros(0), poses=np.zeros((0, 18, 3), np.float32)), state
        out, stream = self.pipe.music2motion_step(buf[:, :use], state.stream, state.spec,
                                                  grid=self._grid(w, state, state.s0 / self.sr))
        state = replace(state, stream=stream, fed=state.fed + use)
        j = np.asarray(out.joints, np.float32)  # (2k', 18, 3)
        times = self._pose_times(state.s0, state.out_frames, len(j))
        return BackendOutput(pose_times=times, poses=j), replace(state, out_frames=state.out_frames + len(j))

    def _pose_times(self, s0: int, done: int, n: int) -> np.ndarray:
        return (s0 + SAMPLES_PER_FRAME * (done + np.arange(n, dtype=np.int64))) / self.sr  # (n,) exact sample grid

    # joint
    def _joint(self, w: LiveWindow, state: ModelBackendState) -> tuple[BackendOutput, ModelBackendState]:
        spl = TB.samples_per_latent
        end = int(round(w.t_end * self.sr))
        if state.stream is not None and end - (state.s0 + spl * state.fed) > self.max_gap_s * self.sr + spl:
            state = replace(state, stream=None)  # windows were skipped
        if state.stream is None:
            s0 = -(-int(round(w.hop_start * self.sr)) // spl) * spl  # on the absolute latent grid
            state = self._start(state, s0=s0, beats=BeatClockState(), onsets=AudioOnsetState())
        k = (end - state.s0) // spl - state.fed
        if k < 1:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=(state.s0 + state.out_samples) / self.sr), state
        out, stream = self.pipe.joint_step(int(k), state.stream, state.spec, grid=self._grid(w, state, state.s0 / self.sr),
                                           vocode=False)
        state = replace(state, stream=stream, fed=state.fed + int(k))
        wav, state, dec_ms = self._vocode(out.mel, state)
        t, state = self._audio_out(len(wav), state, state.s0)
        j = np.asarray(out.joints, np.float32)  # (2k', 18, 3)
        times = self._pose_times(state.s0, state.out_frames, len(j))
        state = replace(state, out_frames=state.out_frames + len(j))
        beats = []
        if len(wav):  # the beat clock on the generated music: its beats, published ahead like the engine's
            ts, fx, onsets = audio_onset_step(wav, t, self.sr, state.onsets)
            bc = beatclock_step(ts, fx, state.beats, BEATCLOCK) if len(ts) else state.beats
            due, bc = due_beats(bc, BEATCLOCK, t + len(wav) / self.sr)
            beats = [(b.index, b.time, b.bpm, b.downbeat) for b in due]
            state = replace(state, beats=bc, onsets=onsets)
        return BackendOutput(audio=wav, audio_time=t, pose_times=times, poses=j, beats=beats, decode_ms=dec_ms), state


# ------------------------------------------------------------------------------------------------
# loading


@functools.lru_cache(maxsize=2)
def _cached_pipeline(weights_dir: str | None, device: str):
    from momu_live.models.pretrained import load_pipeline

    return load_pipeline(weights_dir, device=device, vocoder="fast", flag="--model")


def load_model_backend(mode: str, weights_dir: str | None = None, device: str = "cpu", steps: int = 4,
                       guidance: float = 3.5, seed: int = 0, overlap: int = 8, blend: int = 1,
                       threads: int | None = None, beat: float = 1.0, lookahead: float = 0.0) -> ModelBackend:
    """The shipped (or ``weights_dir``'s) model as a live back-end; loaded once per (folder, device)."""
    from pathlib import Path

    from momu_live.models.pretrained import WEIGHTS_DIR

    if threads:
        torch.set_num_threads(int(threads))
    wd = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    if weights_dir and not wd.is_dir():
        raise MomuError(f"--model {weights_dir}: no such folder; pass a folder holding vae/dit(.safetensors/.json), "
                        "or --model passthrough for the labelled pass-through")
    fix = ("restore models/weights (git checkout models/weights) or train them (`momu train vae`, `momu train diffusion`, "
           "`momu train vocoder`), or run with --model passthrough")
    try:
        pipe = _cached_pipeline(str(wd.resolve()) if weights_dir else None, device)
    except MomuError as exc:
        raise MomuError(f"cannot load the generation model from {wd}: {exc}; {fix}") from None
    except Exception as exc:  # corrupt files: safetensors/JSON/shape errors
        raise MomuError(f"cannot load the generation model from {wd} ({type(exc).__name__}: {exc}); {fix}") from None
    size = "custom"
    try:
        from momu_live.models.checkpoint import read_checkpoint_json

        dit_p = wd / "dit" if (wd / "dit.json").exists() else WEIGHTS_DIR / "dit"
        size = read_checkpoint_json(dit_p, "dit").get("meta", {}).get("train_config", {}).get("size", size)
    except Exception:
        pass
    return ModelBackend(mode, pipe, steps, guidance, seed, overlap, blend, name=f"MoMu-Diffusion {size}", beat=beat,
                        lookahead_s=lookahead)


__all__ = ["ModelBackend", "ModelBackendState", "load_model_backend", "window_grid", "interp_poses", "fill_invalid",
           "extrapolate_poses"]
