"""A per-column categorical likelihood for tables of categorical columns: one softmax head per
column, sized from the schema's categories, the columns' log-probabilities summed per row."""

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from vaekit.errors import ConfigError
from vaekit.parts.likelihoods import Likelihood
from vaekit.registry import register


class Columns(Distribution):
    """Independent categoricals over the columns of x [B, sum K_d]: one one-hot block per column."""

    arg_constraints: dict = {}
    support = constraints.real

    def __init__(self, logits: torch.Tensor, sizes: list[int]) -> None:
        self.parts, self.sizes = logits.split(sizes, dim=-1), sizes
        super().__init__(logits.shape[:-1], torch.Size([len(sizes)]), validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.split(self.sizes, dim=-1)
        return sum((F.log_softmax(p, -1) * b).sum(-1) for p, b in zip(self.parts, blocks, strict=True))

    @property
    def mean(self) -> torch.Tensor:  # each column's category probabilities
        return torch.cat([p.softmax(-1) for p in self.parts], -1)

    def sample(self, sample_shape=()) -> torch.Tensor:
        draws = [F.one_hot(torch.distributions.Categorical(logits=p).sample(sample_shape), p.shape[-1])
                 for p in self.parts]
        return torch.cat(draws, -1).float()


@register("likelihood", "columns")
class ColumnLikelihood(Likelihood):
    discrete = True

    @classmethod
    def build(cls, cfg, schema):
        if schema.kind != "table" or not schema.columns or not all(c.discrete for c in schema.columns):
            raise ConfigError("the columns likelihood needs a table whose columns are all categorical",
                              "use a table data source that describes its columns")
        return cls([len(c.categories) for c in schema.columns])

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = sizes

    def head_shape(self, schema) -> tuple[int, ...]:
        return (sum(self.sizes),)

    def forward(self, params: torch.Tensor) -> Distribution:
        return Columns(params, self.sizes)
