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
  log-mel (``mel_stream``; equal to models/audio.log_mel of the whole signal on every interior frame),
  whole latents (8 mel frames) to ``Pipeline.music2motion_step``; generated poses carry exact times
  (model frame ``m`` at ``(s0 + 1024 m) / 22050`` s).
- joint: ``Pipeline.joint_step(k)`` with ``k`` latent frames per hop, counted exactly from integer
  sample positions of the hop ends; audio and poses out, beats tracked on the generated audio.

All continuation state (pipeline stream state, grid counters, buffers, sampler spec, beat tracker)
lives in the state the engine passes back in: ``step`` never writes continuation state on ``self``.
Live control: ``/momu/engine/set/steps``, ``/momu/engine/set/guidance`` and ``/momu/engine/set/beat``
in ``window.controls`` change the sampler spec from the next step on.

Beat guidance (models/guidance.py): every window is guided onto the engine's beat grid (``window.bpm``
and the last tracked beat ``window.beat_time``: the input dancer's or music's tempo, or the one forced
with ``/momu/tempo/set/bpm``; Ableton Link follows the same tracker), expressed in the model stream's
time (seconds from its first frame).  No tempo yet: the window is sampled unguided.
"""
from __future__ import annotations

import copy
import functools
import math
import time
import numpy as np
import torch

from momu_live import MomuError
from momu_live.live.window import BackendInfo, BackendOutput, LiveWindow
from momu_live.models.audio import DEFAULT_MEL, MelConfig, mel_filterbank
from momu_live.models.generation import LatentSampler, SamplerSpec, with_steps
from momu_live.models.guidance import BeatGrid, BeatSpec, grid_from_tempo
from momu_live.models.timebase import DEFAULT_TIMEBASE

TB = DEFAULT_TIMEBASE
SAMPLES_PER_FRAME = TB.hop_length * TB.motion_per_mel  # 1024 audio samples per model motion frame
STEPS_KEY = "/momu/engine/set/steps"
GUIDANCE_KEY = "/momu/engine/set/guidance"
BEAT_KEY = "/momu/engine/set/beat"


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
# streaming log-mel


@functools.lru_cache(maxsize=4)
def _mel_consts(cfg: MelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    fb = torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax))  # (80, F)
    return fb, torch.hann_window(cfg.win_length, dtype=torch.float32)


def mel_stream_init(cfg: MelConfig = DEFAULT_MEL) -> dict:
    """State of ``mel_stream``: the left context (zeros before the stream start) and the frame count."""
    return {"buf": np.zeros((cfg.n_fft - cfg.hop_length) // 2, np.float32), "frames": 0}


def mel_stream(samples: np.ndarray, state: dict, cfg: MelConfig = DEFAULT_MEL) -> tuple[torch.Tensor, dict]:
    """Next log-mel frames (80, m) of a sample stream; frame ``k`` covers samples [256k - 384, 256k + 640).

    Equals ``log_mel`` of the whole signal on every frame whose window lies inside the signal
    (log_mel reflect-pads its first and last frames; the stream zero-pads before its start and
    waits for the right context instead of padding the end).
    """
    x = np.asarray(samples, np.float32).reshape(-1)
    buf = np.concatenate([state["buf"], x]) if len(x) else state["buf"]  # (c + N,)
    n = (len(buf) - cfg.n_fft) // cfg.hop_length + 1 if len(buf) >= cfg.n_fft else 0
    st = {"buf": buf, "frames": state["frames"]}
    if n <= 0:
        return torch.zeros(cfg.n_mels, 0), st
    fb, window = _mel_consts(cfg)
    seg = torch.from_numpy(buf[: (n - 1) * cfg.hop_length + cfg.n_fft].copy())  # (L,)
    spec = torch.stft(seg, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
                      center=False, onesided=True, return_complex=True)  # (F, n)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)  # (F, n)
    mel = torch.log(torch.clamp(fb @ mag, min=cfg.log_clamp))  # (80, n)
    st["buf"] = buf[n * cfg.hop_length:].copy()
    st["frames"] = state["frames"] + n
    return mel, st


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


class ModelBackend:
    """MoMu-Diffusion as a live back-end (see the module docstring); ``info.passthrough`` is False."""

    def __init__(self, mode: str, pipeline, steps: int = 4, guidance: float = 3.5, seed: int = 0, overlap: int = 8,
                 blend: int = 1, name: str = "MoMu-Diffusion", max_gap_s: float = 1.0, beat: float = 1.0):
        if mode not in ("motion2music", "music2motion", "joint"):
            raise MomuError(f"the generation model has no live mode {mode!r}; use motion2music, music2motion or joint")
        if overlap < 0 or blend < 0:
            raise MomuError("--overlap and --blend must be >= 0")
        self.mode, self.pipe = mode, pipeline
        self.spec0 = with_steps(SamplerSpec(beat=BeatSpec().scaled(beat)), steps, guidance)
        self.spec0.sigmas()  # validates steps
        self.seed, self.overlap, self.blend = int(seed), int(overlap), int(blend)
        self.name, self.max_gap_s = name, float(max_gap_s)
        self.sr = int(TB.sample_rate)
        self.rate = TB.motion_rate  # Fraction
        if mode != "music2motion" and pipeline.vocoder is None:
            raise MomuError(f"{mode} needs a vocoder; load the pipeline with vocoder='fast'")
        # the same modules without the vocoder: the step returns mels, the vocoder runs timed here (decode_ms)
        self._nv = copy.copy(pipeline)
        self._nv.vocoder = None
        self.info = self._info(self.spec0)

    def _info(self, spec: SamplerSpec) -> BackendInfo:
        strength = spec.beat.music_step / BeatSpec().music_step
        label = f"model: {self.name}, {spec.steps} steps, guidance {spec.guidance:g}, beat {strength:g}"
        rate = 0.0 if self.mode == "motion2music" else float(self.rate)
        return BackendInfo(f"model-{self.mode}", self.mode, label, False, self.sr, rate)

    # -- state -------------------------------------------------------------------------------
    def init_state(self) -> dict:
        return {"spec": self.spec0, "pipe": None, "tracker": None}

    def _start(self, state: dict) -> dict:
        st = dict(state)
        st["pipe"] = self.pipe.init_stream(self.mode, self.overlap, self.seed, self.blend)
        st["out_samples"] = 0  # audio samples emitted since the stream start
        st["out_frames"] = 0  # generated motion frames emitted
        st["fed"] = 0  # model motion frames (motion2music) / mel frames (music2motion) / latents (joint) fed
        return st

    def _controls(self, window: LiveWindow, state: dict) -> dict:
        spec = state["spec"]
        c = window.controls or {}
        steps, guidance = c.get(STEPS_KEY), c.get(GUIDANCE_KEY)
        try:
            steps = int(steps) if steps is not None and 1 <= int(steps) <= 1000 else None
        except (TypeError, ValueError):
            steps = None
        try:
            guidance = float(guidance) if guidance is not None and math.isfinite(float(guidance)) else None
        except (TypeError, ValueError):
            guidance = None
        new = with_steps(spec, steps, guidance)
        try:
            beat = float(c[BEAT_KEY]) if BEAT_KEY in c else None
        except (TypeError, ValueError):
            beat = None
        if beat is not None and math.isfinite(beat) and beat >= 0:
            from dataclasses import replace

            new = replace(new, beat=BeatSpec().scaled(beat))
        if new != spec:
            self.info = self._info(new)  # display only (the status label); the spec itself lives in the state
            return {**state, "spec": new}
        return state

    # -- step --------------------------------------------------------------------------------
    def step(self, window: LiveWindow, state: dict) -> tuple[BackendOutput, dict]:
        state = self._controls(window, state)
        if self.mode == "motion2music":
            return self._motion2music(window, state)
        if self.mode == "music2motion":
            return self._music2motion(window, state)
        return self._joint(window, state)

    @staticmethod
    def _grid(w: LiveWindow, state: dict, stream_t0: float) -> BeatGrid | None:
        b = state["spec"].beat
        if b.iters <= 0 or (b.music_step <= 0 and b.motion_step <= 0):
            return None
        return window_grid(w, stream_t0)

    def _vocode(self, mel: torch.Tensor, state: dict, final: bool = False) -> tuple[np.ndarray, dict, float]:
        """Mel (80, m) -> the final waveform samples (N,), timed (ms)."""
        d0 = time.perf_counter()
        if mel.shape[-1] == 0 and not final:
            return np.zeros(0, np.float32), state, 0.0
        wav, voc = self.pipe.vocoder.stream(mel[None], state["pipe"]["voc"], final=final)  # (1, N)
        st = {**state, "pipe": {**state["pipe"], "voc": voc}}
        y = np.clip(wav[0].detach().float().cpu().numpy(), -1.0, 1.0).astype(np.float32)  # full scale (device / wav)
        return y, st, (time.perf_counter() - d0) * 1000.0

    def _audio_out(self, wav: np.ndarray, state: dict, base_sample: int) -> tuple[float, dict]:
        t = (base_sample + state["out_samples"]) / self.sr
        return t, {**state, "out_samples": state["out_samples"] + len(wav)}

    # motion -> music
    def _motion2music(self, w: LiveWindow, state: dict) -> tuple[BackendOutput, dict]:
        poses, usable, last = fill_invalid(w.poses, w.pose_valid, state.get("last_valid"))
        state = {**state, "last_valid": last}
        times = np.asarray(w.pose_times, np.float64)[usable]
        poses = poses[usable]
        if len(times) == 0:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=w.t_end), state
        rate = self.rate
        n_last = math.floor(float(times[-1]) * rate.numerator / rate.denominator + 1e-9)  # newest grid frame covered
        if state["pipe"] is not None and state["n_next"] * rate.denominator / rate.numerator < times[0] - self.max_gap_s:
            state = {**state, "pipe": None}  # windows were skipped: the input jumped, restart the stream
        if state["pipe"] is None:
            state = self._start(state)
            n0 = max(math.ceil(max(float(times[0]), w.hop_start) * rate - 1e-9), 0)
            state.update(n0=n0, n_next=n0, pending=np.zeros((0,) + poses.shape[1:], np.float32))
        n_next = state["n_next"]
        if n_last < n_next:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=self._audio_out(np.zeros(0), state,
                                 state["n0"] * SAMPLES_PER_FRAME)[0]), state
        grid = np.arange(n_next, n_last + 1, dtype=np.float64) * rate.denominator / rate.numerator  # (K,) exact n / rate
        new = interp_poses(times, poses, grid)  # (K, J, 3)
        buf = np.concatenate([state["pending"], new])
        per = TB.motion_per_latent
        use = (len(buf) // per) * per
        state = {**state, "n_next": n_last + 1, "pending": buf[use:]}
        if use == 0:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=self._audio_out(np.zeros(0), state,
                                 state["n0"] * SAMPLES_PER_FRAME)[0]), state
        grid = self._grid(w, state, state["n0"] * rate.denominator / rate.numerator)
        out, pst = self._nv.motion2music_step(buf[:use], state["pipe"], state["spec"], grid=grid)
        state = {**state, "pipe": pst, "fed": state["fed"] + use}
        wav, state, dec_ms = self._vocode(out["mel"], state)
        t, state = self._audio_out(wav, state, state["n0"] * SAMPLES_PER_FRAME)
        return BackendOutput(audio=wav, audio_time=t, decode_ms=dec_ms), state

    def flush(self, state: dict) -> tuple[BackendOutput, dict]:
        """End of a stream (motion2music): the latents held back for cross-fading and the vocoder's tail.

        After it, the emitted audio covers exactly the fed motion frames (1024 samples per frame).
        """
        if self.mode != "motion2music" or state.get("pipe") is None:
            return BackendOutput(), state
        pend, lat = LatentSampler.flush(state["pipe"]["latent"])
        pst = {**state["pipe"], "latent": lat}
        mel = torch.zeros(80, 0)
        with torch.no_grad():
            if pend is not None and pend.shape[-1]:
                vae = self.pipe.vae
                m, pst["dec"] = vae.decode_music_stream(vae.denormalize_latent(pend, "music"), pst["dec"])  # (1, 80, 8p)
                mel = m[0]
            state = {**state, "pipe": pst}
            wav, state, dec_ms = self._vocode(mel, state, final=True)
        t, state = self._audio_out(wav, state, state["n0"] * SAMPLES_PER_FRAME)
        return BackendOutput(audio=wav, audio_time=t, decode_ms=dec_ms), state

    # music -> motion
    def _music2motion(self, w: LiveWindow, state: dict) -> tuple[BackendOutput, dict]:
        audio = np.asarray(w.audio, np.float32).reshape(-1)
        sr_in = int(w.sample_rate)
        if sr_in != self.sr and len(audio):
            from momu_live.models.audio import resample

            audio = resample(audio, sr_in, self.sr)
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
        first = int(round(w.t_end * self.sr)) - len(audio)  # absolute sample index of audio[0]
        if state["pipe"] is not None and state["in_next"] < first - self.max_gap_s * self.sr:
            state = {**state, "pipe": None}  # windows were skipped: restart the stream
        if state["pipe"] is None:
            state = self._start(state)
            # start on the absolute motion grid (a multiple of 1024 samples) at or after the hop start
            s0 = -(-int(round(w.hop_start * self.sr)) // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
            state.update(s0=s0, in_next=s0, mel=mel_stream_init(), mel_pending=torch.zeros(80, 0))
        i0 = max(state["in_next"] - first, 0)
        new = audio[i0:]
        state = {**state, "in_next": max(state["in_next"], first) + len(new)}
        mel, ms = mel_stream(new, state["mel"])
        buf = torch.cat([state["mel_pending"], mel], dim=-1)  # (80, r + m)
        per = TB.latent_per_mel
        use = (buf.shape[-1] // per) * per
        state = {**state, "mel": ms, "mel_pending": buf[:, use:]}
        if use == 0:
            return BackendOutput(pose_times=np.zeros(0), poses=np.zeros((0, 18, 3), np.float32)), state
        out, pst = self.pipe.music2motion_step(buf[:, :use], state["pipe"], state["spec"],
                                               grid=self._grid(w, state, state["s0"] / self.sr))
        state = {**state, "pipe": pst, "fed": state["fed"] + use}
        j = np.asarray(out["joints"], np.float32)  # (2k', 18, 3)
        times = self._pose_times(state["s0"], state["out_frames"], len(j))
        state = {**state, "out_frames": state["out_frames"] + len(j)}
        return BackendOutput(pose_times=times, poses=j), state

    def _pose_times(self, s0: int, done: int, n: int) -> np.ndarray:
        return (s0 + SAMPLES_PER_FRAME * (done + np.arange(n, dtype=np.int64))) / self.sr  # (n,) exact sample grid

    # joint
    def _joint(self, w: LiveWindow, state: dict) -> tuple[BackendOutput, dict]:
        spl = TB.samples_per_latent
        end = int(round(w.t_end * self.sr))
        if state["pipe"] is not None and end - (state["s0"] + spl * state["fed"]) > self.max_gap_s * self.sr + spl:
            state = {**state, "pipe": None}  # windows were skipped
        if state["pipe"] is None:
            from momu_live.live.tempo import TempoTracker

            state = self._start(state)
            s0 = -(-int(round(w.hop_start * self.sr)) // spl) * spl  # on the absolute latent grid
            state.update(s0=s0, tracker=TempoTracker())
        k = (end - state["s0"]) // spl - state["fed"]
        if k < 1:
            return BackendOutput(audio=np.zeros(0, np.float32), audio_time=(state["s0"] + state["out_samples"]) / self.sr), state
        out, pst = self._nv.joint_step(int(k), state["pipe"], state["spec"], grid=self._grid(w, state, state["s0"] / self.sr))
        state = {**state, "pipe": pst, "fed": state["fed"] + int(k)}
        wav, state, dec_ms = self._vocode(out["mel"], state)
        t, state = self._audio_out(wav, state, state["s0"])
        j = np.asarray(out["joints"], np.float32)
        times = self._pose_times(state["s0"], state["out_frames"], len(j))
        state = {**state, "out_frames": state["out_frames"] + len(j)}
        beats = []
        if len(wav):
            for b in state["tracker"].add_audio(wav, t, self.sr):  # the tracker object lives in the state
                beats.append((b.index, b.time, b.bpm, b.downbeat))
        return BackendOutput(audio=wav, audio_time=t, pose_times=times, poses=j, beats=beats, decode_ms=dec_ms), state


# ------------------------------------------------------------------------------------------------
# loading


@functools.lru_cache(maxsize=2)
def _cached_pipeline(weights_dir: str | None, device: str):
    from momu_live.models.pretrained import load_pipeline

    return load_pipeline(weights_dir, device=device, vocoder="fast")


def load_model_backend(mode: str, weights_dir: str | None = None, device: str = "cpu", steps: int = 4,
                       guidance: float = 3.5, seed: int = 0, overlap: int = 8, blend: int = 1,
                       threads: int | None = None, beat: float = 1.0) -> ModelBackend:
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
    return ModelBackend(mode, pipe, steps, guidance, seed, overlap, blend, name=f"MoMu-Diffusion {size}", beat=beat)


__all__ = ["ModelBackend", "load_model_backend", "window_grid", "mel_stream", "mel_stream_init", "interp_poses", "fill_invalid"]
