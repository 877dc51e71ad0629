"""Variant objectives as numbers: the total-correlation estimate against the closed form of a Gaussian,
the MMD estimator's unbiasedness against closed forms, how the penalties compose with an objective, and
the combinations refused when the objective is built against the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

import vaekit
from vaekit.config import make_config
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.parts.objectives import build_objective, elbo_loss, iwae_bound
from vaekit.parts.objectives.penalties import kernel_matrix, mmd, total_correlation
from vaekit.schema import DataSchema

# -- total correlation (beta-TCVAE) -------------------------------------------------------------------


def gaussian_tc(cov: torch.Tensor) -> float:
    """TC of N(0, cov) in closed form: sum_j H(z_j) - H(z) = -0.5 log det(corr)."""
    sd = cov.diagonal().sqrt()
    return -0.5 * torch.logdet(cov / sd[:, None] / sd[None, :]).item()


def tc_estimate(rho: float, n_data: int, batch: int, repeats: int, seed: int = 0) -> float:
    """Mean TC estimate over batches of an aggregate of N posteriors N(mu_n, 0.5^2 I), mu_n ~ N(0, C)
    with C = equicorrelation rho in d = 3: the aggregate is ~ N(0, C + 0.25 I) for large N."""
    g = torch.Generator().manual_seed(seed)
    d = 3
    chol = torch.linalg.cholesky((torch.full((d, d), rho) + (1 - rho) * torch.eye(d)).double())
    mu_all = torch.randn(n_data, d, generator=g, dtype=torch.float64) @ chol.T
    estimates = []
    for _ in range(repeats):
        mu = mu_all[torch.randperm(n_data, generator=g)[:batch]]
        scale = torch.full_like(mu, 0.5)
        z = mu + scale * torch.randn(mu.shape, generator=g, dtype=torch.float64)
        estimates.append(total_correlation(z, mu, scale, n_data).item())
    return float(np.mean(estimates))


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_tc_estimate_matches_the_gaussian_closed_form(rho):
    cov = (torch.full((3, 3), rho) + (1 - rho) * torch.eye(3)).double() + 0.25 * torch.eye(3).double()
    truth = gaussian_tc(cov)
    est = tc_estimate(rho, n_data=20_000, batch=400, repeats=4)
    assert est == pytest.approx(truth, abs=0.06), (est, truth)


def test_tc_is_zero_for_factorized_and_positive_for_correlated_aggregates():
    factorized = tc_estimate(0.0, n_data=600, batch=600, repeats=1)  # batch = data set: exact weights
    correlated = tc_estimate(0.7, n_data=600, batch=600, repeats=1)
    assert abs(factorized) < 0.03, factorized
    assert correlated > 0.3, correlated


def test_tc_refuses_a_batch_larger_than_the_data_set():
    z = torch.randn(5, 2)
    with pytest.raises(ValueError, match="dataset size"):
        total_correlation(z, z, torch.ones_like(z), dataset_size=4)


# -- MMD (InfoVAE / WAE) ------------------------------------------------------------------------------


def rbf_expectation(mean_diff: float, var: float, d: int, c: float) -> float:
    """E exp(-|W|^2 / c) for W ~ N(m 1, var I) in d dims (a Gaussian integral per dimension)."""
    return ((1 + 2 * var / c) ** -0.5 * math.exp(-(mean_diff**2) / (c + 2 * var))) ** d


def imq_expectation(mean_diff: float, var: float, c: float) -> float:
    """E c / (c + W^2) for W ~ N(m, var) in 1-D, by quadrature."""
    dens = lambda w: math.exp(-((w - mean_diff) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)  # noqa: E731
    return integrate.quad(lambda w: c / (c + w * w) * dens(w), -np.inf, np.inf)[0]


def mmd_draws(d: int, shift: float, scale: float, kernel: str, repeats: int = 2000, n: int = 8):
    """U-statistic and the biased V-statistic (diagonal kept) over many independent small samples
    x ~ N(0, I), y ~ N(shift, scale^2 I)."""
    g = torch.Generator().manual_seed(0)
    u, v = [], []
    c = 2.0 * d
    for _ in range(repeats):
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = shift + scale * torch.randn(n, d, generator=g, dtype=torch.float64)
        u.append(mmd(x, y, kernel).item())
        v.append(
            (kernel_matrix(x, x, kernel, c).mean() + kernel_matrix(y, y, kernel, c).mean()
             - 2 * kernel_matrix(x, y, kernel, c).mean()).item()
        )
    u, v = np.array(u), np.array(v)
    return u.mean(), u.std() / math.sqrt(repeats), v.mean()


def test_rbf_mmd_is_unbiased_against_the_closed_form():
    d, shift, scale = 2, 0.5, 1.5
    c = 2.0 * d
    truth = (
        rbf_expectation(0, 2, d, c)
        + rbf_expectation(0, 2 * scale**2, d, c)
        - 2 * rbf_expectation(shift, 1 + scale**2, d, c)
    )
    mean, se, biased = mmd_draws(d, shift, scale, "rbf")
    assert abs(mean - truth) < 4 * se, (mean, truth, se)
    assert abs(biased - truth) > 10 * se  # the V-statistic would fail this test


def test_imq_mmd_is_unbiased_against_quadrature():
    shift, scale = 1.0, 0.7
    c = 2.0
    within = imq_expectation(0, 2, c) + imq_expectation(0, 2 * scale**2, c)
    truth = within - 2 * imq_expectation(shift, 1 + scale**2, c)
    mean, se, biased = mmd_draws(1, shift, scale, "imq")
    assert abs(mean - truth) < 4 * se, (mean, truth, se)
    assert abs(biased - truth) > 10 * se


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_of_identical_distributions_averages_zero(kernel):
    mean, se, biased = mmd_draws(3, 0.0, 1.0, kernel)
    assert abs(mean) < 4 * se, (mean, se)
    assert biased > 10 * se


# -- penalties: how they compose with the objective ---------------------------------------------------


def _model_and_terms(overrides: dict, k: int = 1):
    cfg = make_config(overrides={"model.net.hidden": [16], "model.latent_dim": 3} | overrides)
    model = build_model(cfg.model, DataSchema.for_shape((1, 4, 4), 17, None))
    x = torch.bernoulli(torch.full((12, 1, 4, 4), 0.4))
    return cfg, model, model(x, k=k)


def _loss(cfg, model, terms, step: int = 0, steps_per_epoch: int = 1):
    return build_objective(cfg.objective, model, 100, steps_per_epoch)(terms, step)


def test_penalties_add_weighted_terms_and_keep_the_plain_elbo():
    cfg, model, terms = _model_and_terms({"objective.beta": 2.0})
    base = elbo_loss(terms, 2.0)
    loss, logged = _loss(cfg, model, terms)
    assert loss.item() == pytest.approx(base.item()) and list(logged) == ["elbo", "recon", "kl"]
    cfg.objective.tc_weight = 3.0
    tc = total_correlation(terms.z[0], terms.q.loc, terms.q.scale, 100)
    loss, logged = _loss(cfg, model, terms)
    assert loss.item() == pytest.approx(base.item() + 3.0 * tc.item(), rel=1e-6)
    assert logged["tc"].item() == pytest.approx(tc.item()) and logged["tc"].shape == ()
    assert logged["elbo"].mean().item() == pytest.approx(terms.elbo.mean().item())
    cfg.objective.tc_weight, cfg.objective.mmd_weight = 0.0, 50.0
    torch.manual_seed(4)
    target = model.prior.sample(12)
    torch.manual_seed(4)
    loss, logged = _loss(cfg, model, terms)
    expected = mmd(terms.z[0], target, cfg.objective.mmd_kernel)
    assert loss.item() == pytest.approx((base + 50.0 * expected).item(), rel=1e-6)
    assert logged["mmd"].item() == pytest.approx(expected.item()) and "tc" not in logged
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_warmup_and_iwae_dispatch():
    cfg, model, terms = _model_and_terms({"objective.warmup_epochs": 1.0})
    half, _ = _loss(cfg, model, terms, step=5, steps_per_epoch=10)
    assert half.item() == pytest.approx(elbo_loss(terms, 0.5).item())
    cfg, model, terms = _model_and_terms({"objective.name": "iwae", "objective.samples": 4}, k=4)
    loss, logged = _loss(cfg, model, terms)
    assert loss.item() == pytest.approx(-iwae_bound(terms).mean().item())
    assert torch.equal(logged["iwae"], iwae_bound(terms))


def test_penalties_on_a_single_example_batch_are_zero():
    cfg, model, terms = _model_and_terms({"objective.tc_weight": 1.0, "objective.mmd_weight": 1.0})
    one = model(torch.ones(1, 1, 4, 4))
    loss, logged = _loss(cfg, model, one)
    assert loss.item() == pytest.approx(elbo_loss(one).item())
    assert logged["tc"].item() == 0.0 and logged["mmd"].item() == 0.0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"objective.free_bits": 0.5, "model.prior": "vamp"}, "closed form"),
        ({"objective.free_bits": 0.5, "model.posterior": "iaf"}, "closed form"),
        ({"objective.tc_weight": 2.0, "model.posterior": "iaf"}, "IAFPosterior posterior does not factorize"),
        ({"objective.tc_weight": 2.0, "model.name": "hierarchical", "model.latent_dims": [2, 2]},
         "HierarchicalVAE does not factorize"),
        ({"objective.name": "iwae", "objective.beta": 4.0}, "no separate KL"),
        ({"objective.mmd_kernel": "laplace"}, "rbf"),
        ({"objective.name": "elbow"}, "did you mean 'elbo'"),
    ],
)
def test_combinations_that_make_no_sense_are_refused_before_training(tmp_path, overrides, match):
    cfg = make_config(preset="digits-mlp", overrides=overrides)
    model = build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 17, None))
    with pytest.raises(ConfigError, match=match):
        build_objective(cfg.objective, model, 100, 1)
    with pytest.raises(ConfigError, match=match):  # the API's path: refused before a run folder exists
        vaekit.train(tmp_path / "run", preset="digits-mlp", **overrides)
    assert not (tmp_path / "run").exists()


def test_negative_penalty_weights_are_refused_at_config_time():
    with pytest.raises(ConfigError, match=">= 0"):
        make_config(overrides={"objective.mmd_weight": -1.0})


def test_variants_compose():
    cfg = make_config(
        overrides={
            "model.prior": "vamp", "model.posterior": "iaf", "objective.mmd_weight": 10.0,
            "objective.beta": 2.0, "model.net.hidden": [16], "model.prior.components": 4,
        }
    )
    model = build_model(cfg.model, DataSchema.for_shape((1, 4, 4), 17, None))
    terms = model(torch.bernoulli(torch.full((6, 1, 4, 4), 0.5)), k=2)
    loss, _ = _loss(cfg, model, terms)
    loss.backward()
    assert math.isfinite(loss.item()) and model.prior.pseudo_logits.grad is not None
