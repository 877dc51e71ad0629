"""Likelihoods and posteriors against scipy and hand-computed values; analytic KL against Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vaekit.config import part_config
from vaekit.errors import ConfigError
from vaekit.parts.distributions import DiagonalGaussian, DiscretizedLogisticMixture, log_prob_repeated
from vaekit.parts.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    LogisticMixtureLikelihood,
    build_likelihood,
)
from vaekit.parts.priors import StandardNormal, kl_diag_gaussian_standard_normal
from vaekit.schema import DataSchema


def test_bernoulli_log_prob_matches_scipy():
    logits = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5, dtype=torch.float64))
    got = BernoulliLikelihood()(logits).log_prob(x)
    p = torch.sigmoid(logits).numpy()
    want = stats.bernoulli.logpmf(x.numpy(), p).reshape(3, -1).sum(1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    assert got.shape == (3,)


@pytest.mark.parametrize("scale", ["fixed", "global", "per-pixel"])
def test_gaussian_log_prob_matches_scipy(scale):
    lik = GaussianLikelihood((2, 3), scale=scale, sigma=0.3).double()
    if scale == "per-pixel":
        with torch.no_grad():
            lik.log_sigma.copy_(torch.log(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])))
    mu = torch.randn(5, 2, 3, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    sigma = lik.log_sigma.exp().expand(2, 3).detach().numpy()
    want = stats.norm.logpdf(x.numpy(), mu.numpy(), sigma).reshape(5, -1).sum(1)
    np.testing.assert_allclose(lik(mu).log_prob(x).detach().numpy(), want, rtol=1e-10)
    learnable = [p for p in lik.parameters()]
    assert (len(learnable) == 0) == (scale == "fixed")


def _dlm_by_hand(x, logits, means, scales, levels):
    """P(x) from logistic CDF differences, edges open, directly with scipy."""
    h = 0.5 / (levels - 1)
    w = np.exp(logits) / np.exp(logits).sum()
    p = 0.0
    for wi, m, s in zip(w, means, scales, strict=True):
        hi = 1.0 if x > 1 - h else stats.logistic.cdf(x + h, m, s)
        lo = 0.0 if x < h else stats.logistic.cdf(x - h, m, s)
        p += wi * (hi - lo)
    return math.log(p)


@pytest.mark.parametrize("value", [0, 1, 77, 128, 254, 255])
def test_discretized_logistic_mixture_matches_hand_computation(value):
    levels = 256
    logits = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    means = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    scales = torch.tensor([0.05, 0.1, 0.02], dtype=torch.float64)
    d = DiscretizedLogisticMixture(
        logits.view(1, 1, 3), means.view(1, 1, 3), scales.log().view(1, 1, 3), levels
    )
    x = torch.tensor([[value / 255]], dtype=torch.float64)
    want = _dlm_by_hand(value / 255, logits.numpy(), means.numpy(), scales.numpy(), levels)
    np.testing.assert_allclose(d.log_prob(x).item(), want, rtol=1e-8, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    levels=st.sampled_from([2, 17, 256]),
    seed=st.integers(0, 10_000),
)
def test_discretized_logistic_mixture_sums_to_one(levels, seed):
    g = torch.Generator().manual_seed(seed)
    m = 4
    logits = torch.randn(1, 1, m, generator=g, dtype=torch.float64)
    means = torch.rand(1, 1, m, generator=g, dtype=torch.float64)
    log_scales = torch.randn(1, 1, m, generator=g, dtype=torch.float64) - 3
    d = DiscretizedLogisticMixture(logits, means, log_scales, levels)
    grid = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    total = sum(d.log_prob(v.view(1, 1)).exp().item() for v in grid)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_logistic_mixture_likelihood_shapes_and_samples_on_grid():
    lik = LogisticMixtureLikelihood(components=3, levels=256)
    params = torch.randn(2, 3 * 3 * 3, 4, 4)  # 3 channels
    d = lik(params)
    x = torch.randint(0, 256, (2, 3, 4, 4)).float() / 255
    assert d.log_prob(x).shape == (2,)
    s = d.sample()
    assert s.shape == (2, 3, 4, 4)
    assert torch.allclose(s * 255, (s * 255).round(), atol=1e-4)
    assert d.mean.shape == (2, 3, 4, 4)


def test_diagonal_gaussian_log_prob_matches_scipy():
    loc = torch.randn(4, 3, dtype=torch.float64)
    scale = torch.rand(4, 3, dtype=torch.float64) + 0.1
    z = torch.randn(4, 3, dtype=torch.float64)
    q = DiagonalGaussian(loc, scale)
    want = [
        stats.multivariate_normal.logpdf(z[i].numpy(), loc[i].numpy(), np.diag(scale[i].numpy() ** 2))
        for i in range(4)
    ]
    np.testing.assert_allclose(q.log_prob(z).numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(
        StandardNormal(3).log_prob(z).numpy(),
        stats.multivariate_normal.logpdf(z.numpy(), np.zeros(3), np.eye(3)),
        rtol=1e-10,
    )


def test_rsample_is_reparameterized():
    loc = torch.zeros(2, 3, requires_grad=True)
    scale = torch.ones(2, 3, requires_grad=True)
    z = DiagonalGaussian(loc, scale).rsample((5,))
    z.sum().backward()
    assert loc.grad is not None and torch.all(loc.grad == 5)
    assert scale.grad is not None


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(1)
    loc = torch.randn(6, 4, dtype=torch.float64)
    scale = torch.rand(6, 4, dtype=torch.float64) * 1.5 + 0.2
    analytic = kl_diag_gaussian_standard_normal(loc, scale).sum(-1)
    q = DiagonalGaussian(loc, scale)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - StandardNormal(4).log_prob(z)).mean(0)
    np.testing.assert_allclose(analytic.numpy(), mc.numpy(), atol=0.03)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    np.testing.assert_allclose(analytic.numpy(), ref.numpy(), rtol=1e-12)


def test_bad_likelihood_configs_are_refused():
    with pytest.raises(ConfigError, match="logistic"):
        part_config("likelihood", "poisson")
    with pytest.raises(ConfigError, match="continuous"):
        build_likelihood(part_config("likelihood", "logistic-mixture"), DataSchema.for_shape((4,)))
    with pytest.raises(ConfigError, match="per-pixel"):
        part_config("likelihood", "gaussian", {"scale": "learnt"})


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.floats(0.1, 30.0), st.integers(0, 2**16))
def test_fused_bernoulli_log_prob_matches_torch(batch, dims, scale, seed):
    """The fused log-prob sum_d [x l - softplus(l)] equals torch's Bernoulli log-prob summed."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, 1, dims, generator=g, dtype=torch.float64) * scale
    x = torch.bernoulli(torch.full_like(logits, 0.4), generator=g)
    ours = BernoulliLikelihood()(logits).log_prob(x)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2))
    assert ours.shape == (batch,)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-8)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 30), st.integers(0, 2**16))
def test_repeated_log_prob_matches_tiling_x(k, batch, dims, seed):
    """log p(x_b | z_jb) from the batched product equals the log-prob of x tiled k times, for the
    Bernoulli (fast path) and the Gaussian (tiled path) alike."""
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(k * batch, 1, dims, generator=g, dtype=torch.float64) * 3
    x = torch.rand(batch, 1, dims, generator=g, dtype=torch.float64)
    tiled = x.repeat(k, 1, 1)
    for lik in (BernoulliLikelihood(), GaussianLikelihood((1, dims), "fixed", 0.3).double()):
        px = lik(params)
        ours = log_prob_repeated(px, x, k)
        assert ours.shape == (k, batch)
        torch.testing.assert_close(ours, px.log_prob(tiled).view(k, batch), rtol=1e-10, atol=1e-8)
