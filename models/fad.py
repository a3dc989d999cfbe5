"""Frechet distances and the audio embedding of momu-live's FAD (numpy/scipy/torch; no librosa).

- ``frechet_distance``: d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al. 2017,
  Eq. 2 of "GANs trained by a two time-scale update rule"), computed as pytorch-fid's
  ``calculate_frechet_distance`` does (scipy ``sqrtm``, eps * I added to both covariances when the
  product is singular, imaginary part dropped when negligible).  Bailando's ``calc_fid`` (FID_k,
  FID_g) calls exactly this formula.
- ``MelStatEmbedding`` ("melstat-v1"): a transparent, weight-free audio embedding for a Frechet
  audio distance that runs offline and in CI.  **Not comparable with VGGish FAD** (Kilgour et al.
  2019) or any number in a paper: it measures how close two sets of audio are in log-mel
  statistics, nothing learned.  Per window of ``window_s`` seconds (hop ``hop_s``): mean and
  standard deviation over frames of the 80-band HiFi-GAN log-mel (models/audio.log_mel) and of the
  positive log-mel flux (an onset-strength curve: sum over bands of max(0, diff)), 162 numbers,
  projected to 128 dimensions by a fixed orthonormal random matrix (numpy PCG64 seed 20241123).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momu_live import MomuError


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D); ``np.cov(rowvar=False)`` (ddof 1) as pytorch-fid."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise MomuError(f"need at least 2 feature vectors (N, D) for a Frechet distance, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise MomuError("features contain NaN/inf")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, Eq. 2)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise MomuError(f"Frechet distance between different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MomuError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag)):.3g} too large")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_between(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


@dataclass(frozen=True)
class MelStatEmbedding:
    """Weight-free windowed log-mel statistics -> fixed random projection (see module docstring)."""

    name: str = "melstat-v1"
    window_s: float = 1.0
    hop_s: float = 0.5
    dim: int = 128
    seed: int = 20241123

    def projection(self) -> np.ndarray:
        """Fixed orthonormal projection (162, dim) from a seeded gaussian (QR)."""
        from momu_live.models.audio import DEFAULT_MEL

        n_in = 2 * DEFAULT_MEL.n_mels + 2
        g = np.random.Generator(np.random.PCG64(self.seed)).standard_normal((n_in, self.dim))
        q, r = np.linalg.qr(g)
        return q * np.sign(np.diag(r))[None]  # sign-fixed: unique for a given seed

    def frame_features(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Per-mel-frame features (N, 81): log-mel (80) and positive log-mel flux (1)."""
        from momu_live.models.audio import DEFAULT_MEL, log_mel, resample

        x = np.asarray(wav, dtype=np.float32)
        if x.ndim != 1:
            raise MomuError(f"audio must be mono (N,), got {x.shape}")
        if sr != DEFAULT_MEL.sample_rate:
            x = resample(x, sr, DEFAULT_MEL.sample_rate)
        mel = log_mel(x).numpy().T.astype(np.float64)  # (N, 80)
        flux = np.zeros((mel.shape[0], 1))  # (N, 1)
        flux[1:, 0] = np.maximum(mel[1:] - mel[:-1], 0).sum(-1)
        return np.concatenate([mel, flux], axis=1)

    def __call__(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Window embeddings (W, dim) of one waveform (W >= 1 when it is at least one window long)."""
        from momu_live.models.audio import DEFAULT_MEL

        f = self.frame_features(wav, sr)  # (N, 81)
        rate = DEFAULT_MEL.frame_rate
        win, hop = max(1, int(round(self.window_s * rate))), max(1, int(round(self.hop_s * rate)))
        if f.shape[0] < win:
            raise MomuError(f"audio shorter than one embedding window ({self.window_s} s)")
        starts = np.arange(0, f.shape[0] - win + 1, hop)
        idx = starts[:, None] + np.arange(win)[None]  # (W, win)
        w = f[idx]  # (W, win, 81)
        stats = np.concatenate([w.mean(1), w.std(1)], axis=1)  # (W, 162)
        return stats @ self.projection()  # (W, dim)


def fad_melstat(reference: list[np.ndarray], generated: list[np.ndarray], sr: int,
                embedding: MelStatEmbedding = MelStatEmbedding()) -> float:
    """Frechet distance of melstat-v1 window embeddings of two sets of waveforms.

    NOT comparable with VGGish FAD numbers; compare only momu-live melstat-v1 numbers with each other.
    """
    a = np.concatenate([embedding(w, sr) for w in reference])
    b = np.concatenate([embedding(w, sr) for w in generated])
    return frechet_between(a, b)
