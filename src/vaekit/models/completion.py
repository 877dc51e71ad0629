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


# the methods and their default budget: (k, rounds) = (draws per round, rounds) for importance sampling,
# (parallel chains, steps per chain) for the Gibbs samplers; k * rounds decoder rows per example either way
METHODS = {"importance": (500, 3), "mwg": (20, 75), "pseudo-gibbs": (20, 75)}
DEFAULT_METHOD = "importance"


@torch.no_grad()
def complete(
    model: nn.Module,
    x: torch.Tensor,
    observed: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int | None = None,
    rounds: int | None = None,
    method: str = DEFAULT_METHOD,
    draw: bool = False,
) -> torch.Tensor:
    """x [B, *event] with entries where ``observed`` (broadcastable bool/0-1 mask) is False replaced by an
    estimate of E[x_mis | x_obs] under the model, or with ``draw`` (Gibbs methods) by one draw
    x_mis ~ p(x_mis | x_obs) per example: the last state of one chain of ``rounds`` steps (conditional
    sampling, e.g. table rows given some of their columns). ``method``:

    - ``importance``: sum_s w_s E[x_mis | z_s], z_s ~ q(z | x_fill), self-normalized importance weights
      w_s ∝ p(x_obs | z_s) p(z_s) / q(z_s | x_fill); x_fill starts with the missing entries at 0 and
      becomes the completion after each of ``rounds`` rounds of ``k`` draws (a proposal closer to
      p(z | x_obs)).
    - ``mwg``: Metropolis-within-Gibbs (Mattei & Frellsen 2018), ``k`` chains of ``rounds`` steps on
      (z, x_mis): propose z' ~ q(z | x_obs, x_mis), accept with probability
      min(1, p(z') p(x | z') q(z | x) / (p(z) p(x | z) q(z' | x))) (x = current completion), then draw
      x_mis ~ p(x_mis | z). Its stationary law is exactly p(z, x_mis | x_obs); the estimate averages
      E[x_mis | z] over the second half of every chain. Needs q(z|x)'s density at any z (not IAF).
    - ``pseudo-gibbs``: the same chain accepting every proposal (Rezende et al. 2014); it converges to
      p(x_mis | x_obs) only as q approaches the true posterior.

    ``k`` / ``rounds`` default to METHODS[method]. Works with every factorized likelihood and model kind
    (any posterior for importance sampling and pseudo-Gibbs, hierarchical too); with the discretized
    logistic mixture the filled-in entries are rounded to the data's grid. Observed entries are returned
    unchanged. The chains draw from torch's global generator.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown completion method {method!r}", f"use one of: {', '.join(METHODS)}")
    if draw and method == "importance":
        raise ConfigError("drawing completions needs a Gibbs chain", "use method mwg or pseudo-gibbs")
    k = 1 if draw else METHODS[method][0] if k is None else k
    rounds = METHODS[method][1] if rounds is None else rounds
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
    rows_per_example = k if method == "importance" else 2 * k
    per = max(1, _PAIRS_PER_CHUNK // rows_per_example)
    parts = []
    for i in range(0, x.shape[0], per):
        yb = None if y is None else y[i : i + per]
        xb, mb = x[i : i + per], mask[i : i + per]
        if method == "importance":
            parts.append(_complete_batch(model, xb, mb, yb, k, rounds))
        else:
            parts.append(_gibbs_batch(model, xb, mb, yb, k, rounds, metropolis=method == "mwg",
                                      last=draw))
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


def _gibbs_batch(
    model: nn.Module, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None, chains: int, steps: int,
    metropolis: bool, last: bool = False,
) -> torch.Tensor:
    """``chains`` chains per example on (z, x_mis), ``steps`` steps each; the mean of E[x_mis | z] over the
    second half of the steps (``last``: the chains' last state instead). Rows are chain-major (row
    c * B + b); with ``metropolis`` the current and
    proposed z are decoded in one call of 2 * chains * B rows."""
    n = chains * x.shape[0]
    yc = None if y is None else y.repeat(chains)
    y2 = None if yc is None else yc.repeat(2)
    xc = x.expand(chains, *x.shape).reshape(n, *x.shape[1:])
    mc = mask.expand(chains, *mask.shape).reshape(n, *mask.shape[1:])
    fill = xc * mc
    z: torch.Tensor | None = None  # the chains' current latents
    total, kept = torch.zeros_like(xc), 0
    for step in range(steps):
        q = model.encode(fill, yc)
        proposal, log_q_new = (t[0] for t in _posterior_draws(q, 1))
        if z is None or not metropolis:  # pseudo-Gibbs, and every chain's start: accept the proposal
            px = model.decode(proposal, yc)
            z, mean, draw = proposal, px.mean, px.sample()
        else:
            px = model.decode(torch.cat([proposal, z]), y2)
            log_px = px.log_prob(torch.cat([fill, fill]))
            log_new = model.prior.log_prob(proposal) + log_px[:n] - log_q_new
            log_cur = model.prior.log_prob(z) + log_px[n:] - _density(q, z)
            accept = torch.rand(n, device=x.device).log() < log_new - log_cur
            keep = accept.view(n, *[1] * (x.dim() - 1))
            means, draws = px.mean, px.sample()
            z = torch.where(accept[:, None], proposal, z)
            mean = torch.where(keep, means[:n], means[n:])
            draw = torch.where(keep, draws[:n], draws[n:])
        fill = xc * mc + draw * (1 - mc)
        if step >= steps // 2:
            total += mean
            kept += 1
    if last:
        return fill
    estimate = (total / kept).view(chains, *x.shape).mean(0)
    return x * mask + to_grid(px, estimate) * (1 - mask)


def _density(q: Distribution, z: torch.Tensor) -> torch.Tensor:
    """log q(z|x) at given z (Metropolis-within-Gibbs's proposal density); a ConfigError when q has none."""
    try:
        return q.log_prob(z)
    except NotImplementedError:
        raise ConfigError(
            f"Metropolis-within-Gibbs needs the posterior's density at any z, which {type(q).__name__} "
            "(an inverse autoregressive flow) does not give",
            "use method importance or pseudo-gibbs with this model",
        ) from None


def _posterior_draws(q: Distribution, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z [k, B, d] ~ q(z|x) and log q(z|x) [k, B]; a flow posterior gives both in one pass."""
    if hasattr(q, "rsample_and_log_prob"):
        return q.rsample_and_log_prob(k)
    z = q.rsample((k,))
    return z, q.log_prob(z)


__all__ = ["DEFAULT_METHOD", "METHODS", "complete", "observed_log_prob", "per_dim_log_prob"]
