"""Priors p(z): each offers ``log_prob(z)`` (summed over the latent dimension) and ``sample(n)``."""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.distributions import LOG_2PI


class Prior(nn.Module):
    """Interface: a density over R^d that the objective can evaluate and the model can sample."""

    latent_dim: int

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class StandardNormal(Prior):
    """p(z) = N(0, I); the only prior with a closed-form KL to a diagonal Gaussian posterior."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(
            n, self.latent_dim, generator=generator, device=self._anchor.device
        )


def kl_diag_gaussian_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension = 0.5 (mu^2 + sigma^2 - 1) - log sigma."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - torch.log(scale)


def build_prior(name: str, latent_dim: int) -> Prior:
    """Make the prior a config names."""
    from vaekit.errors import ConfigError

    if name == "normal":
        return StandardNormal(latent_dim)
    raise ConfigError(f"unknown prior {name!r}", "set model.prior to: normal")


__all__ = ["Prior", "StandardNormal", "build_prior", "kl_diag_gaussian_standard_normal"]
