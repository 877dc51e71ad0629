"""The prior contract: a density over R^d with ``log_prob(z)`` summed over the latent dimension
and ``sample(n)``; mixtures share their log-density and sampler here."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from vaekit.config import PartConfig
from vaekit.parts.distributions import DiagonalGaussian

# a mixture's log-density is evaluated in row chunks of at most this many numbers [rows, K, d]
_CHUNK_NUMBERS = 1 << 24


class Prior(nn.Module):
    """Interface: a density over R^d that the objective can evaluate and the model can sample.
    ``build(cfg, schema, latent_dim=, conditional=)`` makes one from its config."""

    Config = PartConfig
    latent_dim: int

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def bind(self, encode: Callable[[torch.Tensor], DiagonalGaussian]) -> None:
        """Receive the model's map x -> diagonal-Gaussian part of q(z|x). Priors defined through
        the encoder (VampPrior) keep it; the others ignore it."""


def mixture_log_prob(
    z: torch.Tensor, components: DiagonalGaussian, log_weights: torch.Tensor
) -> torch.Tensor:
    """log sum_k w_k N(z; mu_k, diag sigma_k^2) for z [..., d], K components [K, d], log w [K]."""
    flat = z.reshape(-1, 1, z.shape[-1])
    rows = max(1, _CHUNK_NUMBERS // components.loc.numel())
    parts = [torch.logsumexp(components.log_prob(c) + log_weights, -1) for c in flat.split(rows)]
    return torch.cat(parts).view(z.shape[:-1])


class MixturePrior(Prior):
    """A prior of the form sum_k w_k N(mu_k, diag sigma_k^2); subclasses say where the
    components and weights come from."""

    def components(self) -> DiagonalGaussian:  # pragma: no cover - interface
        raise NotImplementedError

    def log_weights(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, self.components(), self.log_weights())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pick component k ~ w, then z = mu_k + sigma_k * eps."""
        comp = self.components()
        probs = self.log_weights().exp()
        idx = torch.multinomial(probs, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=probs.device)
        return comp.loc[idx] + comp.scale[idx] * eps
