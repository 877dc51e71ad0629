"""The numbers a paper reports for a model on a split, from one set of K importance samples:
ELBO and its parts, -log p(x), bits/dim, IWAE bounds, active units and KL per dimension."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn as nn

from vaekit.errors import DataError
from vaekit.evaluation.diagnostics import (
    ACTIVE_THRESHOLD,
    KL_PER_DIM_UNDEFINED,
    MEAN_UNDEFINED,
    active_units,
    posterior_means,
)
from vaekit.evaluation.likelihood import importance_sample
from vaekit.parts.likelihoods import BernoulliLikelihood


def bits_per_dim(nll: float, dims: int, discrete: bool, levels: int | None) -> float | None:
    """Bits per dimension of an NLL in nats per example over ``dims`` dimensions.

    Discrete likelihood: nll / (D ln 2). Continuous density on data with ``levels`` values scaled to
    [0, 1] (vaekit stores v / (levels - 1)): each value stands for a bin of width 1 / (levels - 1), so
    P(v) ~= p(x) (levels - 1)^-D and bpd = (nll + D ln(levels - 1)) / (D ln 2). Continuous data: None.
    """
    if discrete:
        return nll / (dims * math.log(2))
    if levels is None or levels < 2:
        return None
    return (nll + dims * math.log(levels - 1)) / (dims * math.log(2))


def bpd_convention(discrete: bool, levels: int | None) -> str:
    """One sentence that says how ``bits_per_dim`` was computed (stored next to the number)."""
    if discrete:
        return "discrete likelihood: bpd = nll / (D ln 2)"
    if levels is None or levels < 2:
        return "not defined: continuous data has a density, not a probability per value"
    return (
        f"continuous likelihood on {levels}-level data scaled to [0, 1]: bins of width 1/{levels - 1} "
        f"centred on the values, P(x) ~= p(x) / {levels - 1}^D, bpd = (nll + D ln {levels - 1}) / (D ln 2)"
    )


def likelihood_kind(model: nn.Module, x: torch.Tensor) -> bool | None:
    """True for a discrete likelihood evaluated on values it assigns probabilities to, False for a
    density, None when unknown or when a Bernoulli meets non-binary data (no probability then)."""
    lik = getattr(model, "likelihood", None)
    discrete = getattr(lik, "discrete", None)
    if isinstance(lik, BernoulliLikelihood) and not bool(((x == 0) | (x == 1)).all()):
        return None
    return discrete


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int = 1000,
    batch_size: int | None = None,
    sample_chunk: int | None = None,
    seed: int = 0,
    levels: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """All evaluation numbers in nats per example, averaged over the N examples of x.

    ``levels``: how many values a data dimension takes (2 for binarized data, 256 for 8-bit, None for
    continuous data), for bits/dim. ``elbo``, ``recon`` and ``kl`` use all K samples (analytic KL when
    the model has one); ``iwae_bounds[k]`` averages the K // k disjoint groups of k samples.
    """
    if x.shape[0] == 0:
        raise DataError("the split to evaluate has no examples", "evaluate a split that holds data")
    t0, c0 = time.perf_counter(), time.process_time()
    s = importance_sample(model, x, y, k, batch_size, sample_chunk, seed, progress)
    n = x.shape[0]
    dims = math.prod(x.shape[1:])
    nll = -float(s.log_px.mean())
    kind = likelihood_kind(model, x)
    notes: dict[str, str] = {}
    if kind is None:
        bpd, convention = None, "not defined: the likelihood gives no probability to these values"
    else:
        bpd, convention = bits_per_dim(nll, dims, kind, levels), bpd_convention(kind, levels)
    means = posterior_means(model, x, y)
    if means is None:
        count, variances = None, None
        notes["active_units"] = MEAN_UNDEFINED
    else:
        count, var = active_units(means)
        variances = var.tolist()
    if s.kl_dims is None:
        notes["kl_per_dim"] = KL_PER_DIM_UNDEFINED
    if not s.chunk_invariant:
        notes["chunk_invariant"] = (
            "the model's forward takes no eps (the posterior noise of the seed rule in "
            "vaekit.models.importance): it draws its own, so estimates are reproducible for these chunk "
            "sizes only"
        )
    recon, kl = float(s.recon.mean()), float(s.kl.mean())
    return {
        "elbo": -(recon + kl),
        "recon": recon,
        "kl": kl,
        "nll": nll,
        "nll_sem": float(s.log_px.std()) / math.sqrt(n) if n > 1 else 0.0,
        "bpd": bpd,
        "bpd_convention": convention,
        "iwae_bounds": {str(j): float(v.mean()) for j, v in s.bounds.items()},
        "active_units": count,
        "active_threshold": ACTIVE_THRESHOLD,
        "posterior_mean_variance": variances,
        "kl_per_dim": None if s.kl_dims is None else s.kl_dims.mean(0).tolist(),
        "kl_layers": None if s.kl_layers is None else s.kl_layers.mean(0).tolist(),
        "K": k,
        "seed": seed,
        "n": n,
        "chunk_invariant": s.chunk_invariant,
        "wall_seconds": time.perf_counter() - t0,  # elapsed time
        "cpu_seconds": time.process_time() - c0,  # CPU time of this process, all threads
        "notes": notes,
    }


__all__ = ["bits_per_dim", "bpd_convention", "evaluate_model", "likelihood_kind"]
