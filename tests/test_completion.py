"""Conditional completion (vaekit.models.completion) with every likelihood and model kind on tiny untrained
models of scikit-learn's 8x8 digits (17 grey levels): the per-dimension log-probs it scores the
observed entries with, what it returns, and what it refuses; and the samplers against E[x_mis | x_obs]
computed exactly on a model with a 1-D latent and 4 binary pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

from vaekit.config import Config
from vaekit.data import load_dataset
from vaekit.data.transforms import to_unit
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.models.completion import complete, per_dim_log_prob

LIKELIHOODS = {
    "bernoulli": {},
    "gaussian": {"likelihood": "gaussian"},
    "logmix": {"likelihood": {"name": "logistic-mixture", "components": 3}},
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(digits, **model_keys):
    torch.manual_seed(0)
    size = {"width": 32} if model_keys.get("name") == "hierarchical" else {"latent_dim": 4}
    cfg = Config.from_dict({"model": {"net": {"name": "mlp", "hidden": [32]}, **size} | model_keys})
    return build_model(cfg.model, digits.schema).eval()


def _top_half_observed() -> torch.Tensor:
    observed = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    observed[..., 4:, :] = False
    return observed


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_per_dimension_log_probs_sum_to_the_likelihoods_log_prob(digits, likelihood):
    model = _model(digits, **LIKELIHOODS[likelihood])
    x = to_unit(digits.test.x[:5])
    with torch.no_grad():
        px = model.decode(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))
        per_dim = per_dim_log_prob(px, x)
        assert per_dim.shape == x.shape
        torch.testing.assert_close(per_dim.flatten(1).sum(-1), px.log_prob(x), rtol=1e-6, atol=1e-4)


def test_logistic_mixture_completion_is_on_the_data_grid_and_keeps_the_observed_entries(digits):
    model = _model(digits, **LIKELIHOODS["logmix"])
    x = to_unit(digits.test.x[:6])
    observed = _top_half_observed()
    torch.manual_seed(0)
    filled = complete(model, x, observed, k=16)
    assert filled.shape == x.shape
    assert torch.equal(filled[..., :4, :], x[..., :4, :])
    steps = filled * (digits.levels - 1)
    assert torch.equal(steps, steps.round()) and filled.min() >= 0 and filled.max() <= 1
    # the model's (untrained) guess, not the zeros the missing half started from
    assert filled[..., 4:, :].abs().sum() > 0
    torch.manual_seed(0)
    assert torch.equal(complete(model, x, observed, k=16), filled)


@pytest.mark.parametrize(
    "model_keys",
    [
        {"likelihood": "gaussian"},
        {"posterior": {"name": "iaf", "hidden": 16, "context": 4}},
        {"name": "hierarchical", "latent_dims": [2, 2], "likelihood": "logistic-mixture"},
    ],
    ids=["gaussian", "iaf", "hierarchical-logmix"],
)
def test_completion_keeps_the_observed_entries_for_other_likelihoods_and_model_kinds(digits, model_keys):
    model = _model(digits, **model_keys)
    x = to_unit(digits.test.x[:4])
    filled = complete(model, x, _top_half_observed(), k=8)
    assert torch.isfinite(filled).all()
    assert torch.equal(filled[..., :4, :], x[..., :4, :])
    assert not torch.equal(filled[..., 4:, :], torch.zeros_like(filled[..., 4:, :]))


class _JointGaussian(nn.Module):
    """A likelihood that does not factorize over dimensions: one Gaussian over the whole image."""

    def forward(self, params: torch.Tensor) -> MultivariateNormal:
        flat = params.flatten(1)
        return MultivariateNormal(flat, scale_tril=torch.eye(flat.shape[1]))


def test_a_likelihood_without_per_dimension_terms_is_refused_with_a_config_error(digits):
    model = _model(digits, likelihood="gaussian")
    model.likelihood = _JointGaussian()
    with pytest.raises(ConfigError, match="factorizes over data dimensions.*MultivariateNormal"):
        complete(model, to_unit(digits.test.x[:2]), _top_half_observed(), k=4)


@pytest.mark.parametrize("k, rounds", [(0, 3), (4, 0)])
def test_no_samples_or_no_rounds_is_refused(digits, k, rounds):
    model = _model(digits)
    with pytest.raises(ConfigError, match="k >= 1"):
        complete(model, to_unit(digits.test.x[:2]), _top_half_observed(), k=k, rounds=rounds)


# A model whose p(x_mis | x_obs) is known: z ~ N(0, 1), x_d | z ~ Bernoulli(sigmoid(w_d z + b_d)), 4 pixels,
# and a deliberately poor encoder q(z | x) = N(0.5 sum_d sign(w_d) x_d + 1.5, 2^2): shifted, too broad.
_W = torch.tensor([3.0, -2.0, 2.5, -3.0])
_B = torch.tensor([0.0, 0.5, -0.5, 1.0])


class _OnePixelLatent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prior = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Independent:
        mean = 0.5 * (x * _W.sign()).sum(-1, keepdim=True) + 1.5
        return Independent(Normal(mean, torch.full_like(mean, 2.0)), 1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Independent:
        return Independent(Bernoulli(logits=z * _W + _B), 1)


def _exact_conditional_mean(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """E[x | x_obs] = ∫ sigmoid(w z + b) p(x_obs | z) N(z; 0, 1) dz / ∫ p(x_obs | z) N(z; 0, 1) dz by the
    rectangle rule on z in [-10, 10] (step 0.001; the integrands are smooth and negligible beyond)."""
    z = torch.linspace(-10, 10, 20_001, dtype=torch.float64)[:, None, None]
    logits = z * _W.double() + _B.double()
    log_w = (Bernoulli(logits=logits).log_prob(x.double()) * observed).sum(-1) - z[..., 0] ** 2 / 2
    return (torch.softmax(log_w, 0)[..., None] * torch.sigmoid(logits)).sum(0).float()


# four examples see pixels 0 and 1 (all four patterns), one sees pixel 0 only
_X = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
_OBSERVED = torch.tensor([[1, 1, 0, 0]] * 4 + [[1, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    "method, k, rounds, close",
    [("mwg", 2000, 60, True), ("importance", 20_000, 2, True), ("pseudo-gibbs", 2000, 60, False)],
)
def test_completion_matches_the_exact_conditional_mean_except_pseudo_gibbs_with_a_poor_encoder(
    method, k, rounds, close
):
    """Metropolis-within-Gibbs and importance sampling are exact in the limit whatever the (broad enough)
    proposal: within 0.02 of the quadrature (their error over seeds 0-4 is at most 0.007; MwG without the
    q(z|x) ratio in its acceptance is off by 0.06). Pseudo-Gibbs samples q's law, off by over 0.5 here."""
    exact = _exact_conditional_mean(_X, _OBSERVED.double())
    torch.manual_seed(0)
    filled = complete(_OnePixelLatent(), _X, _OBSERVED, k=k, rounds=rounds, method=method)
    assert torch.equal(filled[_OBSERVED], _X[_OBSERVED])
    error = float((filled - exact)[~_OBSERVED].abs().max())
    assert error < 0.02 if close else error > 0.3
