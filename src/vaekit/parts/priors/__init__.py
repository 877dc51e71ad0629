"""Priors p(z): one file per family, each registered as a ``prior`` part."""

from __future__ import annotations

from vaekit import registry
from vaekit.config import PartConfig
from vaekit.parts.priors.base import MixturePrior, Prior, mixture_log_prob
from vaekit.parts.priors.mog import MixtureOfGaussians
from vaekit.parts.priors.normal import StandardNormal, kl_diag_gaussian_standard_normal
from vaekit.parts.priors.vamp import VampPrior
from vaekit.schema import DataSchema


def build_prior(cfg: PartConfig, schema: DataSchema, latent_dim: int, conditional: bool = False) -> Prior:
    """The prior ``cfg.name`` names over a ``latent_dim``-dimensional z."""
    part = registry.lookup("prior", cfg.name)
    return part.build(cfg, schema, latent_dim=latent_dim, conditional=conditional)


__all__ = [
    "MixtureOfGaussians",
    "MixturePrior",
    "Prior",
    "StandardNormal",
    "VampPrior",
    "build_prior",
    "kl_diag_gaussian_standard_normal",
    "mixture_log_prob",
]
