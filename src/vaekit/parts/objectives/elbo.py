"""The ELBO objective with a KL weight beta (beta-VAE), linear KL warm-up and free bits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from vaekit.errors import ConfigError
from vaekit.parts.objectives.base import Objective, describe_posterior
from vaekit.parts.output import Output
from vaekit.registry import register

if TYPE_CHECKING:
    from vaekit.config import ObjectiveConfig


def kl_weight(step: int, warmup_steps: int, beta: float = 1.0) -> float:
    """Linear KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): 0 -> beta over warmup_steps."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def elbo_loss(out: Output, beta: float = 1.0, free_bits: float = 0.0) -> torch.Tensor:
    """-(E_q log p(x|z) - beta * KL), a batch mean. With free bits (Kingma et al. 2016) each latent
    dimension's (or group's, ``extras["kl_groups"]``) batch-mean KL below ``free_bits`` nats is not
    penalized: KL_fb = sum_i max(free_bits, KL_i)."""
    recon = -out.log_px_z.mean()  # the batch mean of -E_q log p(x|z) (k samples each)
    if free_bits > 0:
        if out.kl_dims is None:
            raise ValueError("free bits needs a per-dimension KL (analytic-KL posterior and prior)")
        groups = out.extras.get("kl_groups", out.kl_dims)
        penalty = torch.clamp(groups.mean(0), min=free_bits).sum()
    else:
        penalty = out.kl.mean()
    return recon + (penalty if beta == 1 else beta * penalty)


def elbo_terms(out: Output) -> dict[str, torch.Tensor]:
    """The plain ELBO's parts per example [B], detached: elbo, recon = -E_q log p(x|z), kl; and
    kl_layer<i> (top layer first) when the model gives ``extras["kl_layers"]``. A few small kernels a
    step: one sample's mean over k is a view, and detached inputs need no ``no_grad``."""
    log_px_z = out.log_px_z.detach()
    log_px_z = log_px_z[0] if log_px_z.shape[0] == 1 else log_px_z.mean(0)
    kl = out.kl.detach()
    terms = {"elbo": log_px_z - kl, "recon": -log_px_z, "kl": kl}
    layers = out.extras.get("kl_layers")
    if layers is not None:
        terms |= {f"kl_layer{i + 1}": layer for i, layer in enumerate(layers.detach().unbind(-1))}
    return terms


@register("objective", "elbo")
class ELBO(Objective):
    """Maximize E_q log p(x|z) - w(step) KL(q(z|x) || p(z)), w warming up linearly to beta over
    ``warmup_epochs``; with ``free_bits`` the KL is floored per dimension (or group)."""

    def __init__(self, cfg: ObjectiveConfig, model: torch.nn.Module, dataset_size: int,
                 steps_per_epoch: int) -> None:
        if cfg.free_bits and not getattr(model, "analytic_kl_dims", False):
            raise ConfigError(
                "objective.free_bits floors the per-dimension KL, which has a closed form only for a "
                f"diagonal Gaussian posterior with the standard normal prior (here: "
                f"{describe_posterior(model)} with the {type(model.prior).__name__} prior)",
                "set objective.free_bits=0, or use model.posterior=gaussian and model.prior=normal",
            )
        self.samples = cfg.samples
        self.beta, self.free_bits = cfg.beta, cfg.free_bits
        self.warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
        self.steady_from = self.warmup_steps  # the KL weight is beta from then on

    def __call__(self, out: Output, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = elbo_loss(out, kl_weight(step, self.warmup_steps, self.beta), self.free_bits)
        return loss, elbo_terms(out)


__all__ = ["ELBO", "elbo_loss", "elbo_terms", "kl_weight"]
