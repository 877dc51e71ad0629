"""Latent diagnostics: which units a model uses (active units) and how much KL each dimension carries."""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.models.importance import model_device

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2015: unit i is active when Cov_x(E_q[z_i|x]) > 0.01

KL_PER_DIM_UNDEFINED = (
    "the model gives no per-dimension KL (Output.kl_dims): the KL splits over latent dimensions only when "
    "q(z|x) and p(z) both factorize over them (diagonal Gaussian posterior, standard-normal prior); with "
    "a mixture or VampPrior prior or a flow posterior, log q(z|x) - log p(z) has no per-dimension parts, "
    "so no Monte-Carlo per-dimension estimate exists either"
)
MEAN_UNDEFINED = "the model has no encode(x) whose .mean is one row of latent means per example"


@torch.no_grad()
def posterior_means(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000
) -> torch.Tensor | None:
    """E_q[z|x] as the model defines it (``model.encode(x, y).mean``), float64 [N, d]; None when the
    model has no such mean."""
    device = model_device(model)
    rows = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(device)
        yb = None if y is None else y[i : i + batch_size].to(device)
        try:
            mean = model.encode(xb, yb).mean
        except (AttributeError, NotImplementedError):
            return None
        if not isinstance(mean, torch.Tensor) or mean.shape[:1] != xb.shape[:1] or mean.dim() != 2:
            return None
        rows.append(mean.double().cpu())
    return torch.cat(rows)


@torch.no_grad()
def dimension_activity(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 500, seed: int = 0
) -> tuple[torch.Tensor, str] | None:
    """How much each latent dimension is used, float64 [d], and which statistic it is: ``"kl"``, the
    mean KL(q(z_i|x) || p(z_i)) in nats where the model gives it (``Output.kl_dims``), else
    ``"variance"``, Var_x E_q[z_i|x] (the active-units statistic); None when the model gives neither.
    Seeded: a model whose KL parts depend on its posterior draws (hierarchical layers) gives the same
    numbers for the same seed."""
    device = model_device(model)
    kls = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, x.shape[0], batch_size):
            yb = None if y is None else y[i : i + batch_size].to(device)
            part = model(x[i : i + batch_size].to(device), yb).kl_dims
            if part is None:
                break
            kls.append(part.double().cpu())
        else:
            if kls:
                return torch.cat(kls).mean(0), "kl"
    means = posterior_means(model, x, y, batch_size)
    return None if means is None else (active_units(means)[1], "variance")


def active_units(means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, torch.Tensor]:
    """(number of units with Var_x(E_q[z_i|x]) > threshold, the variances [d]); variance over the
    examples with 1/N."""
    var = means.double().var(0, unbiased=False)
    return int((var > threshold).sum()), var


__all__ = ["ACTIVE_THRESHOLD", "active_units", "dimension_activity", "posterior_means"]
