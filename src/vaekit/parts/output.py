"""What a model's forward pass returns: per-sample, per-example log-densities and the KL, plus an open
dict of model-specific quantities. Objectives (``vaekit.parts.objectives``) and the evaluation read it.

All terms are in nats per example. With k posterior samples the tensors are [k, B].
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution


class Output:
    """A model's forward output.

    log_px_z, log_qz, log_pz: [k, B]; kl: [B] analytic KL(q||p) when it exists, else the Monte-Carlo
    estimate mean_k(log_qz - log_pz); kl_dims: [B, d] per-dimension analytic KL or None; z: the
    samples [k, B, d]; q: the posterior q(z|x) they came from (the TC penalty reads its per-dimension
    Gaussian parameters), or None; prior: the prior p(z).

    ``extras`` holds what only some models give, by name. The built-in models use
    ``kl_layers`` [B, L] (KL per stochastic layer of a hierarchical model, top first; sums to kl) and
    ``kl_groups`` [B, G] (the KL of the groups free bits floors when they are not the single
    dimensions: a latent channel over all its positions for a map layer).

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
        q: Distribution | None = None,
        prior: torch.nn.Module | None = None,
        extras: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if (log_qz is None and (q is None or z is None)) or (log_pz is None and (prior is None or z is None)):
            raise ValueError("Output needs log_qz (or q and z) and log_pz (or the prior and z)")
        self.log_px_z, self._log_qz, self._log_pz, self.kl = log_px_z, log_qz, log_pz, kl
        self.kl_dims, self.z, self.q, self.prior = kl_dims, z, q, prior
        self.extras: dict[str, torch.Tensor] = {} if extras is None else extras

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


__all__ = ["Output"]
