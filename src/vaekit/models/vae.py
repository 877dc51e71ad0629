"""The composed VAE: encoder net -> posterior -> z -> decoder net -> likelihood, with a prior.

The model returns per-example terms (``Terms``); objectives in ``vaekit.objectives`` turn them
into a loss. Optional conditioning on a label y (CVAE, Sohn et al. 2015) feeds a one-hot y to both
encoder and decoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution

from vaekit.distributions import log_prob_repeated
from vaekit.errors import DataError
from vaekit.objectives import Terms
from vaekit.priors import Prior, StandardNormal, kl_diag_gaussian_standard_normal


class VAE(nn.Module):
    """A VAE assembled from parts; every tensor argument x is a float batch [B, *event_shape]."""

    def __init__(
        self,
        encoder: nn.Module,
        posterior: nn.Module,
        prior: Prior,
        decoder: nn.Module,
        likelihood: nn.Module,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.posterior = posterior
        self.prior = prior
        self.decoder = decoder
        self.likelihood = likelihood
        self.event_shape = tuple(event_shape)
        self.num_classes = num_classes
        prior.bind(self._pseudo_posterior)

    def _pseudo_posterior(self, u: torch.Tensor) -> Distribution:
        """The diagonal-Gaussian part of q(z|u) for unlabelled inputs u (the VampPrior's components)."""
        return self.posterior.gaussian(self.encoder(u, None))

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    def condition(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """One-hot label for a conditional model, None otherwise."""
        if not self.num_classes:
            return None
        if y is None:
            raise DataError(
                "this is a conditional model: it needs labels y",
                "pass y (class indices) to the call, or use data with labels",
            )
        y = torch.as_tensor(y, device=self.prior_device)
        if y.dim() == 0:
            y = y.expand(n)
        return F.one_hot(y.long(), self.num_classes).float()

    @property
    def prior_device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The posterior q(z|x) (its ``.mean`` is the usual embedding)."""
        return self.posterior(self.encoder(x, self.condition(y, x.shape[0])))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The likelihood p(x|z) for latents z [N, d]."""
        return self.likelihood(self.decoder(z, self.condition(y, z.shape[0])))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 1) -> Terms:
        """Per-example terms with k reparameterized posterior samples."""
        b = x.shape[0]
        c = self.condition(y, b)
        h = self.encoder(x, c)
        q = self.posterior(h)
        z, log_qz = self.posterior.sample(q, h, k)  # log_qz None: q.log_prob(z), when needed
        ck = None if c is None else c.repeat(k, 1)
        px = self.likelihood(self.decoder(z.reshape(k * b, -1), ck))
        log_px_z = log_prob_repeated(px, x, k)
        if getattr(self.posterior, "analytic_kl", False) and isinstance(self.prior, StandardNormal):
            kl_dims = kl_diag_gaussian_standard_normal(q.loc, q.scale)
            return Terms(log_px_z, log_qz, None, kl_dims.sum(-1), kl_dims, z, q=q, prior=self.prior)
        log_qz = q.log_prob(z) if log_qz is None else log_qz
        log_pz = self.prior.log_prob(z)
        return Terms(log_px_z, log_qz, log_pz, (log_qz - log_pz).mean(0), None, z, q=q, prior=self.prior)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """ELBO per example in nats, [B] (analytic KL where it exists)."""
        return self(x, y).elbo

    @torch.no_grad()
    def log_likelihood(
        self, x: torch.Tensor, k: int = 1000, y: torch.Tensor | None = None, chunk: int = 500
    ) -> torch.Tensor:
        """Importance-sampled log p(x) per example in nats, [B], from k samples drawn ``chunk`` at a time
        (``vaekit.evaluation.likelihood``) under a seed taken from torch's global generator."""
        from vaekit.evaluation.likelihood import importance_sample

        seed = int(torch.randint(0, 2**62, ()))
        return importance_sample(self, x, y, k, max(1, x.shape[0]), chunk, seed).log_px.float()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: torch.Tensor | int | None = None,
        mean: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """n draws z ~ p(z), decoded: the likelihood mean (default) or a sample x ~ p(x|z)."""
        z = self.prior.sample(n, generator=generator)
        px = self.decode(z, y)
        return px.mean if mean else px.sample()

    def complete(
        self, x: torch.Tensor, observed: torch.Tensor, y: torch.Tensor | None = None, k: int = 500
    ) -> torch.Tensor:
        """x with its unobserved entries (``observed`` False) filled in from p(x_missing | x_observed);
        see ``vaekit.completion.complete``."""
        from vaekit.completion import complete

        return complete(self, x, observed, y, k)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of p(x | z = E_q[z]) for each example."""
        return self.decode(self.encode(x, y).mean, y).mean


__all__ = ["VAE"]
