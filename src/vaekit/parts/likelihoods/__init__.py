"""Likelihoods p(x|z): one file per family, each registered as a ``likelihood`` part."""

from __future__ import annotations

from vaekit import registry
from vaekit.config import PartConfig
from vaekit.parts.likelihoods.base import Likelihood
from vaekit.parts.likelihoods.bernoulli import BernoulliLikelihood
from vaekit.parts.likelihoods.gaussian import GaussianLikelihood
from vaekit.parts.likelihoods.logistic_mixture import LogisticMixtureLikelihood
from vaekit.parts.likelihoods.table import TableLikelihood
from vaekit.schema import DataSchema


def build_likelihood(cfg: PartConfig, schema: DataSchema) -> Likelihood:
    """The likelihood ``cfg.name`` names, checked against the data."""
    return registry.lookup("likelihood", cfg.name).build(cfg, schema)


__all__ = ["BernoulliLikelihood", "GaussianLikelihood", "Likelihood", "LogisticMixtureLikelihood",
           "TableLikelihood", "build_likelihood"]
