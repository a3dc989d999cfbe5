"""Config -> objects.  The only place models are constructed from configs.

Each family adds ``build_<family>(cfg)`` and ``debug_<family>()`` (a tiny model for tests) here.
Keep sections per family; edit only your own section.
"""
from __future__ import annotations


def _resolve(cfg, sizes: dict, config_cls: type, what: str):
    """A config dataclass from a config, a dict (checkpoint JSON, strict keys) or a size name of ``sizes``."""
    if isinstance(cfg, str):
        if cfg not in sizes:
            from momu_live import MomuError

            raise MomuError(f"unknown {what} size {cfg!r}; choose one of {sorted(sizes)}")
        return sizes[cfg]
    if isinstance(cfg, dict):
        from momu_live.models.checkpoint import config_from_dict

        return config_from_dict(config_cls, cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# vae (BiCoR-VAE, models/vae.py)
def build_vae(cfg):
    """BiCoRVAE from a ``BiCoRVAEConfig``, a dict (checkpoint JSON) or a size name."""
    from momu_live.models.vae import SIZES, BiCoRVAE, BiCoRVAEConfig

    return BiCoRVAE(_resolve(cfg, SIZES, BiCoRVAEConfig, "VAE"))


def debug_vae():
    """Tiny BiCoR-VAE for tests."""
    return build_vae("debug")


# ---------------------------------------------------------------------------------------------
# vocoder (fast iSTFT vocoder models/vocoder.py; HiFi-GAN V1 models/hifigan.py)
def build_vocoder_fast(cfg):
    """FastVocoder from a ``FastVocoderConfig``, a dict (checkpoint JSON) or a size name."""
    from momu_live.models.vocoder import SIZES, FastVocoder, FastVocoderConfig

    return FastVocoder(_resolve(cfg, SIZES, FastVocoderConfig, "vocoder"))


def debug_vocoder_fast():
    """Tiny fast vocoder for tests."""
    return build_vocoder_fast("debug")


def build_hifigan(cfg):
    """HiFi-GAN V1 generator from a ``HiFiGANConfig``, a dict or a size name (``v1``, ``debug``)."""
    from momu_live.models.hifigan import SIZES, HiFiGANConfig, HiFiGANGenerator

    return HiFiGANGenerator(_resolve(cfg, SIZES, HiFiGANConfig, "HiFi-GAN"))


def debug_hifigan():
    """Tiny HiFi-GAN generator for tests."""
    return build_hifigan("debug")


# ---------------------------------------------------------------------------------------------
# diffusion (DiT over BiCoR-VAE latents, models/dit.py)
def build_dit(cfg):
    """DiT from a ``DiTConfig``, a dict (checkpoint JSON) or a size name (``debug``, ``small``, ``base``)."""
    from momu_live.models.dit import SIZES, DiT, DiTConfig

    return DiT(_resolve(cfg, SIZES, DiTConfig, "DiT"))


def debug_dit(latent_dim: int = 4):
    """Tiny DiT for tests (latent width matching ``debug_vae()``)."""
    from dataclasses import replace

    from momu_live.models.dit import SIZES

    return build_dit(replace(SIZES["debug"], latent_dim=latent_dim))


# ---------------------------------------------------------------------------------------------
# rig VAE (prototype motion VAE on rig features, models/rig_vae.py)
def build_rig_vae(cfg):
    """RigVAE from a ``RigVAEConfig``, a dict (checkpoint JSON) or a size name (``debug``, ``small``, ``base``)."""
    from momu_live.models.rig_vae import SIZES, RigVAE, RigVAEConfig

    return RigVAE(_resolve(cfg, SIZES, RigVAEConfig, "rig VAE"))


def debug_rig_vae():
    """Tiny rig VAE for tests."""
    return build_rig_vae("debug")
