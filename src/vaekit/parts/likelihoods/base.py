"""The likelihood contract: a module mapping the decoder's output to p(x|z), a distribution whose
``log_prob(x)`` is summed over the event (nats per example)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Distribution

from vaekit.config import PartConfig
from vaekit.schema import DataSchema


class Likelihood(nn.Module):
    """Maps decoder output to p(x|z).

    ``head_shape(schema)`` is the shape of the decoder output one example needs (by default
    ``params_per_dim`` numbers per channel, on dim 1, at every position); ``build`` checks the
    likelihood fits the data. ``log_prob`` may read x in full (teacher forcing of an autoregressive
    likelihood), so a likelihood is not limited to independent dimensions."""

    Config = PartConfig
    params_per_dim: int = 1
    discrete: bool = False
    unit_interval: bool = False  # x must lie in [0, 1] (checked where users hand the model data)

    @classmethod
    def build(cls, cfg: PartConfig, schema: DataSchema) -> Likelihood:
        return cls()

    def head_shape(self, schema: DataSchema) -> tuple[int, ...]:
        shape = schema.event_shape
        return (shape[0] * self.params_per_dim, *shape[1:])

    def forward(self, params: torch.Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError
