"""Posterior families q(z|x): turn the encoder's output into a distribution and draw z with log q."""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.distributions import DiagonalGaussian
from vaekit.errors import ConfigError


class GaussianPosterior(nn.Module):
    """q(z|x) = N(mu(x), diag sigma(x)^2); the encoder produces 2d numbers (mu, softplus^-1 sigma)."""

    analytic_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.params_dim = 2 * latent_dim

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(h)

    def sample(self, q: DiagonalGaussian, h: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z [k, B, d] by reparameterization and log q(z|x) [k, B]."""
        z = q.rsample((k,))
        return z, q.log_prob(z)


def build_posterior(name: str, latent_dim: int) -> nn.Module:
    """Make the posterior a config names."""
    if name == "gaussian":
        return GaussianPosterior(latent_dim)
    raise ConfigError(f"unknown posterior {name!r}", "set model.posterior to: gaussian")
