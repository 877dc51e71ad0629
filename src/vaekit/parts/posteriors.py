"""Posterior families q(z|x): turn the encoder's output into a distribution and draw z with log q.

Contract: ``params_dim`` (how many numbers the encoder produces), ``forward(h) -> q``,
``sample(q, h, k) -> (z [k, B, d], log q(z|x) [k, B])``, ``analytic_kl`` (closed-form KL to N(0, I)),
and ``gaussian(h)``: the diagonal-Gaussian part of q (what the VampPrior uses as its components).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Distribution, constraints

from vaekit.errors import ConfigError
from vaekit.parts.distributions import DiagonalGaussian
from vaekit.parts.flows import IAF


class GaussianPosterior(nn.Module):
    """q(z|x) = N(mu(x), diag sigma(x)^2); the encoder produces 2d numbers (mu, softplus^-1 sigma)."""

    analytic_kl = True
    bf16_safe = True  # its log-density is computed from the network's output, outside the network

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.params_dim = 2 * latent_dim

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(h)

    def gaussian(self, h: torch.Tensor) -> DiagonalGaussian:
        return self(h)

    def sample(self, q: DiagonalGaussian, h: torch.Tensor, k: int) -> tuple[torch.Tensor, None]:
        """z [k, B, d] by reparameterization; log q(z|x) is left to ``q.log_prob`` when needed."""
        return q.rsample((k,)), None


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

    def rsample_and_log_prob(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        z0 = self.base.rsample((k,))
        z, log_det = self._push(z0)
        return z, self.base.log_prob(z0) - log_det

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return self._push(self.base.rsample(sample_shape))[0]

    @property
    def mean(self) -> torch.Tensor:
        return self._push(self.base.loc)[0]


class IAFPosterior(nn.Module):
    """Diagonal Gaussian followed by ``steps`` IAF steps (Kingma et al. 2016). The encoder produces
    2d + context numbers: mean, softplus^-1 scale, and the context vector h fed to every step."""

    analytic_kl = False

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

    def sample(self, q: FlowGaussian, h: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z [k, B, d] through the flow and log q(z|x) [k, B] with the log-det subtracted."""
        return q.rsample_and_log_prob(k)


def build_posterior(
    name: str, latent_dim: int, flow_steps: int = 2, flow_hidden: int = 256, flow_context: int = 32
) -> GaussianPosterior | IAFPosterior:
    """Make the posterior a config names."""
    if name == "gaussian":
        return GaussianPosterior(latent_dim)
    if name == "iaf":
        if flow_steps < 1 or flow_hidden < 1 or flow_context < 0:
            raise ConfigError(
                f"the IAF posterior needs flow_steps >= 1, flow_hidden >= 1 and flow_context >= 0 "
                f"(got {flow_steps}, {flow_hidden}, {flow_context})",
                "set e.g. model.flow_steps=2 model.flow_hidden=256 model.flow_context=32",
            )
        return IAFPosterior(latent_dim, flow_steps, flow_hidden, flow_context)
    raise ConfigError(f"unknown posterior {name!r}", "set model.posterior to one of: gaussian, iaf")
