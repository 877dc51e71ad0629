"""Objectives: pure functions from per-example log-densities to a loss (to minimize) and its parts.

All terms are in nats per example. With k posterior samples the tensors are [k, B].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Terms:
    """What a model's forward pass returns: per-sample, per-example log-densities.

    log_px_z, log_qz, log_pz: [k, B]; kl: [B] analytic KL(q||p) when it exists, else the
    Monte-Carlo estimate mean_k(log_qz - log_pz); kl_dims: [B, d] per-dimension analytic KL or None.
    """

    log_px_z: torch.Tensor
    log_qz: torch.Tensor
    log_pz: torch.Tensor
    kl: torch.Tensor
    kl_dims: torch.Tensor | None = None
    z: torch.Tensor | None = None

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
    """-(E_q log p(x|z) - beta * KL). With free bits (Kingma et al. 2016) each latent dimension's
    batch-mean KL below ``free_bits`` nats is not penalized: KL_fb = sum_i max(free_bits, KL_i)."""
    recon = -terms.log_px_z.mean(0)
    kl = terms.kl
    if free_bits > 0:
        if terms.kl_dims is None:
            raise ValueError("free bits needs a per-dimension KL (analytic-KL posterior and prior)")
        per_dim = terms.kl_dims.mean(0)
        penalty = torch.clamp(per_dim, min=free_bits).sum()
    else:
        penalty = kl.mean()
    loss = recon.mean() + beta * penalty
    return Loss(loss, recon.mean().detach(), kl.mean().detach(), terms.elbo.mean().detach())


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
