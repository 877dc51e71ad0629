"""The importance-weighted bound (IWAE, Burda et al. 2015) as a training objective."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from vaekit.errors import ConfigError
from vaekit.parts.objectives.base import Objective
from vaekit.parts.objectives.elbo import elbo_terms
from vaekit.parts.output import Output
from vaekit.registry import register

if TYPE_CHECKING:
    from vaekit.config import ObjectiveConfig


def iwae_bound(out: Output) -> torch.Tensor:
    """IWAE bound per example: logsumexp_k log w_k - log k, [B]."""
    lw = out.log_weights()
    return torch.logsumexp(lw, dim=0) - math.log(lw.shape[0])


@register("objective", "iwae")
class IWAE(Objective):
    """Maximize the k-sample IWAE bound (k = objective.samples); logs the bound as ``iwae`` and the
    single-sample ELBO's parts (elbo, recon, kl) of the same draws."""

    def __init__(self, cfg: ObjectiveConfig, model: torch.nn.Module, dataset_size: int,
                 steps_per_epoch: int) -> None:
        if cfg.beta != 1 or cfg.free_bits or cfg.warmup_epochs:
            raise ConfigError(
                "objective.beta, free_bits and warmup_epochs weight the KL term of the ELBO; the IWAE "
                "bound has no separate KL term",
                "use objective.name=elbo with them, or leave them at 1, 0 and 0 with iwae",
            )
        self.samples = cfg.samples
        self.steady_from = 0

    def __call__(self, out: Output, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bound = iwae_bound(out)
        return -bound.mean(), {"iwae": bound.detach(), **elbo_terms(out)}


__all__ = ["IWAE", "iwae_bound"]
