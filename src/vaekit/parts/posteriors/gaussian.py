"""q(z|x) = N(mu(x), diag sigma(x)^2), reparameterized: the VAE's usual posterior."""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.config import PartConfig
from vaekit.parts.distributions import DiagonalGaussian
from vaekit.registry import register
from vaekit.schema import DataSchema


@register("posterior", "gaussian")
class GaussianPosterior(nn.Module):
    """q(z|x) = N(mu(x), diag sigma(x)^2); the encoder produces 2d numbers (mu, softplus^-1 sigma)."""

    Config = PartConfig
    analytic_kl = True
    bf16_safe = True  # its log-density is computed from the network's output, outside the network

    @classmethod
    def build(cls, cfg: PartConfig, schema: DataSchema, latent_dim: int) -> GaussianPosterior:
        return cls(latent_dim)

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.params_dim = 2 * latent_dim

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(h)

    def gaussian(self, h: torch.Tensor) -> DiagonalGaussian:
        return self(h)

    def sample(
        self, q: DiagonalGaussian, h: torch.Tensor, k: int, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        """z = mu + sigma eps [k, B, d]; log q(z|x) is left to ``q.log_prob`` when needed."""
        return (q.rsample((k,)) if eps is None else q.loc + q.scale * eps), None
