"""Rhythm of motion and the rhythmic contrastive loss of BiCoR-VAE (MoMu-Diffusion, Sec. 3.1, Eq. 1-4).

- ``directogram`` (Eq. 1, after Davis & Agrawala 2018 "Visual Rhythm and Beat"): joint velocities
  projected on the frontal (x, y) plane and binned by direction; bin k of frame t sums the speeds
  of the joints moving in direction bin k:  D(t, k) = sum_j |v_j(t)| 1[angle(v_j(t)) in bin k].
- ``kinematic_amplitude`` (Eq. 2): the half-wave-rectified directogram flux
  Q(t) = sum_k max(0, D(t, k) - D(t-1, k)): large where the motion changes direction/speed, i.e. on
  visual beats.  ``latent_amplitude`` max-pools Q to the latent rate.
- ``rhythmic_contrastive_loss`` (Eq. 3-4): clips cut at the same times from the music and motion
  latents, max-pooled over time, cosine similarity / temperature, bidirectional InfoNCE; negatives
  are all other clips of the batch (other times of the same dance and other dances).  Q selects the
  clips (those at or above the batch median of clip-mean Q) and weights each pair by its Q.
All functions are pure torch (no librosa) and run on any device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from momu_live.models.timebase import DEFAULT_TIMEBASE


def directogram(joints: torch.Tensor, n_bins: int = 8, fps: float | None = None) -> torch.Tensor:
    """Eq. 1: joints (B, T, J, 3) -> directogram (B, T, n_bins) of frontal-plane joint velocities (m/s)."""
    fps = float(fps if fps is not None else DEFAULT_TIMEBASE.motion_rate)
    v = torch.zeros_like(joints[..., :2])  # (B, T, J, 2)
    v[:, 1:] = (joints[:, 1:, :, :2] - joints[:, :-1, :, :2]) * fps
    speed = v.norm(dim=-1)  # (B, T, J)
    ang = torch.atan2(v[..., 1], v[..., 0]) % (2 * math.pi)  # (B, T, J)
    k = torch.clamp((ang / (2 * math.pi) * n_bins).long(), max=n_bins - 1)  # (B, T, J)
    d = torch.zeros(*speed.shape[:2], n_bins, dtype=speed.dtype, device=speed.device)  # (B, T, K)
    return d.scatter_add_(2, k, speed)


def kinematic_amplitude(joints: torch.Tensor, n_bins: int = 8, fps: float | None = None) -> torch.Tensor:
    """Eq. 2: Q(t) = sum_k relu(D(t, k) - D(t-1, k)); joints (B, T, J, 3) -> (B, T), Q(0) = 0."""
    d = directogram(joints, n_bins, fps)  # (B, T, K)
    q = torch.zeros(d.shape[:2], dtype=d.dtype, device=d.device)  # (B, T)
    q[:, 1:] = F.relu(d[:, 1:] - d[:, :-1]).sum(-1)
    return q


def latent_amplitude(joints: torch.Tensor, n_bins: int = 8) -> torch.Tensor:
    """Q at the latent rate: joints (B, 2L, J, 3) at the model rate -> (B, L) (max over each latent block)."""
    q = kinematic_amplitude(joints, n_bins)  # (B, 2L)
    k = DEFAULT_TIMEBASE.motion_per_latent
    L = q.shape[1] // k
    return q[:, : L * k].reshape(q.shape[0], L, k).amax(-1)  # (B, L)


def cut_clips(z: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Eq. 3: clips of ``length`` latent frames at (batch b, start s) -> max-pooled (N, C).

    z (B, C, L); starts (N, 2) long rows (b, s)."""
    idx = starts[:, 1:2] + torch.arange(length, device=z.device)[None]  # (N, length)
    clips = z[starts[:, 0:1], :, idx]  # (N, length, C)
    return clips.amax(dim=1)  # (N, C)


def aligned_clips(z_music: torch.Tensor, z_motion: torch.Tensor, length: int, hop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pooled clips cut at the same times from one recording's latents: z_music, z_motion (1, C, L[') ) ->
    (music clips (N, C), motion clips (N, C)), a clip of ``length`` frames every ``hop`` (default ``length``) over the
    common length (the retrieval evaluation's clips)."""
    L = min(z_music.shape[-1], z_motion.shape[-1])
    s = torch.arange(0, L - length + 1, hop or length, device=z_music.device)
    st = torch.stack([torch.zeros_like(s), s], 1)  # (N, 2)
    return cut_clips(z_music[..., :L], st, length), cut_clips(z_motion[..., :L], st, length)


def clip_starts(q: torch.Tensor, length: int, per_item: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clip starts per batch item and their clip-mean Q: returns starts (N, 2), q_clip (N,)."""
    B, L = q.shape
    if L < length:
        raise ValueError(f"latent length {L} < clip length {length}")
    s = torch.randint(0, L - length + 1, (B, per_item), generator=generator, device="cpu").to(q.device)  # (B, P)
    b = torch.arange(B, device=q.device)[:, None].expand(B, per_item)
    starts = torch.stack([b.reshape(-1), s.reshape(-1)], dim=1)  # (N, 2)
    idx = starts[:, 1:2] + torch.arange(length, device=q.device)[None]  # (N, length)
    return starts, q[starts[:, 0:1], idx].mean(1)


def rhythmic_contrastive_loss(z_music: torch.Tensor, z_motion: torch.Tensor, q: torch.Tensor, clip_len: int = 8,
                              per_item: int = 4, temperature: float = 0.1, select: bool = True, center: bool = True,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 4: Q-weighted bidirectional InfoNCE between max-pooled music and motion latent clips.

    z_music, z_motion (B, C, L) (aligned latents); q (B, L) latent-rate kinematic amplitude.
    ``center``: subtract each modality's mean pooled clip over the batch before the cosine, so the
    similarity measures how a clip differs from the typical clip (the raw VAE latents share a large
    common offset that would otherwise dominate every cosine).
    """
    starts, qc = clip_starts(q, clip_len, per_item, generator)  # (N, 2), (N,)
    if select and qc.numel() > 2:
        keep = qc >= qc.median()
        starts, qc = starts[keep], qc[keep]
    a = cut_clips(z_music, starts, clip_len)  # (N, C)
    m = cut_clips(z_motion, starts, clip_len)  # (N, C)
    if center:
        a, m = a - a.mean(0, keepdim=True), m - m.mean(0, keepdim=True)
    a, m = F.normalize(a, dim=-1), F.normalize(m, dim=-1)
    logits = m @ a.t() / temperature  # (N, N)
    target = torch.arange(len(starts), device=logits.device)
    w = qc / qc.mean().clamp_min(1e-6)  # (N,)
    w = w.detach()
    loss = 0.5 * (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.t(), target, reduction="none"))
    return (w * loss).sum() / w.sum().clamp_min(1e-6)


def retrieval_ranks(z_music: torch.Tensor, z_motion: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Rank (0 = best) of the matching music clip for each motion clip; inputs pooled clips (N, C).

    ``center`` subtracts each modality's mean over the candidate set first (as the loss does)."""
    if center:
        z_music, z_motion = z_music - z_music.mean(0, keepdim=True), z_motion - z_motion.mean(0, keepdim=True)
    sim = F.normalize(z_motion, dim=-1) @ F.normalize(z_music, dim=-1).t()  # (N, N)
    own = sim.diagonal()[:, None]
    return (sim > own).sum(1)


def retrieval_scores(z_music: torch.Tensor, z_motion: torch.Tensor, candidates: int = 32, seed: int = 0) -> dict:
    """Motion-to-music clip retrieval (the BiCoR-VAE evaluation): pooled clips (N, C) of the same times, row i of
    each modality from the same moment.  Each motion clip ranks its own music clip among ``candidates - 1`` music
    clips drawn at random (seeded) from every other time and dance (centred over all N clips, cosine).  Returns
    top-1 / top-5 rates, chance levels, ``top1_x_chance``, and ``*_all`` ranked against every clip."""
    N = len(z_music)
    if N < 2:
        raise ValueError("retrieval needs at least two clips")
    ranks_all = retrieval_ranks(z_music, z_motion)  # (N,)
    K = min(int(candidates), N)
    za = F.normalize(z_music - z_music.mean(0, keepdim=True), dim=-1)
    zm = F.normalize(z_motion - z_motion.mean(0, keepdim=True), dim=-1)
    sim = zm @ za.t()  # (N, N) motion i vs music j
    g = torch.Generator().manual_seed(seed)
    ranks = torch.empty(N, dtype=torch.long)
    for i in range(N):
        others = torch.randperm(N - 1, generator=g)[: K - 1]
        others = others + (others >= i).long()  # skip i
        ranks[i] = (sim[i, others.to(sim.device)] > sim[i, i]).sum().cpu()
    top1 = (ranks < 1).float().mean().item()
    return {"retrieval_top1": top1, "retrieval_top5": (ranks < 5).float().mean().item(), "candidates": int(K),
            "chance_top1": 1.0 / K, "chance_top5": min(1.0, 5.0 / K), "top1_x_chance": top1 * K, "clips": int(N),
            "retrieval_top1_all": (ranks_all < 1).float().mean().item(),
            "retrieval_top5_all": (ranks_all < 5).float().mean().item()}
