"""Objectives: what training minimizes, and the named terms it logs.

The contract (what a plugin objective implements):

- Register a factory: ``@register("objective", "name")`` on a class (or function) called once per
  training session as ``factory(cfg, model, dataset_size, steps_per_epoch)``: ``cfg`` the run's
  ``ObjectiveConfig`` (``objective.name`` selects the factory), ``model`` the built model (ask it
  for capabilities, e.g. ``model.analytic_kl_dims``, ``model.diagonal_posterior``, and raise a
  ConfigError for a combination that cannot work), ``dataset_size`` the training examples.
- The object it returns has ``samples`` (posterior draws per example, k) and is called as
  ``objective(output, step) -> (loss, terms)``: ``output`` the model's forward ``Output``
  (``vaekit.parts.output``), ``loss`` a scalar to minimize, ``terms`` a dict of named detached
  tensors, each per example [B] or a 0-d batch estimate. Subclassing ``Objective`` is optional.
- Optional ``steady_from``: the step from which the call no longer depends on ``step`` (the ELBO's
  warm-up length, 0 for IWAE); without it a run never replays its step as one CUDA graph (train.graph).
- The trainer sums, logs (metrics.jsonl ``train_<name>``, the progress bar, TensorBoard) and plots
  every term it gets; ``loss`` and ``time_s`` are its own names. tc_weight / mmd_weight add their
  penalties (terms ``tc``, ``mmd``) to any objective; objective.denoise makes any objective denoising
  (``Denoising``: its ``noise`` corrupts the encoder's input, the likelihood scores the clean batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from vaekit.data.corruption import parse_noise
from vaekit.parts.objectives.base import Objective
from vaekit.parts.objectives.denoise import Denoising
from vaekit.parts.objectives.elbo import ELBO, elbo_loss, elbo_terms, kl_weight
from vaekit.parts.objectives.iwae import IWAE, iwae_bound
from vaekit.parts.objectives.penalties import mmd, total_correlation, with_penalties
from vaekit.registry import lookup

if TYPE_CHECKING:
    from vaekit.config import ObjectiveConfig


def build_objective(
    cfg: ObjectiveConfig, model: torch.nn.Module, dataset_size: int, steps_per_epoch: int
) -> Objective:
    """The configured objective for ``model`` (its checks run here), with the configured penalties, and
    denoising when ``objective.denoise`` names a noise."""
    noise = None if cfg.denoise == "none" else parse_noise(cfg.denoise)  # a bad spec: refused first
    objective = lookup("objective", cfg.name)(cfg, model, dataset_size, steps_per_epoch)
    objective = with_penalties(objective, cfg, model, dataset_size)
    return objective if noise is None else Denoising(objective, noise)


__all__ = [
    "ELBO", "IWAE", "Denoising", "Objective", "build_objective", "elbo_loss", "elbo_terms", "iwae_bound",
    "kl_weight", "mmd", "total_correlation",
]
