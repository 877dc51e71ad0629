"""Discretized logistic mixture (PixelCNN++) for 8-bit or other k-level data."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from vaekit.config import PartConfig, require
from vaekit.errors import ConfigError
from vaekit.parts.distributions import DiscretizedLogisticMixture
from vaekit.parts.likelihoods.base import Likelihood
from vaekit.registry import register
from vaekit.schema import DataSchema


@register("likelihood", "logistic-mixture")
class LogisticMixtureLikelihood(Likelihood):
    """M components per dimension: 3M decoder outputs per channel (mixture logits, means, log-scales)."""

    discrete = True
    unit_interval = True

    @dataclass
    class Config(PartConfig):
        components: int = 5  # mixture components per dimension

        def __post_init__(self) -> None:
            require("model.likelihood.components", self.components, self.components >= 1, ">= 1")

    @classmethod
    def build(cls, cfg: Config, schema: DataSchema) -> LogisticMixtureLikelihood:
        if schema.levels is None:
            raise ConfigError(
                "the discretized logistic mixture needs discrete data (a known number of levels)",
                "use model.likelihood=gaussian for continuous data",
            )
        return cls(cfg.components, schema.levels)

    def __init__(self, components: int = 5, levels: int = 256) -> None:
        super().__init__()
        self.components = components
        self.levels = levels
        self.params_per_dim = 3 * components

    def forward(self, params: torch.Tensor) -> Distribution:
        # params: [B, 3M*C, ...] -> [B, C, ..., 3M]
        b, c3m = params.shape[:2]
        m = self.components
        p = params.reshape(b, 3 * m, c3m // (3 * m), *params.shape[2:]).movedim(1, -1)
        logits, means, log_scales = p.split(m, dim=-1)
        # means live in [0,1]: start them near the middle of the data range
        return DiscretizedLogisticMixture(
            logits, torch.sigmoid(means), log_scales, self.levels, event_dims=params.dim() - 1
        )
