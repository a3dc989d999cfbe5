"""Generation pipelines: motion->music, music->motion and joint, any length, offline or live.

Two layers:

``LatentSampler`` (diffusion only, normalised BiCoR-VAE latents (B, C, L) at 10.77 Hz)
    ``sample(task, length, cond, seed, spec, prefix)``: one pass over any length (the DiT's banded
    attention makes the context length-free).  ``prefix`` (B, C, P) continues a sequence: the first
    P frames are inpainted (models/denoiser.InpaintDenoiser) and come out equal to the prefix.
    ``step(task, cond_chunk, state) -> (latents_chunk, state)``: EDGE-style window stitching for live
    use; each call generates ``overlap + k`` frames whose first ``overlap`` frames are the previous
    window's tail (inpainted), and returns the k new ones.  The state is an explicit ``SamplerState``
    (no globals, never written on ``self``); the noise of window n comes from ``seed`` and n only, so
    the same seed and inputs give the same output whatever the chunking.

``Pipeline`` (VAE + DiT + vocoder; models/pretrained.load_pipeline builds it)
    ``motion2music(joints)``, ``music2motion(wav)``, ``joint(seconds)``: offline, one pass
    (``window=None``) or window-stitched (``window=k``: the same code path as the live step).
    The live API, all state passed in and out as a ``StreamState``::

        st = pipe.init_stream("motion2music", overlap=8, seed=0, blend=1)
        out, st = pipe.motion2music_step(joints_chunk, st, spec)    # StepOutput: latents, mel, wav
        out, st = pipe.music2motion_step(mel_chunk, st, spec)       # StepOutput: latents, joints
        out, st = pipe.joint_step(k, st, spec)                      # StepOutput: latents, mel, wav, joints
        out, st = pipe.flush(st)                                    # end of stream: held-back frames, vocoder tail

    ``vocode=False`` on a step (or ``flush``) leaves the vocoder out: the output carries the mel and the
    caller runs ``pipe.vocode_stream(out.mel, st, final=...)`` itself (e.g. to time it apart).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Callable

import numpy as np
import torch

from momu_live import MomuError
from momu_live.models.denoiser import CFGDenoiser, FlowDenoiser, InpaintDenoiser, JointDenoiser
from momu_live.models.dit import TASK_MOTION, TASK_MUSIC
from momu_live.models.guidance import BeatGrid, BeatGuidedDenoiser, BeatSpec, make_guide
from momu_live.models.sampling import DEFAULT_SCHEDULE, get_sampler
from momu_live.models.schedules import get_sigmas
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.modes import TASKS, Mode  # the pipeline's tasks are the generating engine modes


@dataclass(frozen=True)
class SamplerSpec:
    """How to sample: sampler name, number of steps (the runtime knob), schedule, CFG weight, Tc, how hard beat
    guidance pushes when a beat grid is given (models/guidance.py; no grid: no guidance), and whether the grid
    also sets the rhythm control."""

    sampler: str = "euler"
    steps: int = 4
    schedule: str | None = None  # None: the sampler's usual schedule (sampling.DEFAULT_SCHEDULE)
    guidance: float = 3.5
    tc: float = 0.5  # cross-guidance switch time (fraction of T), joint only
    beat: BeatSpec = BeatSpec()
    rhythm: bool = True  # a grid also sets the DiT's rhythm control (models/rhythm_control.py) when it has one

    def sigmas(self) -> torch.Tensor:
        if self.steps < 1:
            raise MomuError(f"--steps must be >= 1, got {self.steps}")
        return get_sigmas(self.schedule or DEFAULT_SCHEDULE.get(self.sampler, "flow"), self.steps)


MANY_STEP = SamplerSpec(sampler="ddpm", steps=50)

# Offline defaults per task (``momu generate``, ``momu demo``, ``momu eval generate --suite outside``); the live
# engine keeps the few-step ``SamplerSpec()`` (4 Euler steps: its time budget).  Chosen on the validation dances with
# statistics no loss touches (docs/MODEL_CARD.md, "Sampler"): for dances, 16 ancestral (DDPM-posterior) steps on the
# flow schedule give kinetic FD 43 -> 28, jitter 96 -> 79 m/s^3 (real 67), more travel and more varied dances than 4
# Euler steps (16 Euler steps: FD 26 but jitter 86); for music, more Euler steps lower the mel FD (118 -> 103 at 16)
# but every setting above 4 steps put one more dance-seed off tempo (12 -> 11 of 15) at a slightly lower beat F, so
# music keeps 4 steps; joint too (16 ancestral steps: jitter 99 -> 85 and mel FD 118 -> 90, but the music held a
# requested tempo less well: 0.86-1.03 of it against 0.98-1.03 over 96-150 BPM).
# Beat guidance is off offline (``momu generate --beat-strength 0``; docs/MODEL_CARD.md): the task's grid reaches the
# DiT as its rhythm control only.
OFFLINE_SAMPLER: dict[str, SamplerSpec] = {
    "motion2music": SamplerSpec(sampler="euler", steps=4, beat=BeatSpec().scaled(0.0)),
    "music2motion": SamplerSpec(sampler="ddpm", steps=16, schedule="flow", beat=BeatSpec().scaled(0.0)),
    "joint": SamplerSpec(beat=BeatSpec().scaled(0.0)),
}


def offline_spec(task: str, sampler: str | None = None, steps: int | None = None, schedule: str | None = None,
                 **kw) -> SamplerSpec:
    """The offline sampler of ``task`` (``OFFLINE_SAMPLER``) with any of sampler / steps / schedule / other
    ``SamplerSpec`` fields overridden; naming another sampler without a schedule gives that sampler's usual one.

    With active beat guidance (``beat=``) and no sampler named, an ancestral default becomes Euler on the same schedule
    and steps: the fresh noise of every ancestral step washes the guidance's nudges out (the demo's music -> motion at
    16 steps: feet-on-beat z 1.48 guided vs 0.61 unguided with the ancestral sampler, 3.93 vs 0.58 with Euler)."""
    if task not in OFFLINE_SAMPLER:
        raise MomuError(f"unknown task {task!r}; choose one of {sorted(OFFLINE_SAMPLER)}")
    base = OFFLINE_SAMPLER[task]
    if sampler is not None and sampler != base.sampler:
        base = replace(base, sampler=sampler, schedule=None)
    beat = kw.get("beat", base.beat)
    if sampler is None and beat.active and base.sampler == "ddpm":
        base = replace(base, sampler="euler")  # same (flow) schedule and steps
    over = {k: v for k, v in (("steps", steps), ("schedule", schedule)) if v is not None}
    spec = replace(base, **over, **kw)
    get_sampler(spec.sampler)  # a bad sampler / schedule / step count fails here, naming the choices
    spec.sigmas()
    return spec


def _noise(seed: int, batch: int, channels: int, length: int, device) -> torch.Tensor:
    """Seeded N(0, I) noise laid out (B, L, C) so frame i's noise does not depend on the length."""
    g = torch.Generator().manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
    return torch.randn(batch, length, channels, generator=g).transpose(1, 2).contiguous().to(device)  # (B, C, L)


def window_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * int(index)) & 0x7FFFFFFF


@dataclass(frozen=True, eq=False)
class SamplerState:
    """``LatentSampler.step``'s continuation: what window n + 1 needs from windows 0..n (EDGE-style stitching).

    ``rows`` is B (1 for a pipeline stream), or 2B for joint (music rows first); C the latent width."""

    overlap: int = 8  # emitted frames re-used as the next window's inpainted prefix
    blend: int = 0  # frames held back and cross-faded with their regeneration
    seed: int = 0
    prev: torch.Tensor | None = None  # (rows, C, <= overlap) last emitted frames: the next prefix
    pending: torch.Tensor | None = None  # (rows, C, <= blend) held-back frames, not emitted yet
    cond_tail: torch.Tensor | None = None  # (B, C, prefix + pending) the condition under prev + pending
    index: int = 0  # windows sampled so far (window n's noise comes from window_seed(seed, n))
    frames: int = 0  # latent frames emitted so far


def cross_fade(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Blend D held-back frames with their regeneration: old weight (D, D-1, ..., 1) / (D + 1), falling to 0.

    old, new: (rows, C, D) -> (rows, C, D)."""
    D = old.shape[-1]
    w = torch.arange(D, 0, -1, device=new.device, dtype=new.dtype) / (D + 1)  # (D,) old-estimate weight
    return w * old + (1 - w) * new


class LatentSampler:
    """Sampling over normalised latents with a DiT (see module docstring)."""

    def __init__(self, dit, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.dit = dit.to(self.device).eval()
        self.C = dit.cfg.latent_dim
        self.inner = FlowDenoiser(self.dit)

    @property
    def has_rhythm(self) -> bool:
        """Whether the DiT takes a rhythm control (models/rhythm_control.py)."""
        return bool(getattr(self.dit.cfg, "rhythm_dim", 0))

    def _denoiser(self, task: str, cond: torch.Tensor | None, spec: SamplerSpec, inner: FlowDenoiser):
        if task == "motion2music":
            return CFGDenoiser(inner, TASK_MUSIC, cond, spec.guidance)
        if task == "music2motion":
            return CFGDenoiser(inner, TASK_MOTION, cond, spec.guidance)
        raise MomuError(f"unknown task {task!r}; choose one of {TASKS}")

    @torch.no_grad()
    def sample(self, task: str, length: int, cond: torch.Tensor | None = None, seed: int = 0,
               spec: SamplerSpec = SamplerSpec(), prefix: torch.Tensor | None = None, batch: int = 1,
               callback: Callable | None = None, guide: Callable | None = None,
               rhythm: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, C, length) [joint: (2B, C, length), music rows first].  ``cond`` (B, C, length).

        ``guide``: a beat objective (models/guidance.py, latents -> loss per row) for this window, or None.
        ``rhythm`` (1, R, length): the rhythm control (models/rhythm_control.py); ignored by a DiT without one."""
        if length < 1:
            raise MomuError(f"length must be at least one latent frame, got {length}")
        if task != "joint":
            if cond is None:
                raise MomuError(f"{task} needs the other modality's latents")
            cond = cond.to(self.device, torch.float32)
            batch = cond.shape[0]
            if cond.shape[-1] != length:
                raise MomuError(f"condition has {cond.shape[-1]} latent frames, expected {length}")
        rows = 2 * batch if task == "joint" else batch
        if not spec.beat.active:
            guide = None  # --beat-strength 0: the grid only sets the rhythm control
        inner = self.inner
        if rhythm is not None and self.has_rhythm and spec.rhythm:
            if rhythm.shape[-1] != length:
                raise MomuError(f"rhythm control has {rhythm.shape[-1]} latent frames, expected {length}")
            inner = FlowDenoiser(self.dit, rhythm.to(self.device, torch.float32))
        sigmas = spec.sigmas().to(self.device)
        x = _noise(seed, rows, self.C, length, self.device) * sigmas[0]  # (rows, C, L)
        known = mask = None
        if prefix is not None:
            P = prefix.shape[-1]
            if P > length or prefix.shape[0] != rows:
                raise MomuError(f"prefix {tuple(prefix.shape)} does not fit {rows} x {length} frames")
            known = torch.zeros_like(x)
            known[..., :P] = prefix.to(self.device)
            mask = torch.zeros(1, 1, length, device=self.device)
            mask[..., :P] = 1
        if task == "joint":
            # cross-guidance must see the known frames and the beat-guided estimates of the other modality
            post = None if guide is None else BeatGuidedDenoiser(None, guide, spec.beat).apply
            den = JointDenoiser(inner, spec.guidance, spec.tc, known, mask, post)
        else:
            den = self._denoiser(task, cond, spec, inner)
            if guide is not None:
                den = BeatGuidedDenoiser(den, guide, spec.beat)
            if prefix is not None:
                den = InpaintDenoiser(den, known, mask)  # outermost: guidance never moves the known frames
        gen = torch.Generator(device=self.device).manual_seed(window_seed(seed, 1 << 20))
        return get_sampler(spec.sampler)(den, x, sigmas, generator=gen, callback=callback)

    # ---- live window stitching
    @staticmethod
    def init_state(overlap: int = 8, seed: int = 0, blend: int = 0) -> SamplerState:
        """``overlap``: emitted frames re-used as the inpainted prefix of the next window; ``blend``: frames held
        back each window and cross-faded with their regeneration in the next window (adds ``blend`` latent
        frames of latency, removes the jump at the prefix border)."""
        return SamplerState(overlap=int(overlap), blend=int(blend), seed=int(seed))

    @torch.no_grad()
    def step(self, task: str, cond_chunk: torch.Tensor | None, state: SamplerState, spec: SamplerSpec = SamplerSpec(),
             n_frames: int | None = None, batch: int = 1, guide: Callable | None = None,
             rhythm: Callable | None = None) -> tuple[torch.Tensor, SamplerState]:
        """Next latent frames given the condition's next k frames (joint: ``n_frames`` = k, no condition).

        Window = [prefix (<= overlap emitted frames) | pending (<= blend held-back frames) | k new frames]; the
        prefix is inpainted, the pending frames are cross-faded (weight of the old estimate falling linearly to
        0), and all but the last ``blend`` frames are emitted, so the output lags the input by ``blend`` frames
        (``flush`` returns the held-back ones at the end of a stream).  ``guide``: ``start_s -> objective``
        (models/guidance.make_guide), called with the window's start in seconds from the stream start;
        ``rhythm``: ``(start_s, length) -> (1, R, length)`` rhythm control of the window, or None.
        """
        k = cond_chunk.shape[-1] if cond_chunk is not None else int(n_frames or 0)
        if k < 1:
            raise MomuError("a window step needs at least one new latent frame")
        prev, pend = state.prev, state.pending
        P = 0 if prev is None else prev.shape[-1]
        D = 0 if pend is None else pend.shape[-1]
        cond = None
        if task != "joint":
            cond_chunk = cond_chunk.to(self.device, torch.float32)
            tail = state.cond_tail
            cond = cond_chunk if tail is None else torch.cat([tail, cond_chunk], dim=-1)  # (B, C, P + D + k)
        start_s = float((state.frames - P) / DEFAULT_TIMEBASE.latent_rate)
        objective = None if guide is None else guide(start_s)
        rho = None if rhythm is None else rhythm(start_s, P + D + k)  # (1, R, P + D + k)
        out = self.sample(task, P + D + k, cond, window_seed(state.seed, state.index), spec, prefix=prev, batch=batch,
                          guide=objective, rhythm=rho)  # (rows, C, P + D + k)
        if D:
            out = out.clone()
            out[..., P:P + D] = cross_fade(pend, out[..., P:P + D])
        hold = min(state.blend, D + k)
        body = out[..., : out.shape[-1] - hold]  # everything final so far: prefix + emitted frames
        new = body[..., P:]  # (rows, C, D + k - hold)
        keep = min(state.overlap, body.shape[-1])
        cond_tail = state.cond_tail
        if cond is not None:
            cond_tail = cond[..., cond.shape[-1] - keep - hold:] if keep + hold > 0 else None  # (B, C, keep + hold)
        return new, replace(state,
                            prev=body[..., body.shape[-1] - keep:] if keep > 0 else None,  # (rows, C, keep)
                            pending=out[..., out.shape[-1] - hold:] if hold > 0 else None,  # (rows, C, hold)
                            cond_tail=cond_tail, index=state.index + 1, frames=state.frames + new.shape[-1])

    @staticmethod
    def flush(state: SamplerState) -> tuple[torch.Tensor | None, SamplerState]:
        """The frames still held back for cross-fading (end of a stream): (rows, C, <= blend) or None."""
        pend = state.pending
        if pend is None:
            return None, state
        return pend, replace(state, pending=None, frames=state.frames + pend.shape[-1])

    def windows(self, task: str, cond: torch.Tensor | None, length: int, window: int, overlap: int, seed: int = 0,
                spec: SamplerSpec = SamplerSpec(), batch: int = 1, callback: Callable | None = None,
                blend: int = 0, guide: Callable | None = None, rhythm: Callable | None = None) -> torch.Tensor:
        """Offline window-stitched generation: exactly the live ``step`` loop over chunks of ``window`` frames."""
        state = self.init_state(overlap, seed, blend)
        outs = []
        starts = list(range(0, length, window))
        for n, a in enumerate(starts):
            b = min(a + window, length)
            chunk = cond[..., a:b] if cond is not None else None
            new, state = self.step(task, chunk, state, spec, n_frames=b - a, batch=batch, guide=guide, rhythm=rhythm)
            outs.append(new)
            if callback is not None:
                callback(n, len(starts))
        rest, state = self.flush(state)
        if rest is not None:
            outs.append(rest)
        return torch.cat(outs, dim=-1)


# ------------------------------------------------------------------------------------------------
# full pipelines
@dataclass(frozen=True, eq=False)
class StreamState:
    """A pipeline stream's continuation (``Pipeline.init_stream``): every step takes one and returns the next.

    The VAE, motion codec and vocoder stream states are opaque (models/vae.py, models/motion_codec.py,
    models/vocoder.py); C is the latent width."""

    task: str  # a generating momu_live.modes.Mode value
    sampler: SamplerState  # latent window stitching (rows: 1, joint 2)
    enc: Any = None  # causal encoder of the condition (motion2music: the motion codec's, music2motion: the music VAE's)
    music_dec: Any = None  # causal music decoder (motion2music, joint)
    motion_dec: Any = None  # the motion codec's decoder state: layers + root path and heading (music2motion, joint)
    voc: dict | None = None  # vocoder stream (tasks with music out and a streaming vocoder)


@dataclass(frozen=True, eq=False)
class StepOutput:
    """What a stream step (or ``Pipeline.flush``) emits; k' new latent frames (fewer than fed while ``blend``
    frames are held back).  Fields a task has no output for are None."""

    latents: torch.Tensor  # (rows, C, k') normalised latents (joint: music row, motion row)
    mel: torch.Tensor | None = None  # (80, 8k') log-mel (music out)
    wav: torch.Tensor | None = None  # (N,) newly final samples (music out; None without vocoder or vocode=False)
    joints: np.ndarray | None = None  # (2k', 18, 3) canonical joints at the model rate (motion out)


class Pipeline:
    """VAE + motion codec + DiT + vocoder.  Music in/out as 22.05 kHz float32 mono, motion as canonical joints at
    the model rate.  ``motion``: a motion codec (models/motion_codec.py; default the BiCoR-VAE's own motion half)."""

    def __init__(self, vae, dit, vocoder=None, device: str | torch.device = "cpu", motion=None, rhythm_head=None):
        from momu_live.models.motion_codec import PositionCodec

        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        if motion is None:
            motion = PositionCodec(self.vae)
        else:
            motion.vae.to(self.device).eval()
        self.motion = motion
        self.rhythm_head = None if rhythm_head is None else rhythm_head.to(self.device).eval()  # models/rhythm_head.py
        for what, width in (("VAE", vae.latent_dim), (f"{motion.kind} motion VAE", motion.latent_dim)):
            if width != dit.cfg.latent_dim:
                raise MomuError(f"{what} latent width {width} != DiT latent width {dit.cfg.latent_dim}; "
                                "the diffusion weights were trained on other VAEs")
        self.sampler = LatentSampler(dit, self.device)
        self.vocoder = vocoder
        self.tb = DEFAULT_TIMEBASE

    # ---- encode / decode
    @torch.no_grad()
    def encode_motion(self, joints) -> torch.Tensor:
        """Canonical joints (T, 18, 3) at the model rate -> normalised motion latents (1, C, T // 2)."""
        return self.motion.encode(joints)

    @torch.no_grad()
    def encode_music(self, wav) -> torch.Tensor:
        """22.05 kHz mono waveform -> normalised music latents (1, C, N_mel // 8)."""
        from momu_live.models.audio import log_mel

        w = np.asarray(wav, dtype=np.float32).reshape(-1)
        if w.size < self.tb.samples_per_latent or not np.isfinite(w).all():
            raise MomuError(f"music is empty, too short or not finite ({w.size} samples); need at least "
                            f"{self.tb.samples_per_latent} samples at {self.tb.sample_rate} Hz")
        if float(np.abs(w).max()) < 1e-6:
            raise MomuError("music is silent; pass audio with content")
        mel = log_mel(torch.from_numpy(w)).to(self.device)[None]  # (1, 80, N)
        return self.encode_mel(mel)

    @torch.no_grad()
    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        mu, _ = self.vae.encode_music(mel.to(self.device).float())
        return self.vae.normalize_latent(mu, "music")  # (1, C, L)

    @torch.no_grad()
    def decode_music(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised latents (B, C, L) -> (mel (B, 80, 8L), wav (B, 8L * 256) or None without vocoder)."""
        mel = self.vae.decode_music(self.vae.denormalize_latent(z, "music"))  # (B, 80, 8L)
        wav = self.vocoder(mel) if self.vocoder is not None else None
        return mel, wav

    @torch.no_grad()
    def decode_motion(self, z: torch.Tensor) -> np.ndarray:
        """Normalised latents (1, C, L) -> canonical joints (2L, 18, 3) at the model rate."""
        return self.motion.decode(z)

    def guide(self, task: str, grid: BeatGrid | None):
        """Beat guidance ``start_s -> objective`` for ``task`` onto ``grid`` (None: no guidance)."""
        return None if grid is None else make_guide(task, self.vae, grid, self.tb, motion=self.motion)

    def motion_grid(self, joints, genre: str | None = None, beats_per_bar: int | None = None) -> BeatGrid:
        """The dancer's beat grid of canonical joints (T, 18, 3) at the model rate: tempo and metre from the
        kinematics (``guidance.grid_from_motion``); the phase from the rhythm head when the weights have one
        (models/rhythm_head.py), else the kinematic rule (feet slowest on the beat)."""
        from momu_live.models.guidance import grid_from_motion

        j = np.asarray(joints, np.float32)
        grid = grid_from_motion(j, float(self.tb.motion_rate), genre, beats_per_bar)
        if self.rhythm_head is None:
            return grid
        from momu_live.models.rhythm_head import head_grid, predict

        pred = predict(self.rhythm_head, self.encode_motion(j[: len(j) // 2 * 2]))  # (4, L)
        return head_grid(pred, grid, len(j) / float(self.tb.motion_rate))

    def rhythm(self, grid: BeatGrid | None):
        """The rhythm control of ``grid`` as ``(start_s, length) -> (1, R, length)`` (models/rhythm_control.py), or
        None: no grid, or a DiT without the control."""
        if grid is None or not self.sampler.has_rhythm:
            return None
        from momu_live.models.rhythm_control import rhythm_features

        return lambda start_s, length: torch.from_numpy(rhythm_features(grid, length, start_s, self.tb))[None]

    # ---- offline tasks
    def _latents(self, task, cond, length, seed, spec, window, overlap, callback, blend=0, grid=None):
        guide, rhythm = self.guide(task, grid), self.rhythm(grid)
        if window:
            return self.sampler.windows(task, cond, length, window, overlap, seed, spec, callback=callback, blend=blend,
                                        guide=guide, rhythm=rhythm)
        return self.sampler.sample(task, length, cond, seed, spec, callback=callback,
                                   guide=None if guide is None else guide(0.0),
                                   rhythm=None if rhythm is None else rhythm(0.0, length))

    def motion2music(self, joints, seed: int = 0, spec: SamplerSpec = SamplerSpec(), window: int | None = None,
                     overlap: int = 8, callback: Callable | None = None, blend: int = 0, grid: BeatGrid | None = None) -> dict:
        """Music for a dance; ``grid`` (models/guidance.py, e.g. ``grid_from_motion``): beat guidance onto it."""
        zc = self.encode_motion(joints)
        z = self._latents("motion2music", zc, zc.shape[-1], seed, spec, window, overlap, callback, blend, grid)
        mel, wav = self.decode_music(z)
        return {"latents": z, "cond": zc, "mel": mel[0], "wav": None if wav is None else wav[0], "grid": grid}

    def music2motion(self, wav, seed: int = 0, spec: SamplerSpec = SamplerSpec(), window: int | None = None,
                     overlap: int = 8, callback: Callable | None = None, blend: int = 0, grid: BeatGrid | None = None) -> dict:
        """A dance for music; ``grid`` (e.g. ``grid_from_music``): beat guidance onto it."""
        zc = self.encode_music(wav)
        z = self._latents("music2motion", zc, zc.shape[-1], seed, spec, window, overlap, callback, blend, grid)
        return {"latents": z, "cond": zc, "joints": self.decode_motion(z), "grid": grid}

    def joint(self, seconds: float, seed: int = 0, spec: SamplerSpec = SamplerSpec(), window: int | None = None,
              overlap: int = 8, callback: Callable | None = None, blend: int = 0, grid: BeatGrid | None = None) -> dict:
        """Music and dance from nothing; ``grid`` (e.g. ``grid_from_tempo``): both locked to it."""
        L = self.latent_frames(seconds)
        z = self._latents("joint", None, L, seed, spec, window, overlap, callback, blend, grid)  # (2, C, L)
        mel, wav = self.decode_music(z[:1])
        return {"latents": z, "mel": mel[0], "wav": None if wav is None else wav[0], "joints": self.decode_motion(z[1:]),
                "grid": grid}

    def latent_frames(self, seconds: float) -> int:
        try:
            s = float(seconds)
        except (TypeError, ValueError):
            raise MomuError(f"seconds must be a number, got {seconds!r}") from None
        if not np.isfinite(s) or s <= 0:
            raise MomuError(f"seconds must be positive, got {seconds}")
        L = int(Fraction(s).limit_denominator(10**6) * self.tb.latent_rate)
        if L < 1:
            raise MomuError(f"{s} s is shorter than one latent frame ({float(1 / self.tb.latent_rate):.3f} s)")
        return L

    # ---- live steps (explicit state in/out)
    def init_stream(self, task: str, overlap: int = 8, seed: int = 0, blend: int = 0) -> StreamState:
        """A fresh stream for ``task`` (a generating ``momu_live.modes.Mode``): see ``LatentSampler.init_state``."""
        if task not in TASKS:
            raise MomuError(f"unknown task {task!r}; choose one of {TASKS}")
        task = Mode(task).value
        voc = self.vocoder.init_state(1) if self.vocoder is not None and task != Mode.MUSIC2MOTION else None
        return StreamState(task, LatentSampler.init_state(overlap, seed, blend), voc=voc)

    @torch.no_grad()
    def motion2music_step(self, joints_chunk, state: StreamState, spec: SamplerSpec = SamplerSpec(),
                          grid: BeatGrid | None = None, vocode: bool = True) -> tuple[StepOutput, StreamState]:
        """Next 2k model-rate motion frames (2k, 18, 3) -> latents (1, C, k'), mel (80, 8k'), wav (N,).

        k' = k, less the frames held back for cross-fading; ``vocode=False``: no wav (``vocode_stream``)."""
        _expect(state, Mode.MOTION2MUSIC)
        zc, enc = self.motion.encode_stream(joints_chunk, state.enc)  # (1, C, k)
        z, sampler = self.sampler.step("motion2music", zc, state.sampler, spec, guide=self.guide("motion2music", grid),
                                       rhythm=self.rhythm(grid))
        state = replace(state, sampler=sampler, enc=enc)  # z: (1, C, k')
        mel, wav, state = self._music_stream(z, state, vocode)
        return StepOutput(z, mel=mel, wav=wav), state

    @torch.no_grad()
    def music2motion_step(self, mel_chunk: torch.Tensor, state: StreamState, spec: SamplerSpec = SamplerSpec(),
                          grid: BeatGrid | None = None) -> tuple[StepOutput, StreamState]:
        """Next 8k mel frames (80, 8k) -> latents (1, C, k'), joints (2k', 18, 3) continuing the root trajectory."""
        _expect(state, Mode.MUSIC2MOTION)
        mel = torch.as_tensor(mel_chunk, dtype=torch.float32)
        if mel.dim() != 2 or mel.shape[-1] == 0 or mel.shape[-1] % self.tb.latent_per_mel:
            raise MomuError(f"mel chunk must be (80, 8k), got {tuple(mel.shape)}")
        mu, _, enc = self.vae.encode_music_stream(mel[None].to(self.device), state.enc)  # (1, C, k)
        zc = self.vae.normalize_latent(mu, "music")  # (1, C, k)
        z, sampler = self.sampler.step("music2motion", zc, state.sampler, spec, guide=self.guide("music2motion", grid),
                                       rhythm=self.rhythm(grid))  # (1, C, k')
        joints, state = self._motion_stream(z, replace(state, sampler=sampler, enc=enc))
        return StepOutput(z, joints=joints), state

    @torch.no_grad()
    def joint_step(self, n_latent: int, state: StreamState, spec: SamplerSpec = SamplerSpec(),
                   grid: BeatGrid | None = None, vocode: bool = True) -> tuple[StepOutput, StreamState]:
        """Next ``n_latent`` = k frames of music and motion from nothing: latents (2, C, k') (music row first),
        mel (80, 8k'), wav (N,) (``vocode=False``: None), joints (2k', 18, 3)."""
        _expect(state, Mode.JOINT)
        z, sampler = self.sampler.step("joint", None, state.sampler, spec, n_frames=n_latent,
                                       guide=self.guide("joint", grid), rhythm=self.rhythm(grid))  # (2, C, k')
        mel, wav, state = self._music_stream(z[:1], replace(state, sampler=sampler), vocode)
        joints, state = self._motion_stream(z[1:], state)
        return StepOutput(z, mel=mel, wav=wav, joints=joints), state

    @torch.no_grad()
    def flush(self, state: StreamState, vocode: bool = True) -> tuple[StepOutput, StreamState]:
        """End of a stream: the latents held back for cross-fading (``blend``), decoded like a step's, and the
        vocoder's tail (``vocode_stream(..., final=True)``; ``vocode=False``: the caller runs it on ``out.mel``).

        After it, a motion2music stream's audio covers exactly the fed motion frames (1024 samples per frame)."""
        pend, sampler = LatentSampler.flush(state.sampler)
        state = replace(state, sampler=sampler)
        rows = 2 if state.task == Mode.JOINT else 1
        z = pend if pend is not None else torch.zeros(rows, self.sampler.C, 0, device=self.device)  # (rows, C, p)
        mel = wav = joints = None
        if state.task != Mode.MUSIC2MOTION:
            mel, _, state = self._music_stream(z[:1], state, vocode=False)  # (80, 8p)
            if vocode and self.vocoder is not None:
                wav, state = self.vocode_stream(mel, state, final=True)
        if state.task != Mode.MOTION2MUSIC:
            joints, state = self._motion_stream(z[rows - 1:], state)
        return StepOutput(z, mel=mel, wav=wav, joints=joints), state

    @torch.no_grad()
    def vocode_stream(self, mel: torch.Tensor, state: StreamState, final: bool = False) -> tuple[torch.Tensor, StreamState]:
        """This stream's next mel frames (80, m) -> the waveform samples that became final (N,), float32 on the CPU.

        ``final=True`` ends the stream: the vocoder's algorithmic-latency tail comes out too."""
        if self.vocoder is None or state.voc is None:
            raise MomuError(f"this {state.task} stream has no vocoder; load the pipeline with a streaming vocoder "
                            "(vocoder='fast')")
        if mel.shape[-1] == 0 and not final:
            return torch.zeros(0), state
        wav, voc = self.vocoder.stream(mel[None], state.voc, final=final)  # (1, N)
        return wav[0], replace(state, voc=voc)

    def _music_stream(self, z: torch.Tensor, state: StreamState, vocode: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None, StreamState]:
        """Newly final music latents (1, C, k) -> (mel (80, 8k), wav (N,) or None, state) through the causal decoder."""
        voc = vocode and self.vocoder is not None
        if z.shape[-1] == 0:  # everything held back for cross-fading (first window shorter than ``blend``)
            return z.new_zeros(80, 0), torch.zeros(0) if voc else None, state
        mel, dec = self.vae.decode_music_stream(self.vae.denormalize_latent(z, "music"), state.music_dec)  # (1, 80, 8k)
        state = replace(state, music_dec=dec)
        wav = None
        if voc:
            wav, state = self.vocode_stream(mel[0], state)  # (N,)
        return mel[0], wav, state

    def _motion_stream(self, z: torch.Tensor, state: StreamState) -> tuple[np.ndarray, StreamState]:
        """Newly final motion latents (1, C, k) -> (joints (2k, 18, 3) continuing the root trajectory, state)."""
        joints, dec = self.motion.decode_stream(z, state.motion_dec)
        return joints, replace(state, motion_dec=dec)


def _expect(state: StreamState, task: Mode) -> None:
    if state.task != task:
        raise MomuError(f"a {task.value} step on a {state.task} stream; start one with init_stream({task.value!r})")


def with_steps(spec: SamplerSpec, steps: int | None = None, guidance: float | None = None) -> SamplerSpec:
    kw = {}
    if steps is not None:
        kw["steps"] = int(steps)
    if guidance is not None:
        kw["guidance"] = float(guidance)
    return replace(spec, **kw)
