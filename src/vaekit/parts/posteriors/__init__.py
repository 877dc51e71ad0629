"""Posterior families q(z|x): turn the encoder's output into a distribution and draw z with log q.

Contract: ``params_dim`` (how many numbers the encoder produces), ``forward(h) -> q``,
``sample(q, h, k) -> (z [k, B, d], log q(z|x) [k, B] or None)``, ``analytic_kl`` (closed-form KL to
N(0, I)), and ``gaussian(h)``: the diagonal-Gaussian part of q (what the VampPrior uses as its
components). One file per family, each registered as a ``posterior`` part.
"""

from __future__ import annotations

import torch.nn as nn

from vaekit import registry
from vaekit.config import PartConfig
from vaekit.parts.posteriors.gaussian import GaussianPosterior
from vaekit.parts.posteriors.iaf import FlowGaussian, IAFPosterior
from vaekit.schema import DataSchema


def build_posterior(cfg: PartConfig, schema: DataSchema, latent_dim: int) -> nn.Module:
    """The posterior ``cfg.name`` names over a ``latent_dim``-dimensional z."""
    return registry.lookup("posterior", cfg.name).build(cfg, schema, latent_dim=latent_dim)


__all__ = ["FlowGaussian", "GaussianPosterior", "IAFPosterior", "build_posterior"]
