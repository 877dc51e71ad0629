"""An inverse autoregressive flow posterior (Kingma et al. 2016): a diagonal Gaussian pushed through
IAF steps that read a context vector from the encoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Distribution, constraints

from vaekit.config import PartConfig, require
from vaekit.parts.distributions import DiagonalGaussian
from vaekit.parts.flows import IAF
from vaekit.registry import register
from vaekit.schema import DataSchema


class FlowGaussian(Distribution):
    """q(z|x) of an IAF posterior: z = f(z0; h) with z0 ~ N(mu, sigma^2) and f a flow given context h.

    ``rsample_and_log_prob`` gives z with log q(z|x) = log N(z0) - log|det df/dz0|. ``mean`` is the
    flow applied to the base mean, f(mu; h): a deterministic point summary (E_q[z] has no closed form).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: DiagonalGaussian, flow: IAF, context: torch.Tensor | None) -> None:
        self.base, self.flow, self.context = base, flow, context
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def _push(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(z0) and log|det| for z0 [..., B, d], the context broadcast over the leading dims."""
        ctx = None if self.context is None else self.context.expand(*z0.shape[:-1], -1)
        flat = z0.reshape(-1, z0.shape[-1])
        z, log_det = self.flow(flat, None if ctx is None else ctx.reshape(flat.shape[0], -1))
        return z.view_as(z0), log_det.view(z0.shape[:-1])

    def rsample_and_log_prob(
        self, k: int, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k samples z [k, B, d] and log q(z|x) [k, B]; z0 = mu + sigma eps (eps drawn when None)."""
        z0 = self.base.rsample((k,)) if eps is None else self.base.loc + self.base.scale * eps
        z, log_det = self._push(z0)
        return z, self.base.log_prob(z0) - log_det

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return self._push(self.base.rsample(sample_shape))[0]

    @property
    def mean(self) -> torch.Tensor:
        return self._push(self.base.loc)[0]


@register("posterior", "iaf")
class IAFPosterior(nn.Module):
    """Diagonal Gaussian followed by ``steps`` IAF steps (Kingma et al. 2016). The encoder produces
    2d + context numbers: mean, softplus^-1 scale, and the context vector h fed to every step."""

    analytic_kl = False

    @dataclass
    class Config(PartConfig):
        steps: int = 2  # autoregressive flow steps
        hidden: int = 256  # width of the two masked hidden layers of each step
        context: int = 32  # size of the context vector h the encoder passes to every step

        def __post_init__(self) -> None:
            for key, low in (("steps", 1), ("hidden", 1), ("context", 0)):
                require(f"model.posterior.{key}", getattr(self, key), getattr(self, key) >= low, f">= {low}")

    @classmethod
    def build(cls, cfg: Config, schema: DataSchema, latent_dim: int) -> IAFPosterior:
        return cls(latent_dim, cfg.steps, cfg.hidden, cfg.context)

    def __init__(self, latent_dim: int, steps: int, hidden: int, context_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.context_dim = context_dim
        self.params_dim = 2 * latent_dim + context_dim
        self.flow = IAF(latent_dim, steps, hidden, context_dim)

    def gaussian(self, h: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(h[..., : 2 * self.latent_dim])

    def forward(self, h: torch.Tensor) -> FlowGaussian:
        context = h[..., 2 * self.latent_dim :] if self.context_dim else None
        return FlowGaussian(self.gaussian(h), self.flow, context)

    def sample(
        self, q: FlowGaussian, h: torch.Tensor, k: int, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z [k, B, d] through the flow and log q(z|x) [k, B] with the log-det subtracted."""
        return q.rsample_and_log_prob(k, eps)
