"""p(x|z) = prod_d N(x_d; mu_d, sigma^2) for continuous data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, Normal

from vaekit.config import PartConfig, require
from vaekit.errors import ConfigError
from vaekit.parts.likelihoods.base import Likelihood
from vaekit.registry import register
from vaekit.schema import DataSchema

SCALES = ("fixed", "global", "per-pixel")


@register("likelihood", "gaussian")
class GaussianLikelihood(Likelihood):
    """sigma fixed, one learned global value, or one learned value per data dimension."""

    @dataclass
    class Config(PartConfig):
        scale: str = "global"  # fixed | global | per-pixel: how sigma is set (per-pixel: one per dimension)
        sigma: float = 0.1  # the fixed or initial standard deviation

        def __post_init__(self) -> None:
            require("model.likelihood.sigma", self.sigma, self.sigma > 0, "> 0")
            if self.scale not in SCALES:
                raise ConfigError(f"unknown Gaussian scale {self.scale!r}",
                                  "set model.likelihood.scale to one of: " + ", ".join(SCALES))

    @classmethod
    def build(cls, cfg: Config, schema: DataSchema) -> GaussianLikelihood:
        return cls(schema.event_shape, cfg.scale, cfg.sigma)

    def __init__(self, event_shape: tuple[int, ...], scale: str = "global", sigma: float = 0.1) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ConfigError(f"unknown Gaussian scale {scale!r}",
                              "set model.likelihood.scale to one of: " + ", ".join(SCALES))
        self.scale_mode = scale
        log_sigma = torch.tensor(math.log(sigma))
        if scale == "fixed":
            self.register_buffer("log_sigma", log_sigma)
        elif scale == "global":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.log_sigma = nn.Parameter(torch.full(event_shape, math.log(sigma)))

    def forward(self, params: torch.Tensor) -> Distribution:
        sigma = self.log_sigma.clamp(min=-9.0).exp().expand_as(params)
        return Independent(Normal(params, sigma, validate_args=False), params.dim() - 1)
