"""Vocoders: log-mel (B, 80, F) -> waveform (B, F * 256) at 22.05 kHz, whole or streamed.

One interface, three implementations:

- ``FastVocoder`` (default for the live loop): a Vocos-style model (Siuzdak 2023, "Vocos: closing the
  gap between time-domain and Fourier-based neural vocoders").  A ConvNeXt backbone (Liu et al. 2022)
  works at the mel frame rate and predicts, per frame, the log-magnitude ``m`` and phase ``p`` of an
  STFT with the mel's hop (256) and n_fft 1024; the waveform is the inverse STFT of
  ``S = exp(m) * (cos p + i sin p)`` (Vocos eq. 1-2).  All convolutions are "mostly causal": kernel 7
  with ``lookahead`` frames of right context, so streaming is exact receptive-field caching with a
  small, stated latency (``FastVocoderConfig.latency_samples``).
- ``HiFiGANVocoder`` (quality path): HiFi-GAN V1 universal (models/hifigan.py), streamed by overlap
  with its exact receptive field (recompute of ``context`` frames on each side).
- ``GriffinLimVocoder``: a labelled fallback (mel pseudo-inverse + Griffin-Lim), whole mode only.

Streaming state is explicit: ``state = vocoder.init_state(batch)``; ``wav, state = vocoder.stream(mel_chunk,
state, final=False)``; the concatenation of all chunks (the last call with ``final=True``) equals
``vocoder(mel)`` within float error and has exactly ``F * 256`` samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FAST_WEIGHTS = WEIGHTS_DIR / "vocoder_fast"
FAMILY_FAST = "vocoder_fast"


# ------------------------------------------------------------------------------------------------
# mel validation shared by every vocoder


def check_mel(mel: torch.Tensor | Any, n_mels: int = 80) -> tuple[torch.Tensor, bool]:
    """(80, F) or (B, 80, F) -> float32 (B, 80, F) and whether the input had no batch axis.

    Raises MomuError on a wrong shape or NaN/inf values (a live loop catches it and skips the block).
    """
    x = torch.as_tensor(mel)
    if not torch.is_floating_point(x):
        x = x.float()
    squeeze = x.dim() == 2
    if squeeze:
        x = x[None]
    if x.dim() != 3 or x.shape[1] != n_mels:
        raise MomuError(f"vocoder expects a log-mel of shape ({n_mels}, F) or (B, {n_mels}, F), got {tuple(torch.as_tensor(mel).shape)}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise MomuError(f"log-mel holds {bad} NaN/inf values; the upstream model diverged or the input is corrupt - "
                        "clean the mel (e.g. torch.nan_to_num) before vocoding")
    return x.float(), squeeze


# ------------------------------------------------------------------------------------------------
# streaming building blocks (state = the left context a layer still needs)


def stream_conv(conv: nn.Conv1d, x: torch.Tensor, cache: torch.Tensor, left: int, right: int, final: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk through a conv padded (left, right) in whole mode, with receptive-field caching.

    x: (B, C, m) new input frames; cache: (B, C, c) earlier inputs not yet fully used (starts as
    ``left`` zeros = the whole-mode left padding).  With ``final`` the right zero padding is appended.
    Returns (y (B, C', n), new cache, buf) where ``buf = cat(cache, x[, zeros])`` and output frame j
    is centred on ``buf[:, :, left + j]`` (what a residual connection adds).
    """
    buf = torch.cat([cache, x], dim=-1)  # (B, C, c + m)
    if final and right:
        buf = F.pad(buf, (0, right))
    k = conv.kernel_size[0]
    n = buf.shape[-1] - (k - 1)
    if n <= 0:
        y = buf.new_zeros(buf.shape[0], conv.out_channels, 0)
        return y, buf, buf
    y = F.conv1d(buf, conv.weight, conv.bias, groups=conv.groups)  # (B, C', n)
    return y, buf[:, :, n:], buf


class ConvNeXtBlock(nn.Module):
    """x + gamma * W2 GELU(W1 LN(dwconv(x)))  (ConvNeXt block as used by Vocos, 1-D)."""

    def __init__(self, dim: int, intermediate: int, kernel: int, lookahead: int, layer_scale: float):
        super().__init__()
        self.left, self.right = kernel - 1 - lookahead, lookahead
        self.dwconv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h.transpose(1, 2))  # (B, T, C)
        h = self.pw2(F.gelu(self.pw1(h)))  # (B, T, C)
        return (self.gamma * h).transpose(1, 2)  # (B, C, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        h = self.dwconv(F.pad(x, (self.left, self.right)))  # (B, C, T)
        return x + self._mlp(h)

    def stream(self, x: torch.Tensor, cache: torch.Tensor, final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        h, cache, buf = stream_conv(self.dwconv, x, cache, self.left, self.right, final)  # (B, C, n)
        n = h.shape[-1]
        return buf[:, :, self.left : self.left + n] + self._mlp(h), cache


@dataclass(frozen=True)
class FastVocoderConfig:
    n_mels: int = 80
    dim: int = 192
    intermediate: int = 576
    layers: int = 8
    kernel: int = 7
    lookahead: int = 1  # right-context frames of every conv (streaming latency)
    n_fft: int = 1024
    hop: int = 256
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate
    layer_scale: float = 0.125
    max_log_mag: float = 4.6  # exp(4.6) ~ 100, Vocos' magnitude clip

    @property
    def lookahead_frames(self) -> int:
        """Mel frames of right context the network needs (embedding conv + one per block)."""
        return self.lookahead * (self.layers + 1)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: output sample n is final once mel frame n // hop + this / hop has arrived.

        = network lookahead frames * hop + the iSTFT overlap ((n_fft - hop) / 2, the window centring).
        """
        return self.lookahead_frames * self.hop + (self.n_fft - self.hop) // 2


SIZES: dict[str, FastVocoderConfig] = {
    "debug": FastVocoderConfig(dim=32, intermediate=64, layers=2),
    "small": FastVocoderConfig(dim=192, intermediate=576, layers=8),
    "base": FastVocoderConfig(dim=384, intermediate=1152, layers=8),
}


class FastVocoder(nn.Module):
    """Vocos-style iSTFT vocoder: mel (B, 80, F) -> wav (B, F * hop)."""

    def __init__(self, cfg: FastVocoderConfig):
        super().__init__()
        self.cfg = cfg
        self.left, self.right = cfg.kernel - 1 - cfg.lookahead, cfg.lookahead
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.intermediate, cfg.kernel, cfg.lookahead, cfg.layer_scale)
                                    for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        # steady-state overlap-add envelope sum_k w^2(n + k hop): a constant for Hann at hop n_fft / 4
        w2 = torch.hann_window(cfg.n_fft).pow(2)
        self.ola_norm = float(w2.reshape(-1, cfg.hop).sum(0).mean())

    # --- per-frame parts -----------------------------------------------------------------------
    def _frames(self, h: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, C, n) -> windowed time frames (B, n_fft, n) (Vocos eq. 1-2 + irfft)."""
        h = self.head(self.final_norm(h.transpose(1, 2)))  # (B, n, n_fft + 2)
        logmag, phase = h.float().chunk(2, dim=-1)  # (B, n, n_fft/2 + 1) each
        mag = torch.exp(logmag.clamp(max=self.cfg.max_log_mag))
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))  # (B, n, bins)
        frames = torch.fft.irfft(spec, n=self.cfg.n_fft, dim=-1)  # (B, n, n_fft)
        return (frames * self.window / self.ola_norm).transpose(1, 2)  # (B, n_fft, n)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, n_fft, n) -> (B, (n - 1) * hop + n_fft) overlap-added signal."""
        n = frames.shape[-1]
        out_len = (n - 1) * self.cfg.hop + self.cfg.n_fft
        y = F.fold(frames, output_size=(1, out_len), kernel_size=(1, self.cfg.n_fft), stride=(1, self.cfg.hop))
        return y[:, 0, 0]  # (B, out_len)

    def backbone(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.embed(F.pad(mel, (self.left, self.right)))  # (B, C, F)
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        for blk in self.blocks:
            h = blk(h)  # (B, C, F)
        return h

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, 80, F) -> wav (B, F * hop).  Frame i's window covers samples [i hop - pad, i hop - pad + n_fft)
        with pad = (n_fft - hop) / 2, the same framing as ``log_mel``."""
        n = mel.shape[-1]
        if n == 0:
            return mel.new_zeros(mel.shape[0], 0)
        y = self._overlap_add(self._frames(self.backbone(mel)))  # (B, (F-1) hop + n_fft)
        pad = (self.cfg.n_fft - self.cfg.hop) // 2
        return y[:, pad : pad + n * self.cfg.hop]

    # --- streaming ------------------------------------------------------------------------------
    def init_state(self, batch: int = 1, device=None, dtype=torch.float32) -> dict:
        cfg = self.cfg
        dev = device if device is not None else self.head.weight.device
        z = lambda c: torch.zeros(batch, c, self.left, device=dev, dtype=dtype)  # noqa: E731
        return {
            "embed": z(cfg.n_mels),
            "blocks": [torch.zeros(batch, cfg.dim, blk.left, device=dev, dtype=dtype) for blk in self.blocks],
            "ola": torch.zeros(batch, cfg.n_fft - cfg.hop, device=dev, dtype=dtype),  # tail of the overlap-add
            "skip": (cfg.n_fft - cfg.hop) // 2,  # centring samples still to drop
            "frames_in": 0,
            "samples_out": 0,
        }

    def stream(self, mel: torch.Tensor, state: dict, final: bool = False) -> tuple[torch.Tensor, dict]:
        """Chunk of mel frames (B, 80, m) -> the waveform samples that became final (B, k)."""
        cfg = self.cfg
        st = dict(state)
        st["frames_in"] = state["frames_in"] + mel.shape[-1]
        h, st["embed"], _ = stream_conv(self.embed, mel, state["embed"], self.left, self.right, final)  # (B, C, n)
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        caches = []
        for blk, c in zip(self.blocks, state["blocks"]):
            h, c = blk.stream(h, c, final)
            caches.append(c)
        st["blocks"] = caches
        n = h.shape[-1]
        tail = cfg.n_fft - cfg.hop
        if n:
            y = self._overlap_add(self._frames(h))  # (B, (n - 1) hop + n_fft)
            y = torch.cat([y[:, :tail] + state["ola"], y[:, tail:]], dim=-1)
            out, st["ola"] = y[:, : n * cfg.hop], y[:, n * cfg.hop :]
        else:
            out = mel.new_zeros(mel.shape[0], 0)
        if final:
            out = torch.cat([out, st["ola"]], dim=-1)
            st["ola"] = st["ola"][:, :0]
        if st["skip"]:
            drop = min(st["skip"], out.shape[-1])
            out, st["skip"] = out[:, drop:], st["skip"] - drop
        if final:  # exactly frames_in * hop samples in total
            out = out[:, : max(0, st["frames_in"] * cfg.hop - state["samples_out"])]
        st["samples_out"] = state["samples_out"] + out.shape[-1]
        return out, st


# ------------------------------------------------------------------------------------------------
# the Vocoder interface


class Vocoder:
    """mel (B, 80, F) or (80, F) -> wav (B, F * hop) or (F * hop,), float32 at ``sample_rate``.

    Subclasses implement ``_whole`` and, when streamable, ``init_state`` / ``_stream``.
    ``latency_samples`` is the algorithmic latency of the streaming mode.
    """

    name = "vocoder"
    sample_rate = DEFAULT_TIMEBASE.sample_rate
    hop = 256
    n_mels = 80
    latency_samples = 0
    streamable = True

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, mel) -> torch.Tensor:
        x, squeeze = check_mel(mel, self.n_mels)
        wav = self._whole(x.to(self.device)).float().cpu()  # (B, F * hop)
        return wav[0] if squeeze else wav

    def init_state(self, batch: int = 1) -> dict:
        raise MomuError(f"the {self.name} vocoder has no streaming mode; use the 'fast' or 'hifigan' vocoder")

    @torch.inference_mode()
    def stream(self, mel, state: dict, final: bool = False) -> tuple[torch.Tensor, dict]:
        """Next chunk of mel frames (B, 80, m) -> (newly final samples (B, k), new state).  Pure: ``state`` is not modified."""
        x, squeeze = check_mel(mel, self.n_mels)
        wav, state = self._stream(x.to(self.device), state, final)
        wav = wav.float().cpu()
        return (wav[0] if squeeze else wav), state

    def _whole(self, mel: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _stream(self, mel: torch.Tensor, state: dict, final: bool):
        raise NotImplementedError


class FastVocoderWrapper(Vocoder):
    name = "fast"

    def __init__(self, model: FastVocoder, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.model = model.to(self.device).eval()
        self.sample_rate, self.hop, self.n_mels = model.cfg.sample_rate, model.cfg.hop, model.cfg.n_mels
        self.latency_samples = model.cfg.latency_samples

    def _whole(self, mel):
        return self.model(mel)

    def init_state(self, batch: int = 1) -> dict:
        return self.model.init_state(batch, self.device)

    def _stream(self, mel, state, final):
        return self.model.stream(mel, state, final)


class ContextStreamer:
    """Exact streaming for any frame-local vocoder by overlap: keep ``left`` frames of past context and
    wait for ``right`` frames of lookahead; output samples of frame f depend only on frames [f - left, f + right],
    so they equal the whole-sequence output (zero padding at the true start/end is reproduced)."""

    def __init__(self, fn, left: int, right: int, hop: int):
        self.fn, self.left, self.right, self.hop = fn, left, right, hop

    def init_state(self, batch: int, n_mels: int, device) -> dict:
        return {"buf": torch.zeros(batch, n_mels, 0, device=device), "buf_start": 0, "frames_in": 0, "emitted": 0}

    def stream(self, mel: torch.Tensor, state: dict, final: bool) -> tuple[torch.Tensor, dict]:
        buf = torch.cat([state["buf"], mel], dim=-1)  # (B, 80, n) covering frames [buf_start, frames_in)
        start, total, done = state["buf_start"], state["frames_in"] + mel.shape[-1], state["emitted"]
        ready = total if final else max(done, total - self.right)
        if ready > done:
            w0 = max(0, done - self.left)
            wav = self.fn(buf[:, :, w0 - start :])  # (B, (total - w0) hop)
            out = wav[:, (done - w0) * self.hop : (ready - w0) * self.hop]
        else:
            out = buf.new_zeros(buf.shape[0], 0)
        keep = max(0, ready - self.left)
        st = {"buf": buf[:, :, keep - start :], "buf_start": keep, "frames_in": total, "emitted": ready}
        return out, st


class HiFiGANVocoder(Vocoder):
    name = "hifigan"

    def __init__(self, generator, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.gen = generator.to(self.device).eval()
        ctx = generator.context_frames()
        self.streamer = ContextStreamer(self.gen, ctx, ctx, self.hop)
        self.latency_samples = ctx * self.hop

    def _whole(self, mel):
        return self.gen(mel)

    def init_state(self, batch: int = 1) -> dict:
        return self.streamer.init_state(batch, self.n_mels, self.device)

    def _stream(self, mel, state, final):
        return self.streamer.stream(mel, state, final)


class GriffinLimVocoder(Vocoder):
    """FALLBACK ONLY (audible phase artefacts): mel -> linear magnitude by non-negative least squares
    (pseudo-inverse of the Slaney filterbank, clamped) -> Griffin & Lim (1984) phase iterations."""

    name = "griffinlim"
    streamable = False

    def __init__(self, device: str | torch.device = "cpu", n_iter: int = 32):
        super().__init__(device)
        self.n_iter = n_iter

    def _whole(self, mel):
        from momu_live.models.audio import DEFAULT_MEL, mel_filterbank

        c = DEFAULT_MEL
        fb = torch.from_numpy(mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax)).to(mel)  # (80, bins)
        mag = (torch.linalg.pinv(fb) @ mel.exp()).clamp(min=0)  # (B, bins, F)
        n = mel.shape[-1] * c.hop_length
        win = torch.hann_window(c.n_fft, device=mel.device)
        g = torch.Generator(device="cpu").manual_seed(0)
        ang = torch.exp(2j * math.pi * torch.rand(mag.shape, generator=g)).to(mel.device)
        kw = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=win, center=True)
        # torch's centred frame i is centred on sample i*hop; log_mel's frame i on i*hop + n_fft/2 - pad
        shift = c.n_fft // 2 - (c.n_fft - c.hop_length) // 2
        for _ in range(self.n_iter):
            wav = torch.istft(mag * ang, length=n, **kw)  # (B, n)
            spec = torch.stft(wav, return_complex=True, **kw)[..., : mag.shape[-1]]  # (B, bins, F)
            ang = torch.exp(1j * torch.angle(spec))
        wav = torch.istft(mag * ang, length=n, **kw)  # (B, n)
        return F.pad(wav, (shift, 0))[:, :n]


# ------------------------------------------------------------------------------------------------
# loading


def load_fast(path: str | Path | None = None, device: str | torch.device = "cpu") -> FastVocoderWrapper:
    """The shipped fast vocoder (models/weights/vocoder_fast) or a trained checkpoint ``path``."""
    from momu_live.models.builders import build_vocoder_fast
    from momu_live.models.checkpoint import load_checkpoint

    p = Path(path) if path else FAST_WEIGHTS
    if not p.with_suffix(".safetensors").exists() and not p.with_suffix(".json").exists() and path is None:
        raise MomuError(f"shipped fast-vocoder weights {p}.safetensors are missing; reinstall momu-live or run `momu train vocoder`")
    model, _ = load_checkpoint(p, FAMILY_FAST, build_vocoder_fast)
    return FastVocoderWrapper(model.float(), device)


def load_vocoder(name: str = "fast", device: str | torch.device = "cpu", path: str | Path | None = None) -> Vocoder:
    """``fast`` (live default), ``hifigan`` (quality), ``griffinlim`` (labelled fallback)."""
    if name == "fast":
        return load_fast(path, device)
    if name == "hifigan":
        from momu_live.models.hifigan import load_universal

        return HiFiGANVocoder(load_universal(), device)
    if name in ("griffinlim", "griffin-lim", "gl"):
        return GriffinLimVocoder(device)
    raise MomuError(f"unknown vocoder {name!r}; choose fast, hifigan or griffinlim")
