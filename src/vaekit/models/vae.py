"""The composed VAE: encoder net -> posterior -> z -> decoder net -> likelihood, with a prior.

The model returns per-example terms (``Output``); objectives in ``vaekit.parts.objectives`` turn them
into a loss. Optional conditioning on a label y (CVAE, Sohn et al. 2015) feeds a one-hot y to both
encoder and decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution

from vaekit.config import PartConfig, part, require
from vaekit.errors import ConfigError, DataError
from vaekit.models.completion import DEFAULT_METHOD, complete
from vaekit.models.importance import importance_sample
from vaekit.models.inputs import as_batch, as_labels, as_latents, as_tensor
from vaekit.nets import build_nets
from vaekit.parts.distributions import log_prob_repeated
from vaekit.parts.likelihoods import build_likelihood
from vaekit.parts.output import Output
from vaekit.parts.posteriors import build_posterior
from vaekit.parts.priors import Prior, StandardNormal, build_prior, kl_diag_gaussian_standard_normal
from vaekit.registry import register
from vaekit.schema import DataSchema


def label_classes(conditional: bool, schema: DataSchema) -> int:
    """The one-hot size a conditional model feeds its nets (0 when not conditional)."""
    if not conditional:
        return 0
    if not schema.num_classes:
        raise ConfigError(
            "model.conditional is set but the data set has no labels",
            "use labelled data (npz with y_train, folder with class sub-folders) or unset it",
        )
    return schema.num_classes


@register("model", "vae")
class VAE(nn.Module):
    """A VAE assembled from parts. ``forward`` takes a float batch [B, *event_shape]; the public
    methods also take numpy arrays or lists and check them (``vaekit.models.inputs``)."""

    @dataclass
    class Config(PartConfig):
        latent_dim: int = 16  # size of the latent vector z
        conditional: bool = False  # condition encoder and decoder on the label y (CVAE)
        net: PartConfig = part("net", "mlp")  # the backbone
        likelihood: PartConfig = part("likelihood", "bernoulli")  # p(x|z), per example
        prior: PartConfig = part("prior", "normal")  # p(z)
        posterior: PartConfig = part("posterior", "gaussian")  # q(z|x)

        def __post_init__(self) -> None:
            require("model.latent_dim", self.latent_dim, self.latent_dim >= 1, ">= 1")

    @classmethod
    def build(cls, cfg: Config, schema: DataSchema) -> VAE:
        """Encoder net -> posterior -> z -> decoder net -> likelihood, with the prior, for this data."""
        cond = label_classes(cfg.conditional, schema)
        likelihood = build_likelihood(cfg.likelihood, schema)
        posterior = build_posterior(cfg.posterior, schema, cfg.latent_dim)
        encoder, decoder = build_nets(
            cfg.net, schema, cfg.latent_dim, posterior.params_dim, likelihood.head_shape(schema), cond
        )
        # after the nets: a mixture prior draws its initial means, and this order keeps every seed's run
        prior = build_prior(cfg.prior, schema, cfg.latent_dim, conditional=bool(cond))
        return cls(encoder, posterior, prior, decoder, likelihood, schema.event_shape, cond)

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

    @property
    def bf16_safe(self) -> bool:
        """Whether bf16 autocast of the networks leaves every density in fp32: true when the posterior
        part declares it (its log-density is computed outside the networks; flows compute theirs
        inside)."""
        return bool(getattr(self.posterior, "bf16_safe", False))

    def _pseudo_posterior(self, u: torch.Tensor) -> Distribution:
        """The diagonal-Gaussian part of q(z|u) for unlabelled inputs u (the VampPrior's components)."""
        return self.posterior.gaussian(self.encoder(u, None))

    @property
    def analytic_kl_dims(self) -> bool:
        """Whether ``forward`` gives the closed-form per-dimension KL (``Output.kl_dims``): a diagonal
        Gaussian posterior with the standard normal prior."""
        return getattr(self.posterior, "analytic_kl", False) and isinstance(self.prior, StandardNormal)

    @property
    def diagonal_posterior(self) -> bool:
        """Whether q(z|x) is a diagonal Gaussian (``Output.q`` has per-dimension loc and scale): the
        posteriors with a closed-form KL are exactly those."""
        return getattr(self.posterior, "analytic_kl", False)

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
        return F.one_hot(as_labels(y, n, self.num_classes, self.prior_device), self.num_classes).float()

    @property
    def prior_device(self) -> torch.device:
        return next(self.parameters()).device

    def batch(self, x: object, name: str = "x") -> torch.Tensor:
        """User data as the checked float batch [B, *event_shape] the model computes on."""
        like = next(self.parameters())
        return as_batch(x, self.event_shape, like, getattr(self.likelihood, "unit_interval", False), name)

    def latents(self, z: object) -> torch.Tensor:
        """User latents as the checked float batch [N, latent_dim]."""
        return as_latents(z, self.latent_dim, next(self.parameters()))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The posterior q(z|x) (its ``.mean`` is the usual embedding)."""
        x = self.batch(x)
        return self.posterior(self.encoder(x, self.condition(y, x.shape[0])))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The likelihood p(x|z) for latents z [N, d]."""
        z = self.latents(z)
        return self.likelihood(self.decoder(z, self.condition(y, z.shape[0])))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 1, eps: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """Per-example terms with k reparameterized posterior samples; ``eps`` [k, B, latent_dim]: the
        standard-normal noise the posterior maps to z (drawn from torch's generator when None);
        ``target``: the data log p(x|z) scores when it is not the encoder's input x (the clean batch of
        the denoising criterion, which encodes a corrupted x)."""
        b = x.shape[0]
        c = self.condition(y, b)
        h = self.encoder(x, c)
        q = self.posterior(h)
        z, log_qz = self.posterior.sample(q, h, k, eps)  # log_qz None: q.log_prob(z), when needed
        ck = None if c is None else c.repeat(k, 1)
        px = self.likelihood(self.decoder(z.reshape(k * b, -1), ck))
        log_px_z = log_prob_repeated(px, x if target is None else target, k)
        if self.analytic_kl_dims:
            kl_dims = kl_diag_gaussian_standard_normal(q.loc, q.scale)
            return Output(log_px_z, log_qz, None, kl_dims.sum(-1), kl_dims, z, q=q, prior=self.prior)
        log_qz = q.log_prob(z) if log_qz is None else log_qz
        log_pz = self.prior.log_prob(z)
        return Output(log_px_z, log_qz, log_pz, (log_qz - log_pz).mean(0), None, z, q=q, prior=self.prior)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """ELBO per example in nats, [B] (analytic KL where it exists)."""
        return self(self.batch(x), y).elbo

    @torch.no_grad()
    def log_likelihood(
        self, x: torch.Tensor, k: int = 1000, y: torch.Tensor | None = None, chunk: int = 500
    ) -> torch.Tensor:
        """Importance-sampled log p(x) per example in nats, [B], from k samples drawn ``chunk`` at a time
        and as many examples per call as fill the evaluation's row budget, so memory stays bounded for
        any B (``vaekit.models.importance``); the seed comes from torch's global generator."""
        x = self.batch(x)
        seed = int(torch.randint(0, 2**62, ()))
        return importance_sample(self, x, y, k, None, chunk, seed).log_px.float()

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
        self, x: torch.Tensor, observed: torch.Tensor, y: torch.Tensor | None = None, k: int | None = None,
        rounds: int | None = None, method: str = DEFAULT_METHOD,
    ) -> torch.Tensor:
        """x with its unobserved entries (``observed`` False) filled in from p(x_missing | x_observed) by
        ``method`` (importance | mwg | pseudo-gibbs); see ``vaekit.models.completion.complete``."""
        observed = as_tensor(observed, "observed")
        x = as_tensor(x, "x")
        if x.is_floating_point():  # the missing entries may hold NaN: they are never read
            try:
                x = x.masked_fill(~observed.to(x.device).bool().broadcast_to(x.shape), 0.0)
            except RuntimeError:  # a mask that does not fit x: complete() names the mismatch
                pass
        return complete(self, self.batch(x), observed, y, k, rounds, method)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of p(x | z = E_q[z]) for each example."""
        return self.decode(self.encode(x, y).mean, y).mean


__all__ = ["VAE"]
