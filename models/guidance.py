"""Beat guidance: steer sampling so the output locks to a beat grid (beyond MoMu-Diffusion).

The paper aligns the two modalities only through the BiCoR-VAE latents (rhythmic contrastive loss)
and the conditional DiT.  Trained on 30 dances, that alignment is weak (docs/MODEL_CARD.md).  Beat
guidance adds what a performer asks for first, an explicit grid, at sampling time, with no retraining:

- **Grid** (``BeatGrid``): beat times in seconds + beats per bar.  From the input music's beat
  tracker (music -> motion), from the input dance (``grid_from_motion``: the tempo whose beat / bar
  grid the dance's rhythm signals lock to best, music follows the dancer), or from a tempo
  (``grid_from_tempo``: ``--bpm`` for joint generation, a DAW or Ableton Link clock when live).
- **Objective** (phase locking, the beat-grid coherence of ../shared/data/dwm/README.md made
  differentiable): for a rhythm signal s(t) of the decoded output, z-scored over the window, and the
  grid phase phi(t) (beats), ``c_k = mean_t z(t) exp(i 2 pi phi(t) / k)`` with k = 1 (beat) or the
  beats per bar (bar).  Each term is a hinge ``relu(target^2 - c |c|)``: guidance pushes until the
  output locks as tightly as ``target`` and then stops, so outputs already on the beat are left alone
  and the dance never turns into a metronome.  Motion (``MotionBeatObjective``): ``|c_1|`` of the feet
  speed (target 0.25) and ``|c_bar|`` of the high-passed pelvis height (target 0.6), any phase (the dance
  keeps its own accent); ground-truth DwM dances reach median 0.08 / 0.54 (p75 0.12 / 0.56).  Music
  (``MusicBeatObjective``): ``Re c_1`` (onsets ON the beats, target 0.3) and ``Re c_bar`` (downbeat
  accents, 0.1) of the decoded mel's onset envelope (half-wave-rectified log-mel flux, the quantity
  librosa's beat tracker follows; DwM music: median 0.11 with librosa's envelope).
- **Denoiser wrapper** (``BeatGuidedDenoiser``): x0-guidance: the clean estimate D(x, sigma) takes
  ``iters`` normalised gradient steps of ``step`` (latent standard deviations, RMS over the window)
  up the objective, through the frozen VAE decoder; the network Jacobian is skipped (the
  "forward universal guidance" of Bansal et al. 2023, eq. 5-6, with dz/dx = I), so one step costs a
  decoder forward + backward and no extra DiT pass.  Guidance is applied for flow times
  ``t <= t_max`` (0.6 for conditional generation, every step for joint); the sampler's next network
  pass re-projects the nudged estimate onto the data.

How hard it pushes is ``SamplerSpec.beat`` (``BeatSpec``); it acts only when a grid is passed
(``grid=`` of the Pipeline methods).  ``momu generate``, ``momu demo`` and ``momu live`` pass one whenever
a tempo is known (docs/GENERATION.md, "Beat guidance"); effect and cost: ``momu eval generate --beat``,
``momu bench generate`` (docs/MODEL_CARD.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from momu_live import MomuError
from momu_live.models.schedules import sigma_to_t
from momu_live.models.timebase import DEFAULT_TIMEBASE


# ------------------------------------------------------------------------------------------------
# grids
@dataclass(frozen=True)
class BeatGrid:
    """Beat times (s, strictly increasing, >= 2) and the beats per bar (3 for waltz, else 4)."""

    beats: tuple
    beats_per_bar: int = 4
    source: str = ""

    def __post_init__(self):
        b = np.asarray(self.beats, float)
        if b.ndim != 1 or len(b) < 2 or not np.all(np.isfinite(b)) or np.any(np.diff(b) <= 0):
            raise MomuError("a beat grid needs >= 2 finite, strictly increasing beat times (s)")
        if int(self.beats_per_bar) < 1:
            raise MomuError(f"beats per bar must be >= 1, got {self.beats_per_bar}")

    @property
    def bpm(self) -> float:
        return 60.0 / float(np.median(np.diff(np.asarray(self.beats, float))))

    def phase(self, times: np.ndarray) -> np.ndarray:
        """Beat phase (beats, float) at ``times`` (s); the grid is extended at both ends with the median
        inter-beat interval, so every time has a phase (a live window may run past the last known beat)."""
        b = np.asarray(self.beats, float)
        t = np.asarray(times, float)
        ibi = float(np.median(np.diff(b)))
        out = np.interp(t, b, np.arange(len(b), dtype=float))  # inside the grid: piecewise linear
        lo, hi = t < b[0], t > b[-1]
        out[lo] = (t[lo] - b[0]) / ibi
        out[hi] = len(b) - 1 + (t[hi] - b[-1]) / ibi
        return out

    def to_json(self) -> dict:
        return {"bpm": self.bpm, "beats_per_bar": int(self.beats_per_bar), "n_beats": len(self.beats),
                "source": self.source, "beats": [float(x) for x in self.beats]}


def grid_from_tempo(bpm: float, seconds: float, beats_per_bar: int = 4, offset_s: float = 0.0) -> BeatGrid:
    """A steady grid: beats every 60 / bpm s from ``offset_s`` to ``seconds`` (a DAW / Link / --bpm tempo)."""
    if not (math.isfinite(bpm) and 20.0 <= bpm <= 400.0):
        raise MomuError(f"tempo must be 20-400 BPM, got {bpm}")
    ibi = 60.0 / bpm
    n = max(2, int(math.ceil((seconds - offset_s) / ibi)) + 1)
    return BeatGrid(tuple(offset_s + ibi * np.arange(n)), beats_per_bar, f"tempo {bpm:g} BPM")


def grid_from_music(wav: np.ndarray, sr: int, genre: str | None = None, beats_per_bar: int | None = None) -> BeatGrid:
    """The beat tracker's grid of the input music (models/beats.py; genre tempo prior when known)."""
    from momu_live.models.beats import analyse_music, beat_params_for
    from momu_live.models.metrics import beats_per_bar as bpb_of

    mus = analyse_music(np.asarray(wav, np.float32), sr, beat_params_for(genre))
    if len(mus.beats) < 2:
        raise MomuError("the beat tracker found fewer than 2 beats in the music; give a tempo with --bpm")
    return BeatGrid(tuple(mus.beats), int(beats_per_bar or bpb_of(genre)), "music beat tracker")


# ballroom / club tempo range searched for a dancer's tempo when nothing else is known
MOTION_BPM_RANGE = (70.0, 150.0)


def grid_from_motion(joints: np.ndarray, fps: float, genre: str | None = None, beats_per_bar: int | None = None,
                     bpm_range: tuple[float, float] | None = None, bpm_step: float = 0.25) -> BeatGrid:
    """The dancer's grid: the steady tempo whose grid the dance's rhythm signals lock to best.

    Score of a tempo: Rayleigh ``|c|`` of the feet speed on the beat phase, + ``|c|`` of the pelvis height
    on the bar phase in triple metre (|c| does not depend on the grid's phase, so only the tempo is searched, over
    ``bpm_range``: the genre's standard tempo +-15 % when the genre is known, else 70-150 BPM).  Metre:
    ``beats_per_bar``, else the genre's, else detected: triple when the pelvis rises and falls once per
    three beats clearly (best bar ``|c|`` > ``TRIPLE_LOCK``; 24/24 DwM waltzes, tempo within 3 % of the
    music's on all of them), else 4.  The phase is then set so the feet are slowest on the beat, as in the
    ground-truth dances (steps land on the beat).  A steady tempo suits ballroom and club music; rubato
    dances lock worse.
    """
    from momu_live.models.beats import GENRE_START_BPM
    from momu_live.models.kinematics import feet_speed, pelvis_height
    from momu_live.models.metrics import beats_per_bar as bpb_of

    j = np.asarray(joints, np.float64)
    seconds = len(j) / fps
    if seconds < 4.0:
        raise MomuError(f"need >= 4 s of motion to find the dancer's tempo, got {seconds:.1f} s; give --bpm")
    g = (genre or "").lower()
    if bpm_range is None:
        bpm_range = (GENRE_START_BPM[g] * 0.85, GENRE_START_BPM[g] * 1.15) if g in GENRE_START_BPM else MOTION_BPM_RANGE
    feet = feet_speed(j, fps)
    pel = pelvis_height(j, fps)
    t = np.arange(len(j)) / fps
    zf = (feet - feet.mean()) / (feet.std() + 1e-9)
    zp = (pel - pel.mean()) / (pel.std() + 1e-9)
    bpms = np.arange(bpm_range[0], bpm_range[1] + 1e-9, bpm_step)
    ph = t[None, :] * bpms[:, None] / 60.0  # (n_bpm, T) beats
    c_beat = np.abs((zf[None] * np.exp(2j * np.pi * ph)).mean(1))  # (n_bpm,)
    c_bar3 = np.abs((zp[None] * np.exp(2j * np.pi * ph / 3)).mean(1))  # (n_bpm,)
    if beats_per_bar:
        bpb = int(beats_per_bar)
    elif genre:
        bpb = bpb_of(genre)
    else:
        bpb = 3 if float(c_bar3.max()) > TRIPLE_LOCK else 4
    # the genre lock of the DwM README: the bar (pelvis rise and fall) carries triple metre, the feet the beat
    # otherwise (on the 11 non-waltz DwM dances adding the bar term moves the estimate away from the music tempo)
    best = int(np.argmax(c_beat + (c_bar3 if bpb == 3 else 0.0)))
    bpm = float(bpms[best])
    c = (zf * np.exp(2j * np.pi * t * bpm / 60.0)).mean()
    # feet speed peaks at phase angle(c); put the beat half a beat away from the peak (feet slowest)
    peak = float(np.angle(c) / (2 * np.pi)) % 1.0
    offset = ((peak + 0.5) % 1.0) * 60.0 / bpm
    grid = grid_from_tempo(bpm, seconds, bpb, offset)
    return BeatGrid(grid.beats, bpb, "dancer's tempo")


# pelvis |c| on a 3-beat bar above which a dance is taken as triple metre (DwM waltzes: 0.49-0.59)
TRIPLE_LOCK = 0.3


# ------------------------------------------------------------------------------------------------
# differentiable rhythm signals
def _zscore(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + 1e-9)  # (B, T), as the metric


def phase_lock(signal: torch.Tensor, phase: torch.Tensor, cycle: float = 1.0) -> torch.Tensor:
    """Complex phase locking c = mean_t z(t) exp(i 2 pi phase(t) / cycle) of signal (B, T); phase (T,) beats -> (B,)."""
    z = _zscore(signal)  # (B, T)
    ang = 2 * math.pi * phase / cycle  # (T,)
    return torch.complex((z * torch.cos(ang)).mean(-1), (z * torch.sin(ang)).mean(-1))  # (B,)


def world_joints_torch(feats: torch.Tensor, fps: float) -> torch.Tensor:
    """Features (B, T, 108) -> canonical joints (B, T, 18, 3) with the root trajectory integrated
    (differentiable twin of ``vae.features_to_joints``; the root starts at x = z = 0)."""
    from momu_live.models.vae import POS_SCALE, ROOT_VEL_SCALE, ROOT_Y_REF, SL_ROOT_VEL, features_to_joints_torch

    rel = features_to_joints_torch(feats)  # (B, T, 18, 3), pelvis at the origin
    steps = feats[..., SL_ROOT_VEL] * (ROOT_VEL_SCALE / fps)  # (B, T, 2)
    steps = torch.cat([torch.zeros_like(steps[:, :1]), steps[:, 1:]], dim=1)
    xz = torch.cumsum(steps, dim=1)  # (B, T, 2)
    y = feats[..., 51:52] * POS_SCALE + ROOT_Y_REF  # (B, T, 1)
    root = torch.stack([xz[..., 0], y[..., 0], xz[..., 1]], dim=-1)  # (B, T, 3)
    return rel + root[:, :, None]


def feet_speed_torch(joints: torch.Tensor, fps: float) -> torch.Tensor:
    """Mean feet speed (B, T) in m/s (kinematics.feet_speed in torch; frame 0 copies frame 1)."""
    from momu_live.models.skeleton import FEET

    f = joints[:, :, list(FEET)]  # (B, T, 4, 3)
    s = (f[:, 1:] - f[:, :-1]).norm(dim=-1).mean(-1) * fps  # (B, T-1)
    return torch.cat([s[:, :1], s], dim=1)


def highpass_torch(x: torch.Tensor, size: int) -> torch.Tensor:
    """x (B, T) minus its centred moving average of ``size`` frames (edge-replicated; kinematics.pelvis_height)."""
    size = max(1, min(int(size), x.shape[-1]))
    left, right = size // 2, size - 1 - size // 2
    xp = F.pad(x[:, None], (left, right), mode="replicate")  # (B, 1, T + size - 1)
    return x - F.avg_pool1d(xp, size, stride=1)[:, 0]


def onset_envelope_torch(mel: torch.Tensor) -> torch.Tensor:
    """Onset strength (B, N) of log-mel (B, n_mels, N): mean over bands of the half-wave-rectified
    frame difference (librosa.onset.onset_strength with lag 1, on log amplitude); frame 0 is 0."""
    d = F.relu(mel[..., 1:] - mel[..., :-1]).mean(1)  # (B, N-1)
    return torch.cat([torch.zeros_like(d[:, :1]), d], dim=1)


# ------------------------------------------------------------------------------------------------
# objectives: normalised latents (B, C, L) -> loss (B,) to minimise
def _hinge(c: torch.Tensor, target: float) -> torch.Tensor:
    """relu(target^2 - c |c|): zero (no push) once the locking ``c`` reaches ``target``."""
    return F.relu(target ** 2 - c * c.abs())  # (B,)

class MotionBeatObjective:
    """Feet speed on the beat phase + pelvis height on the bar phase (any phase), decoded through the VAE."""

    default_t_max = 0.6

    def __init__(self, motion, grid: BeatGrid, start_s: float = 0.0, target_beat: float = 0.25, target_bar: float = 0.6,
                 highpass_s: float = 2.0, timebase=DEFAULT_TIMEBASE):
        """``motion``: a motion codec (models/motion_codec.py) or a BiCoR-VAE (its motion half)."""
        from momu_live.models.motion_codec import PositionCodec

        self.motion = motion if hasattr(motion, "joints_torch") else PositionCodec(motion)
        self.grid, self.start_s = grid, float(start_s)
        self.target_beat, self.target_bar, self.highpass_s = float(target_beat), float(target_bar), float(highpass_s)
        self.fps = float(timebase.motion_rate)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        j = self.motion.joints_torch(z)  # (B, T, 18, 3) world joints
        T = j.shape[1]
        ph = torch.as_tensor(self.grid.phase(self.start_s + np.arange(T) / self.fps), dtype=z.dtype, device=z.device)  # (T,)
        c_beat = phase_lock(feet_speed_torch(j, self.fps), ph, 1.0)
        pel = highpass_torch(j[:, :, 0, 1], round(self.highpass_s * self.fps))  # (B, T)
        c_bar = phase_lock(pel, ph, float(self.grid.beats_per_bar))
        return _hinge(c_beat.abs(), self.target_beat) + _hinge(c_bar.abs(), self.target_bar)  # (B,)

    @staticmethod
    def steps(spec: BeatSpec, rows: int) -> torch.Tensor:
        return torch.full((rows,), spec.motion_step)  # (B,)


class MusicBeatObjective:
    """Onsets of the decoded mel on the beats (phase 0) and accented on the bar."""

    default_t_max = 0.6

    def __init__(self, vae, grid: BeatGrid, start_s: float = 0.0, target_beat: float = 0.3, target_bar: float = 0.1,
                 timebase=DEFAULT_TIMEBASE):
        self.vae, self.grid, self.start_s = vae, grid, float(start_s)
        self.target_beat, self.target_bar = float(target_beat), float(target_bar)
        self.rate = float(timebase.mel_rate)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        mel = self.vae.decode_music(self.vae.denormalize_latent(z, "music"))  # (B, 80, 8L)
        env = onset_envelope_torch(mel)  # (B, N)
        ph = torch.as_tensor(self.grid.phase(self.start_s + np.arange(env.shape[-1]) / self.rate), dtype=z.dtype,
                             device=z.device)  # (N,)
        c_beat = phase_lock(env, ph, 1.0)
        c_bar = phase_lock(env, ph, float(self.grid.beats_per_bar))
        return _hinge(c_beat.real, self.target_beat) + _hinge(c_bar.real, self.target_bar)  # (B,)

    @staticmethod
    def steps(spec: BeatSpec, rows: int) -> torch.Tensor:
        return torch.full((rows,), spec.music_step)  # (B,)


class JointBeatObjective:
    """Joint generation: rows [0, B) music, [B, 2B) motion, both on the same grid."""

    default_t_max = 1.0

    def __init__(self, music: MusicBeatObjective, motion: MotionBeatObjective):
        self.music, self.motion = music, motion

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        B = z.shape[0] // 2
        return torch.cat([self.music(z[:B]), self.motion(z[B:])])

    @staticmethod
    def steps(spec: BeatSpec, rows: int) -> torch.Tensor:
        return torch.cat([MusicBeatObjective.steps(spec, rows // 2), MotionBeatObjective.steps(spec, rows // 2)])  # (2B,)


@dataclass(frozen=True)
class BeatSpec:
    """How hard to guide: ``music_step`` / ``motion_step`` (latent standard deviations per gradient step,
    RMS over the window) for music / motion rows, ``iters`` gradient steps per sampler step, applied while
    flow time t <= ``t_max``.  Defaults: the largest steps that leave the Frechet distances of the
    validation dances unchanged (docs/MODEL_CARD.md, "Beat guidance").  0 switches a modality off.
    ``t_max`` None: 0.6 for conditional generation (the second half of the path: earlier estimates are too
    blurry to steer; same lock at half the cost of guiding every step), 1.0 for joint generation (nothing
    else sets the tempo there, so the grid must shape the first estimates too)."""

    music_step: float = 0.08
    motion_step: float = 0.02
    iters: int = 4
    t_max: float | None = None  # None: the objective's ``default_t_max``

    def __post_init__(self):
        if not (self.music_step >= 0 and self.motion_step >= 0 and self.iters >= 0
                and (self.t_max is None or 0 <= self.t_max <= 1)):
            raise MomuError(f"beat guidance needs steps >= 0, iters >= 0 and 0 <= t_max <= 1, got {self}")

    @property
    def active(self) -> bool:
        """Whether guidance moves anything (a step > 0 and iterations)."""
        return self.iters > 0 and (self.music_step > 0 or self.motion_step > 0)

    def scaled(self, factor: float) -> "BeatSpec":
        """Both steps times ``factor`` (the CLI's --beat-strength; a finite number >= 0)."""
        if not (math.isfinite(factor) and factor >= 0):
            raise MomuError(f"--beat-strength must be a finite number >= 0 (0: off), got {factor}")
        return replace(self, music_step=self.music_step * factor, motion_step=self.motion_step * factor)


class BeatGuidedDenoiser:
    """x0-guidance wrapper (module docstring): ``D'(x, sigma)`` = D(x, sigma) moved up the beat objective."""

    def __init__(self, inner, objective, spec: BeatSpec = BeatSpec()):
        self.inner, self.objective, self.spec = inner, objective, spec

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.apply(self.inner(x, sigma), sigma)

    def apply(self, den: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The guided clean estimate (B, C, L) of ``den`` at noise level ``sigma`` (joint: ``JointDenoiser.post``)."""
        t = float(sigma_to_t(sigma[:1].float()))
        t_max = self.spec.t_max if self.spec.t_max is not None else getattr(self.objective, "default_t_max", 1.0)
        if self.spec.iters <= 0 or t > t_max:
            return den
        return guide_latents(den, self.objective, self.objective.steps(self.spec, den.shape[0]), self.spec.iters)


def guide_latents(z: torch.Tensor, objective, steps: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` normalised gradient steps of size ``steps`` (B,) on latents (B, C, L) down ``objective`` (B,)."""
    steps = steps.to(z.device, z.dtype)[:, None, None]  # (B, 1, 1)
    if iters <= 0 or not bool((steps > 0).any()):
        return z
    with torch.enable_grad():
        cur = z.detach().clone()
        for _ in range(iters):
            cur.requires_grad_(True)
            loss = objective(cur).sum()
            (g,) = torch.autograd.grad(loss, cur)
            rms = g.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()  # (B, 1, 1)
            cur = (cur - steps * g / (rms + 1e-12)).detach()
    return cur


def make_guide(task: str, vae, grid: BeatGrid, timebase=DEFAULT_TIMEBASE, motion=None):
    """``start_s -> objective`` for a task's generated rows (models/generation.LatentSampler.step).

    ``vae``: the BiCoR-VAE (music decoder); ``motion``: the motion codec (default: the VAE's motion half)."""
    motion = vae if motion is None else motion
    if task == "motion2music":
        return lambda start_s: MusicBeatObjective(vae, grid, start_s, timebase=timebase)
    if task == "music2motion":
        return lambda start_s: MotionBeatObjective(motion, grid, start_s, timebase=timebase)
    if task == "joint":
        return lambda start_s: JointBeatObjective(MusicBeatObjective(vae, grid, start_s, timebase=timebase),
                                                  MotionBeatObjective(motion, grid, start_s, timebase=timebase))
    raise MomuError(f"unknown task {task!r}")
