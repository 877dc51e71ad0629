"""Model structures, built from a ``ModelConfig`` and what the data looks like."""

from __future__ import annotations

from vaekit.config import ModelConfig
from vaekit.errors import ConfigError
from vaekit.models.hierarchical import HierarchicalVAE, build_hierarchical
from vaekit.models.vae import VAE
from vaekit.nets import build_nets
from vaekit.parts.distributions import build_likelihood
from vaekit.parts.posteriors import build_posterior
from vaekit.parts.priors import build_prior


def build_model(
    cfg: ModelConfig,
    event_shape: tuple[int, ...],
    levels: int | None,
    num_classes: int | None,
) -> VAE:
    """Assemble a VAE from the config's parts for data of the given shape."""
    if cfg.latent_dim < 1:
        raise ConfigError(f"model.latent_dim must be >= 1, got {cfg.latent_dim}", "set it to e.g. 16")
    if cfg.kind not in ("vae", "hierarchical"):
        raise ConfigError(f"unknown model kind {cfg.kind!r}", "set model.kind to one of: vae, hierarchical")
    if cfg.kind == "vae" and cfg.latent_dims:
        raise ConfigError(
            "model.latent_dims (units per stochastic layer) is only used by model.kind=hierarchical",
            "set model.kind=hierarchical, or drop model.latent_dims and use model.latent_dim",
        )
    if cfg.kind == "vae" and cfg.latent_channels:
        raise ConfigError(
            "model.latent_channels (latent maps below the vector layers) is only used by "
            "model.kind=hierarchical",
            "set model.kind=hierarchical, or drop model.latent_channels",
        )
    cond = 0
    if cfg.conditional:
        if not num_classes:
            raise ConfigError(
                "model.conditional is set but the data set has no labels",
                "use labelled data (npz with y_train, folder with class sub-folders) or unset it",
            )
        cond = num_classes
    likelihood = build_likelihood(
        cfg.likelihood,
        event_shape,
        levels,
        cfg.likelihood_scale,
        cfg.likelihood_sigma,
        cfg.mixture_components,
    )
    if cfg.kind == "hierarchical":
        return build_hierarchical(cfg, event_shape, likelihood, cond)
    if cfg.prior == "vamp" and cond:
        raise ConfigError(
            "the VampPrior is a mixture of q(z|u_k) over unlabelled pseudo-inputs u_k, but a conditional "
            "model's encoder also needs a label for each u_k",
            "use model.prior=mog (or normal) with model.conditional, or unset model.conditional",
        )
    posterior = build_posterior(
        cfg.posterior, cfg.latent_dim, cfg.flow_steps, cfg.flow_hidden, cfg.flow_context
    )
    encoder, decoder = build_nets(
        cfg.net,
        event_shape,
        cfg.latent_dim,
        posterior.params_dim,
        likelihood.params_per_dim,
        cfg.hidden,
        cfg.channels,
        cfg.activation,
        cond,
        cfg.res_blocks,
    )
    prior = build_prior(cfg.prior, cfg.latent_dim, cfg.prior_components, event_shape)
    return VAE(encoder, posterior, prior, decoder, likelihood, event_shape, cond)


__all__ = ["VAE", "HierarchicalVAE", "build_model"]
