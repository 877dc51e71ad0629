"""Penalties added to another objective's loss: the total correlation of the aggregate posterior
(beta-TCVAE, Chen et al. 2018) and the MMD between the aggregate posterior and the prior (InfoVAE,
Zhao et al. 2019; WAE, Tolstikhin et al. 2018). Each is a 0-d batch estimate, logged as ``tc`` / ``mmd``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.distributions import Normal

from vaekit.errors import ConfigError
from vaekit.parts.objectives.base import Objective, describe_posterior
from vaekit.parts.output import Output

if TYPE_CHECKING:
    from vaekit.config import ObjectiveConfig


def total_correlation(
    z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, dataset_size: int
) -> torch.Tensor:
    """Minibatch estimate of TC = KL(q(z) || prod_j q(z_j)) = E_q[log q(z) - sum_j log q(z_j)] for the
    aggregate posterior q(z) = (1/N) sum_n q(z|x_n) of a diagonal Gaussian q (Chen et al. 2018).

    z [M, d] has row i drawn from q(z|x_i) = N(loc_i, scale_i^2). Minibatch weighted sampling:
    q(z_i) ~= sum_j w_ij q(z_i|x_j) with w_ii = 1/N and w_ij = (N-1)/(N(M-1)) otherwise, the weights
    that make the sum unbiased for q(z_i) when the batch is drawn without replacement from N
    examples (exact when M = N); the same for each marginal q(z_ij). The authors' code uses
    w = 1/(NM) throughout, which offsets the estimate (by about (d - 1) log N when N >> M); these
    weights keep a factorized aggregate at TC ~= 0.
    """
    m = z.shape[0]
    if m < 2 or dataset_size < m:
        raise ValueError(f"the TC estimate needs 2 <= batch size <= dataset size (got {m}, {dataset_size})")
    n = dataset_size
    other = math.log(n - 1) - math.log(n * (m - 1))
    log_w = torch.full((m, m), other, dtype=z.dtype, device=z.device)
    log_w.fill_diagonal_(-math.log(n))
    # log q(z_ij | x_k) for every pair (i, k) and dimension j: [M, M, d]
    log_q = Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(z.unsqueeze(1))
    log_qz = torch.logsumexp(log_q.sum(-1) + log_w, dim=1)
    log_marginals = torch.logsumexp(log_q + log_w.unsqueeze(-1), dim=1).sum(-1)
    return (log_qz - log_marginals).mean()


MMD_KERNELS = ("rbf", "imq")


def kernel_matrix(x: torch.Tensor, y: torch.Tensor, kernel: str, scale: float) -> torch.Tensor:
    """k(x_i, y_j) [n, m]: rbf exp(-|x - y|^2 / c) or inverse multiquadric c / (c + |x - y|^2)."""
    d2 = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    if kernel == "rbf":
        return torch.exp(-d2 / scale)
    if kernel == "imq":
        return scale / (scale + d2)
    raise ConfigError(f"unknown MMD kernel {kernel!r}", "set objective.mmd_kernel to one of: rbf, imq")


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "imq", scale: float | None = None) -> torch.Tensor:
    """Unbiased U-statistic estimate of MMD^2(P, Q) from x [n, d] ~ P and y [m, d] ~ Q (Gretton et
    al. 2012): mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j).
    The kernel scale c defaults to 2 d (Tolstikhin et al. 2018 for a unit-variance prior)."""
    n, m = x.shape[0], y.shape[0]
    c = 2.0 * x.shape[-1] if scale is None else scale
    kxx = kernel_matrix(x, x, kernel, c)
    kyy = kernel_matrix(y, y, kernel, c)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * kernel_matrix(x, y, kernel, c).mean()


class TotalCorrelation:
    """The batch's TC estimate from the first posterior sample and q's Gaussian parameters (0 for a
    batch of one example, which says nothing about the aggregate)."""

    name = "tc"

    def __init__(self, model: torch.nn.Module, dataset_size: int) -> None:
        if not getattr(model, "diagonal_posterior", False):
            raise ConfigError(
                "objective.tc_weight estimates the total correlation from the per-dimension densities "
                f"q(z_j|x) of a diagonal Gaussian posterior; {describe_posterior(model)} does not "
                "factorize over dimensions",
                "use model.name=vae and model.posterior=gaussian with the TC penalty, or "
                "objective.tc_weight=0",
            )
        self.dataset_size = dataset_size

    def __call__(self, out: Output) -> torch.Tensor:
        if out.z.shape[1] < 2:
            return out.z.new_zeros(())
        return total_correlation(out.z[0], out.q.loc, out.q.scale, self.dataset_size)


class PriorMMD:
    """MMD^2 between the batch's aggregate posterior (first sample per example) and as many prior
    draws (0 for a batch of one example)."""

    name = "mmd"

    def __init__(self, model: torch.nn.Module, kernel: str) -> None:
        self.prior, self.kernel = model.prior, kernel

    def __call__(self, out: Output) -> torch.Tensor:
        if out.z.shape[1] < 2:
            return out.z.new_zeros(())
        with torch.no_grad():  # the prior is the target here, not something to move
            target = self.prior.sample(out.z.shape[1])
        return mmd(out.z[0], target, self.kernel)


class Penalized(Objective):
    """``base``'s loss plus weight * penalty for each (weight, penalty); base's terms plus each
    penalty's value under its name. Base's own terms (its ELBO) stay the plain ones."""

    def __init__(self, base: Objective, penalties: list[tuple[float, TotalCorrelation | PriorMMD]]) -> None:
        self.base, self.penalties = base, penalties
        self.samples, self.steady_from = base.samples, base.steady_from

    def __call__(self, out: Output, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, terms = self.base(out, step)
        for weight, penalty in self.penalties:
            value = penalty(out)
            loss = loss + weight * value
            terms[penalty.name] = value.detach()
        return loss, terms


def with_penalties(
    objective: Objective, cfg: ObjectiveConfig, model: torch.nn.Module, dataset_size: int
) -> Objective:
    """``objective`` plus tc_weight * TC and mmd_weight * MMD(q(z), p(z)) when those weights are set."""
    if cfg.mmd_kernel not in MMD_KERNELS:  # refused also while the MMD is off
        raise ConfigError(
            f"unknown objective.mmd_kernel {cfg.mmd_kernel!r}", "set it to one of: " + ", ".join(MMD_KERNELS)
        )
    penalties: list[tuple[float, TotalCorrelation | PriorMMD]] = []
    if cfg.tc_weight:
        penalties.append((cfg.tc_weight, TotalCorrelation(model, dataset_size)))
    if cfg.mmd_weight:
        penalties.append((cfg.mmd_weight, PriorMMD(model, cfg.mmd_kernel)))
    return Penalized(objective, penalties) if penalties else objective


__all__ = [
    "MMD_KERNELS", "Penalized", "PriorMMD", "TotalCorrelation", "kernel_matrix", "mmd", "total_correlation",
    "with_penalties",
]
