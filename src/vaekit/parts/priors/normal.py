"""p(z) = N(0, I), and its closed-form KL to a diagonal Gaussian posterior."""

from __future__ import annotations

import torch

from vaekit.config import PartConfig
from vaekit.parts.distributions import LOG_2PI
from vaekit.parts.priors.base import Prior
from vaekit.registry import register
from vaekit.schema import DataSchema


@register("prior", "normal")
class StandardNormal(Prior):
    """p(z) = N(0, I); the only prior with a closed-form KL to a diagonal Gaussian posterior."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @classmethod
    def build(
        cls, cfg: PartConfig, schema: DataSchema, latent_dim: int, conditional: bool = False
    ) -> StandardNormal:
        return cls(latent_dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(
            n, self.latent_dim, generator=generator, device=self._anchor.device
        )


def kl_diag_gaussian_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension = 0.5 (mu^2 + sigma^2 - 1) - log sigma."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - torch.log(scale)
