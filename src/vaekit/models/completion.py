"""Conditional completion: fill in the missing entries of x from a trained VAE's p(x_mis | x_obs),
e.g. the bottom half of a digit given its top half (a CVAE additionally given its label). Works on
any model with ``encode``, ``decode`` and ``prior`` (the VAE calls it from ``VAE.complete``)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent

from vaekit.errors import ConfigError, DataError

# examples x posterior samples handled at once
_PAIRS_PER_CHUNK = 50_000


def per_dim_log_prob(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log p(x_d | z) for every data dimension, x's shape: the terms a factorized likelihood sums.
    Bernoulli and Gaussian likelihoods are ``Independent`` wrappers of per-dimension distributions;
    the discretized logistic mixture has ``log_prob_per_dim``."""
    if isinstance(px, Independent):
        return px.base_dist.log_prob(x)
    if hasattr(px, "log_prob_per_dim"):
        return px.log_prob_per_dim(x)
    raise ConfigError(
        f"completion needs a likelihood that factorizes over data dimensions, with per-dimension "
        f"log-probabilities to sum over the observed entries; {type(px).__name__} has none",
        "use model.likelihood=bernoulli, gaussian or logistic-mixture for completion",
    )


def observed_log_prob(px: Distribution, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """log p(x_obs | z) per example: the likelihood's per-dimension terms summed where observed."""
    return (per_dim_log_prob(px, x) * observed).flatten(1).sum(-1)


def to_grid(px: Distribution, values: torch.Tensor) -> torch.Tensor:
    """Values rounded to the likelihood's data grid k/(levels-1) when it has one (the discretized
    logistic mixture), unchanged otherwise."""
    levels = getattr(px, "levels", None)
    if levels is None:
        return values
    return torch.round(values.clamp(0, 1) * (levels - 1)) / (levels - 1)


@torch.no_grad()
def complete(
    model: nn.Module,
    x: torch.Tensor,
    observed: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int = 500,
    rounds: int = 3,
) -> torch.Tensor:
    """x [B, *event] with entries where ``observed`` (broadcastable bool/0-1 mask) is False replaced by
    E[x_mis | x_obs] ~= sum_s w_s E[x_mis | z_s], z_s ~ q(z | x_fill), self-normalized importance
    weights w_s ∝ p(x_obs | z_s) p(z_s) / q(z_s | x_fill). x_fill starts with the missing entries at
    0 and becomes the completion after each of ``rounds`` rounds (a proposal closer to p(z | x_obs)).
    Works with every factorized likelihood and every model kind (any posterior, hierarchical too);
    with the discretized logistic mixture the filled-in entries are rounded to the data's grid."""
    if k < 1 or rounds < 1:
        raise ConfigError(
            f"completion needs k >= 1 posterior samples and rounds >= 1 (got k={k}, rounds={rounds})",
            "pass e.g. k=500, rounds=3",
        )
    try:
        mask = observed.to(device=x.device, dtype=x.dtype).expand_as(x)
    except RuntimeError:
        raise DataError(
            f"the mask of observed entries has shape {tuple(observed.shape)}, the data {tuple(x.shape)}",
            "give a mask of the data's shape (or one that broadcasts to it)",
        ) from None
    if y is not None:
        y = torch.as_tensor(y, device=x.device).expand(x.shape[0])
    per = max(1, _PAIRS_PER_CHUNK // k)
    parts = []
    for i in range(0, x.shape[0], per):
        yb = None if y is None else y[i : i + per]
        parts.append(_complete_batch(model, x[i : i + per], mask[i : i + per], yb, k, rounds))
    return torch.cat(parts)


def _complete_batch(
    model: nn.Module, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None, k: int, rounds: int
) -> torch.Tensor:
    b = x.shape[0]
    yk = None if y is None else y.repeat(k)
    xk = x.expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    mk = mask.expand(k, *mask.shape).reshape(k * b, *mask.shape[1:])
    fill = x * mask
    for _ in range(rounds):
        z, log_q = _posterior_draws(model.encode(fill, y), k)
        px = model.decode(z.reshape(k * b, -1), yk)
        log_w = observed_log_prob(px, xk, mk).view(k, b) + model.prior.log_prob(z) - log_q
        w = torch.softmax(log_w, dim=0).view(k, b, *[1] * (x.dim() - 1))
        mean = to_grid(px, (w * px.mean.view(k, *x.shape)).sum(0))
        fill = x * mask + mean * (1 - mask)
    return fill


def _posterior_draws(q: Distribution, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z [k, B, d] ~ q(z|x) and log q(z|x) [k, B]; a flow posterior gives both in one pass."""
    if hasattr(q, "rsample_and_log_prob"):
        return q.rsample_and_log_prob(k)
    z = q.rsample((k,))
    return z, q.log_prob(z)


__all__ = ["complete", "observed_log_prob", "per_dim_log_prob"]
