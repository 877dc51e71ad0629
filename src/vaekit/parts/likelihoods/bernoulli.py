"""p(x|z) = prod_d Bernoulli(x_d; sigmoid(l_d)), for binary (or binarized) data."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from vaekit.parts.distributions import BernoulliLogits
from vaekit.parts.likelihoods.base import Likelihood
from vaekit.registry import register


@register("likelihood", "bernoulli")
class BernoulliLikelihood(Likelihood):
    """One logit per data dimension; the data must lie in [0, 1] (the trainer checks the values)."""

    discrete = True
    unit_interval = True

    def forward(self, params: torch.Tensor) -> Distribution:
        return BernoulliLogits(params)
