"""A learned mixture of Gaussians p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vaekit.config import PartConfig, require
from vaekit.parts.distributions import DiagonalGaussian
from vaekit.parts.priors.base import MixturePrior
from vaekit.registry import register
from vaekit.schema import DataSchema


@dataclass
class MixtureConfig(PartConfig):
    components: int = 50  # mixture components (mog) or pseudo-inputs (vamp)

    def __post_init__(self) -> None:
        require("model.prior.components", self.components, self.components >= 1, ">= 1")


@register("prior", "mog")
class MixtureOfGaussians(MixturePrior):
    """p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2) with learned pi = softmax(logits), mu and sigma.
    Means start as N(0, I) draws and scales at 1, so the initial prior is broad."""

    Config = MixtureConfig

    @classmethod
    def build(
        cls, cfg: MixtureConfig, schema: DataSchema, latent_dim: int, conditional: bool = False
    ) -> MixtureOfGaussians:
        return cls(latent_dim, cfg.components)

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        # softplus^-1(1): the components start with unit scale
        self.raw_scale = nn.Parameter(torch.full((components, latent_dim), math.log(math.expm1(1.0))))
        self.logits = nn.Parameter(torch.zeros(components))

    def components(self) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(torch.cat([self.loc, self.raw_scale], -1))

    def log_weights(self) -> torch.Tensor:
        return F.log_softmax(self.logits, -1)
