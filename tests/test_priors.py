"""Priors: mixture and VampPrior log p(z) against scipy, sampling moments, and the VampPrior's tie
to the model's encoder (gradients, save/load, copies)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import vaekit.parts.priors.base as priors_base
from vaekit.config import make_config
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.parts.priors import MixtureOfGaussians, VampPrior
from vaekit.runs import folder as rd
from vaekit.schema import DataSchema


def _scipy_mixture(z: np.ndarray, loc: np.ndarray, scale: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    comps = [
        multivariate_normal(loc[k], np.diag(scale[k] ** 2)).logpdf(z) + log_w[k] for k in range(len(loc))
    ]
    return logsumexp(np.stack(comps), axis=0)


def _randomize_mog(prior: MixtureOfGaussians) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        prior.loc.copy_(torch.randn(prior.loc.shape, generator=g) * 2)
        prior.raw_scale.copy_(torch.randn(prior.raw_scale.shape, generator=g))
        prior.logits.copy_(torch.randn(prior.logits.shape, generator=g))


def test_mixture_of_gaussians_log_prob_matches_scipy():
    prior = MixtureOfGaussians(latent_dim=3, components=4).double()
    _randomize_mog(prior)
    z = torch.randn(2, 5, 3, dtype=torch.float64) * 2
    comp = prior.components()
    expected = _scipy_mixture(
        z.reshape(-1, 3).numpy(),
        comp.loc.detach().numpy(),
        comp.scale.detach().numpy(),
        prior.log_weights().detach().numpy(),
    )
    got = prior.log_prob(z)
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got.detach().reshape(-1).numpy(), expected, rtol=1e-10)
    assert torch.allclose(prior.log_weights().exp().sum(), torch.ones((), dtype=torch.float64))


def test_mixture_log_prob_in_chunks_equals_one_pass(monkeypatch):
    prior = MixtureOfGaussians(latent_dim=2, components=3).double()
    _randomize_mog(prior)
    z = torch.randn(7, 11, 2, dtype=torch.float64)
    whole = prior.log_prob(z)
    monkeypatch.setattr(priors_base, "_CHUNK_NUMBERS", 10)  # 1 row per chunk
    assert torch.allclose(prior.log_prob(z), whole, rtol=0, atol=1e-12)


def test_mixture_samples_have_the_mixture_moments():
    prior = MixtureOfGaussians(latent_dim=2, components=3)
    _randomize_mog(prior)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    z = prior.sample(n, generator=g).detach().double()
    comp = prior.components()
    w = prior.log_weights().exp().detach().double()
    mu, var = comp.loc.detach().double(), comp.scale.detach().double() ** 2
    mean = (w[:, None] * mu).sum(0)
    second = (w[:, None] * (var + mu**2)).sum(0)
    se = (second - mean**2).sqrt() / n**0.5
    assert torch.all((z.mean(0) - mean).abs() < 5 * se), (z.mean(0), mean)
    assert torch.allclose(z.var(0), second - mean**2, rtol=0.02)


def _vamp_model(event_shape=(1, 4, 4), latent=3, components=5):
    cfg = make_config(overrides={"model.net.hidden": [16], "model.latent_dim": latent, "model.prior": "vamp",
                                 "model.prior.components": components})
    return build_model(cfg.model, DataSchema.for_shape(event_shape, 17, None))


def test_vampprior_log_prob_is_the_mixture_of_encoder_posteriors_scipy():
    model = _vamp_model().double()
    u = model.prior.pseudo_inputs
    q = model.encode(u)  # the encoder's own posterior at the pseudo-inputs
    z = torch.randn(4, 6, 3, dtype=torch.float64)
    expected = _scipy_mixture(
        z.reshape(-1, 3).numpy(),
        q.loc.detach().numpy(),
        q.scale.detach().numpy(),
        np.full(5, -np.log(5)),
    )
    got = model.prior.log_prob(z).detach().reshape(-1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_vampprior_trains_its_pseudo_inputs_and_the_encoder():
    model = _vamp_model()
    model.prior.log_prob(torch.randn(8, 3)).sum().backward()
    assert model.prior.pseudo_logits.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_vampprior_survives_save_load_and_copy(tmp_path):
    model = _vamp_model()
    with torch.no_grad():
        model.prior.pseudo_logits.add_(torch.randn_like(model.prior.pseudo_logits))
    z = torch.randn(5, 3)
    # stored once: the prior holds no second copy of the encoder's weights
    assert not any(k.startswith("prior.") and "encoder" in k for k in model.state_dict())
    rd.save_model(tmp_path, model)
    fresh = _vamp_model()
    rd.load_weights_into(fresh, tmp_path / rd.MODEL)
    assert torch.allclose(fresh.prior.log_prob(z), model.prior.log_prob(z))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.encoder.parameters():
            p.add_(1.0)
    # the copy's prior follows the copy's encoder, not the original's
    assert not torch.allclose(twin.prior.log_prob(z), model.prior.log_prob(z))
    assert torch.allclose(fresh.prior.log_prob(z), model.prior.log_prob(z))
    g = torch.Generator().manual_seed(0)
    assert model.prior.sample(7, generator=g).shape == (7, 3)


def test_unbound_vampprior_and_bad_settings_are_refused():
    with pytest.raises(RuntimeError, match="bind"):
        VampPrior(2, 3, (1, 4, 4)).log_prob(torch.zeros(1, 2))
    with pytest.raises(ConfigError, match="model.prior.components"):
        make_config(overrides={"model.prior": "mog", "model.prior.components": 0})
    with pytest.raises(ConfigError, match="mog, normal, vamp"):
        make_config(overrides={"model.prior": "flow"})
    cfg = make_config(overrides={"model.prior": "vamp", "model.conditional": True})
    with pytest.raises(ConfigError, match="label"):
        build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 17, 10))
