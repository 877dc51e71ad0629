"""Objectives: pure functions from per-example log-densities to a loss (to minimize) and its parts.

All terms are in nats per example. With k posterior samples the tensors are [k, B].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution, Normal

from vaekit.errors import ConfigError

if TYPE_CHECKING:
    from vaekit.config import ObjectiveConfig, PartConfig


class Terms:
    """What a model's forward pass returns: per-sample, per-example log-densities.

    log_px_z, log_qz, log_pz: [k, B]; kl: [B] analytic KL(q||p) when it exists, else the
    Monte-Carlo estimate mean_k(log_qz - log_pz); kl_dims: [B, d] per-dimension analytic KL or None;
    kl_layers: [B, L] KL per stochastic layer of a hierarchical model (sums to kl), else None;
    kl_groups: [B, G] the KL of the groups free bits floors when they are not the single dimensions
    (a latent channel over all its positions for a map layer), else None;
    z: the samples [k, B, d]; q: the posterior q(z|x) they came from (the TC penalty reads its
    per-dimension Gaussian parameters), or None; prior: the prior p(z).

    ``log_qz`` / ``log_pz`` given as None are computed on first use as q.log_prob(z) and
    prior.log_prob(z): the ELBO with an analytic KL never needs them, and skipping them is a tenth of
    the small operations of a CPU training step.
    """

    def __init__(
        self,
        log_px_z: torch.Tensor,
        log_qz: torch.Tensor | None,
        log_pz: torch.Tensor | None,
        kl: torch.Tensor,
        kl_dims: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        kl_layers: torch.Tensor | None = None,
        q: Distribution | None = None,
        prior: torch.nn.Module | None = None,
        kl_groups: torch.Tensor | None = None,
    ) -> None:
        if (log_qz is None and (q is None or z is None)) or (log_pz is None and (prior is None or z is None)):
            raise ValueError("Terms needs log_qz (or q and z) and log_pz (or the prior and z)")
        self.log_px_z, self._log_qz, self._log_pz, self.kl = log_px_z, log_qz, log_pz, kl
        self.kl_dims, self.z, self.kl_layers, self.q, self.prior = kl_dims, z, kl_layers, q, prior
        self.kl_groups = kl_groups

    @property
    def log_qz(self) -> torch.Tensor:
        """log q(z_k|x), [k, B]."""
        if self._log_qz is None:
            self._log_qz = self.q.log_prob(self.z)
        return self._log_qz

    @property
    def log_pz(self) -> torch.Tensor:
        """log p(z_k), [k, B]."""
        if self._log_pz is None:
            self._log_pz = self.prior.log_prob(self.z)
        return self._log_pz

    @property
    def elbo(self) -> torch.Tensor:
        """ELBO per example, [B]: E_q log p(x|z) - KL."""
        return self.log_px_z.mean(0) - self.kl

    def log_weights(self) -> torch.Tensor:
        """Importance weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), [k, B]."""
        return self.log_px_z + self.log_pz - self.log_qz


@dataclass
class Loss:
    """A scalar loss to minimize and the parts to log (batch means, nats per example)."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor


def kl_weight(step: int, warmup_steps: int, beta: float = 1.0) -> float:
    """Linear KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): 0 -> beta over warmup_steps."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def elbo_loss(terms: Terms, beta: float = 1.0, free_bits: float = 0.0) -> Loss:
    """-(E_q log p(x|z) - beta * KL). With free bits (Kingma et al. 2016) each latent dimension's (or
    group's, ``Terms.kl_groups``) batch-mean KL below ``free_bits`` nats is not penalized:
    KL_fb = sum_i max(free_bits, KL_i)."""
    recon = -terms.log_px_z.mean()  # the batch mean of -E_q log p(x|z) (k samples each)
    kl = terms.kl.mean()
    if free_bits > 0:
        if terms.kl_dims is None:
            raise ValueError("free bits needs a per-dimension KL (analytic-KL posterior and prior)")
        groups = terms.kl_dims if terms.kl_groups is None else terms.kl_groups
        penalty = torch.clamp(groups.mean(0), min=free_bits).sum()
    else:
        penalty = kl
    loss = recon + (penalty if beta == 1 else beta * penalty)
    recon, kl = recon.detach(), kl.detach()
    return Loss(loss, recon, kl, -(recon + kl))


def iwae_bound(terms: Terms) -> torch.Tensor:
    """IWAE bound per example (Burda et al. 2015): logsumexp_k log w_k - log k, [B]."""
    lw = terms.log_weights()
    return torch.logsumexp(lw, dim=0) - math.log(lw.shape[0])


def iwae_loss(terms: Terms) -> Loss:
    """Maximize the k-sample IWAE bound; logged recon/KL are the single-sample ELBO parts."""
    bound = iwae_bound(terms)
    return Loss(
        -bound.mean(),
        (-terms.log_px_z.mean()).detach(),
        terms.kl.mean().detach(),
        bound.mean().detach(),
    )


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


def tc_penalty(terms: Terms, dataset_size: int) -> torch.Tensor:
    """The batch's TC estimate from the first posterior sample and q's Gaussian parameters
    (0 for a batch of one example, which says nothing about the aggregate)."""
    if terms.z.shape[1] < 2:
        return terms.z.new_zeros(())
    if terms.q is None or not hasattr(terms.q, "scale"):
        raise ConfigError(
            "the total-correlation penalty needs a diagonal Gaussian posterior",
            "use model.posterior=gaussian, or set objective.tc_weight=0",
        )
    return total_correlation(terms.z[0], terms.q.loc, terms.q.scale, dataset_size)


def mmd_penalty(terms: Terms, prior_samples: torch.Tensor, kernel: str) -> torch.Tensor:
    """MMD^2 between the batch's aggregate posterior (first sample per example) and prior draws
    (0 for a batch of one example)."""
    if terms.z.shape[1] < 2:
        return terms.z.new_zeros(())
    return mmd(terms.z[0], prior_samples, kernel)


def make_loss(
    terms: Terms,
    cfg: ObjectiveConfig,
    step: int,
    warmup_steps: int,
    dataset_size: int,
    model: torch.nn.Module,
) -> Loss:
    """The configured objective: the ELBO (beta, free bits, warm-up) or the IWAE bound, plus
    tc_weight * TC (beta-TCVAE) and mmd_weight * MMD(q(z), p(z)) (InfoVAE / WAE) when set.
    The logged ELBO stays the plain ELBO; only ``loss`` carries the penalties."""
    if cfg.name == "iwae":
        out = iwae_loss(terms)
    elif cfg.name == "elbo":
        out = elbo_loss(terms, kl_weight(step, warmup_steps, cfg.beta), cfg.free_bits)
    else:
        raise ConfigError(f"unknown objective {cfg.name!r}", "set objective.name to elbo or iwae")
    loss = out.loss
    if cfg.tc_weight:
        loss = loss + cfg.tc_weight * tc_penalty(terms, dataset_size)
    if cfg.mmd_weight:
        with torch.no_grad():  # the prior is the target here, not something to move
            target = model.prior.sample(terms.z.shape[1])
        loss = loss + cfg.mmd_weight * mmd_penalty(terms, target, cfg.mmd_kernel)
    return replace(out, loss=loss)


def check_objective(obj: ObjectiveConfig, model_cfg: PartConfig) -> None:
    """Refuse objective settings that make no sense with the configured parts, saying why (a model
    without a posterior or prior section, the hierarchical one, has its own Gaussian ones)."""
    posterior = getattr(getattr(model_cfg, "posterior", None), "name", "gaussian")
    prior = getattr(getattr(model_cfg, "prior", None), "name", "normal")
    if obj.name == "iwae" and (obj.beta != 1 or obj.free_bits or obj.warmup_epochs):
        raise ConfigError(
            "objective.beta, free_bits and warmup_epochs weight the KL term of the ELBO; the IWAE "
            "bound has no separate KL term",
            "use objective.name=elbo with them, or leave them at 1, 0 and 0 with iwae",
        )
    if obj.free_bits and (posterior != "gaussian" or prior != "normal"):
        raise ConfigError(
            "objective.free_bits floors the per-dimension KL, which has a closed form only for the "
            f"gaussian posterior with the normal prior (here: {posterior} posterior, {prior} prior)",
            "set objective.free_bits=0, or use model.posterior=gaussian and model.prior=normal",
        )
    if obj.tc_weight and (posterior != "gaussian" or model_cfg.name != "vae"):
        what = f"the {posterior} posterior" if model_cfg.name == "vae" else f"a {model_cfg.name} model"
        raise ConfigError(
            "objective.tc_weight estimates the total correlation from the per-dimension densities "
            f"q(z_j|x) of a diagonal Gaussian posterior; {what} does not factorize over dimensions",
            "use model.name=vae and model.posterior=gaussian with the TC penalty, or objective.tc_weight=0",
        )
    if obj.tc_weight < 0 or obj.mmd_weight < 0:
        raise ConfigError(
            f"objective.tc_weight and mmd_weight must be >= 0 (got {obj.tc_weight}, {obj.mmd_weight})",
            "a negative weight rewards dependence / mismatch; use 0 to turn a penalty off",
        )
    if obj.mmd_kernel not in MMD_KERNELS:
        raise ConfigError(
            f"unknown objective.mmd_kernel {obj.mmd_kernel!r}",
            "set it to one of: " + ", ".join(MMD_KERNELS),
        )
