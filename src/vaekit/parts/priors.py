"""Priors p(z): each offers ``log_prob(z)`` (summed over the latent dimension) and ``sample(n)``.

Standard normal; a learned mixture of Gaussians; the VampPrior (Tomczak & Welling 2018), a mixture
of the encoder's posteriors at learned pseudo-inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vaekit.errors import ConfigError
from vaekit.parts.distributions import LOG_2PI, DiagonalGaussian

# a mixture's log-density is evaluated in row chunks of at most this many numbers [rows, K, d]
_CHUNK_NUMBERS = 1 << 24


class Prior(nn.Module):
    """Interface: a density over R^d that the objective can evaluate and the model can sample."""

    latent_dim: int

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def bind(self, encode: Callable[[torch.Tensor], DiagonalGaussian]) -> None:
        """Receive the model's map x -> diagonal-Gaussian part of q(z|x). Priors defined through
        the encoder (VampPrior) keep it; the others ignore it."""


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


class MixtureOfGaussians(MixturePrior):
    """p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2) with learned pi = softmax(logits), mu and sigma.
    Means start as N(0, I) draws and scales at 1, so the initial prior is broad."""

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


class VampPrior(MixturePrior):
    """p(z) = (1/K) sum_k q(z|u_k): the encoder's posterior at K learned pseudo-inputs u_k
    (Tomczak & Welling 2018). u_k = sigmoid(w_k) lies in (0, 1), like the data.

    The prior needs the model's encoder: the VAE calls ``bind(encode)`` when it is built, with
    ``encode`` mapping inputs to the diagonal-Gaussian part of q(z|x) (for a flow posterior, the
    flow's Gaussian base). The encoder is not registered here, so weights are stored once.
    """

    def __init__(self, latent_dim: int, components: int, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(components, *event_shape))
        self._encode: Callable[[torch.Tensor], DiagonalGaussian] | None = None

    def bind(self, encode: Callable[[torch.Tensor], DiagonalGaussian]) -> None:
        self._encode = encode

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def components(self) -> DiagonalGaussian:
        if self._encode is None:
            raise RuntimeError("VampPrior.bind(encode) was not called: build the prior inside a VAE")
        return self._encode(self.pseudo_inputs)

    def log_weights(self) -> torch.Tensor:
        k = self.pseudo_logits.shape[0]
        return self.pseudo_logits.new_full((k,), -math.log(k))


def kl_diag_gaussian_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension = 0.5 (mu^2 + sigma^2 - 1) - log sigma."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - torch.log(scale)


PRIORS = ("normal", "mog", "vamp")


def build_prior(
    name: str, latent_dim: int, components: int = 50, event_shape: tuple[int, ...] = ()
) -> Prior:
    """Make the prior a config names (``components``: mixture size / number of pseudo-inputs)."""
    if name == "normal":
        return StandardNormal(latent_dim)
    if name in ("mog", "vamp") and components < 1:
        raise ConfigError(
            f"model.prior_components must be >= 1 for the {name} prior, got {components}",
            "set model.prior_components to e.g. 50 (mog) or 500 (vamp)",
        )
    if name == "mog":
        return MixtureOfGaussians(latent_dim, components)
    if name == "vamp":
        return VampPrior(latent_dim, components, event_shape)
    raise ConfigError(f"unknown prior {name!r}", "set model.prior to one of: " + ", ".join(PRIORS))


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
