"""A new prior: p(z) = prod_j Laplace(z_j; 0, b), with the scale b an option."""

from dataclasses import dataclass

import torch
from torch.distributions import Laplace

from vaekit.config import PartConfig, require
from vaekit.parts.priors import Prior
from vaekit.registry import register


@register("prior", "laplace")
class LaplacePrior(Prior):
    @dataclass
    class Config(PartConfig):
        scale: float = 1.0  # the Laplace scale b of every dimension

        def __post_init__(self) -> None:
            require("model.prior.scale", self.scale, self.scale > 0, "> 0")

    @classmethod
    def build(cls, cfg, schema, latent_dim, conditional=False):
        return cls(latent_dim, cfg.scale)

    def __init__(self, latent_dim: int, scale: float) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("scale", torch.tensor(scale))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return Laplace(torch.zeros_like(self.scale), self.scale).log_prob(z).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(n, self.latent_dim, generator=generator, device=self.scale.device) - 0.5
        return -self.scale * u.sign() * torch.log1p(-2 * u.abs())  # the inverse CDF
