"""Each variant's defining property after a short training run on scikit-learn's 8x8 digits, and a
smoke test of every variant with every likelihood through the whole API (train, load, NLL, sample,
encode, reconstruct, complete)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import vaekit
from vaekit.config import Config, set_dotted
from vaekit.data import load_dataset
from vaekit.data.transforms import eval_view, to_unit
from vaekit.evaluation import active_units, evaluate_elbo, posterior_means
from vaekit.models import build_model
from vaekit.parts.objectives import build_objective, mmd

QUICK = {"train.progress": False, "train.threads": 1, "model.net.hidden": [64, 32], "train.epochs": 20}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _train(tmp_path_factory, data, **overrides):
    out = tmp_path_factory.mktemp("run")
    return vaekit.train(out, preset="digits-mlp", data=data, **QUICK | overrides)


def test_larger_beta_gives_lower_kl_and_fewer_active_units(tmp_path_factory, digits):
    x = eval_view(digits.valid.x, "dynamic", 0)
    kl, au = {}, {}
    for beta in (1.0, 4.0):
        model = _train(tmp_path_factory, digits, **{"objective.beta": beta})
        kl[beta] = evaluate_elbo(model, x)["kl"]
        au[beta] = active_units(posterior_means(model, x))[0]
    assert kl[4.0] < 0.5 * kl[1.0], kl
    assert au[4.0] < au[1.0], au


def _aggregate_mmd(model, x: torch.Tensor) -> float:
    """MMD^2 (RBF) between one posterior draw per example and as many prior draws, averaged over
    five prior draws."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        z = model.encode(x).rsample()
        draws = [mmd(z, model.prior.sample(len(z), generator=g), "rbf").item() for _ in range(5)]
    return float(np.mean(draws))


def test_infovae_aggregate_posterior_is_closer_to_the_prior(tmp_path_factory, digits):
    x = to_unit(digits.train.x)
    common = {"data.binarize": "none"}
    plain = _train(tmp_path_factory, digits, **common)
    info = _train(tmp_path_factory, digits, **common | {"objective.mmd_weight": 1000.0})
    d_plain, d_info = _aggregate_mmd(plain, x), _aggregate_mmd(info, x)
    assert d_info < 0.5 * d_plain, (d_plain, d_info)


@pytest.fixture(scope="module")
def cvae(tmp_path_factory, digits):
    return _train(
        tmp_path_factory, digits, **{"model.conditional": True, "model.net.hidden": [128, 64],
                                     "train.epochs": 30}
    )


def test_cvae_samples_are_the_digit_asked_for(cvae, digits):
    """A classifier trained on real digits reads samples drawn for class c as c at least 90 % of the time."""
    clf = LogisticRegression(max_iter=2000).fit(to_unit(digits.train.x).flatten(1).numpy(), digits.train.y)
    assert clf.score(to_unit(digits.test.x).flatten(1).numpy(), digits.test.y) > 0.9
    y = torch.arange(500) % 10
    samples = cvae.sample(500, y=y, generator=torch.Generator().manual_seed(0))
    accuracy = (clf.predict(samples.flatten(1).numpy()) == y.numpy()).mean()
    assert accuracy >= 0.9, accuracy


def test_cvae_completes_the_bottom_half_better_than_a_sample_of_the_same_class(cvae, digits):
    x, y = to_unit(digits.test.x), digits.test.y
    observed = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    observed[..., :4, :] = True
    torch.manual_seed(0)
    filled = cvae.complete(x, observed, y, k=200)
    assert torch.equal(filled[..., :4, :], x[..., :4, :])  # the observed half is kept as given
    sampled = cvae.sample(len(x), y=y, generator=torch.Generator().manual_seed(1))
    err_filled = (filled - x)[..., 4:, :].pow(2).mean().item()
    err_sampled = (sampled - x)[..., 4:, :].pow(2).mean().item()
    assert err_filled < 0.85 * err_sampled, (err_filled, err_sampled)


VARIANTS = {
    "cvae": {"model.conditional": True},
    "beta": {"objective.beta": 4.0},
    "betatc": {"objective.tc_weight": 5.0},
    "infovae": {"objective.mmd_weight": 100.0},
    "mog": {"model.prior": "mog", "model.prior.components": 5},
    "vamp": {"model.prior": "vamp", "model.prior.components": 10},
    "iaf": {"model.posterior": "iaf", "model.posterior.hidden": 32, "model.posterior.context": 8},
}
LIKELIHOODS = {
    "bernoulli": {},
    "gaussian": {"model.likelihood": "gaussian", "data.binarize": "none"},
    "logmix": {
        "model.likelihood": "logistic-mixture", "data.binarize": "none", "model.likelihood.components": 2
    },
}


def _config(overrides: dict) -> Config:
    """A Config from dotted overrides, through Config.from_dict (the path of a config file)."""
    d: dict = {}
    for key, value in overrides.items():
        set_dotted(d, key, value)
    return Config.from_dict(d)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_saves_and_loads_through_the_api(tmp_path, digits, variant):
    overrides = QUICK | {"train.epochs": 1, "model.net.hidden": [32]} | VARIANTS[variant]
    model = vaekit.train(tmp_path / "run", preset="digits-mlp", data=digits, **overrides)
    loaded = vaekit.load(tmp_path / "run")
    x = to_unit(digits.test.x[:6])
    y = digits.test.y[:6] if model.num_classes else None
    torch.manual_seed(0)
    ll = loaded.log_likelihood(x, 16, y)
    torch.manual_seed(0)
    assert torch.equal(ll, model.log_likelihood(x, 16, y))
    assert torch.equal(loaded.encode(x, y).mean, model.encode(x, y).mean)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_with_every_likelihood(digits, variant, likelihood):
    cfg = _config({"model.net.hidden": [32],
                   "model.latent_dim": 4} | VARIANTS[variant] | LIKELIHOODS[likelihood])
    model = build_model(cfg.model, digits.schema)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all, y_all = to_unit(digits.train.x[:192]), digits.train.y[:192]
    objective = build_objective(cfg.objective, model, 192, 3)
    for i in range(0, 192, 64):
        x, y = x_all[i : i + 64], y_all[i : i + 64] if model.num_classes else None
        loss, _ = objective(model(x, y, objective.samples), i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    x = to_unit(digits.test.x[:6])
    y = digits.test.y[:6] if model.num_classes else None
    ll = model.log_likelihood(x, 16, y)
    assert torch.all(torch.isfinite(ll)) and ll.shape == (6,)
    assert model.sample(3, y=None if y is None else y[:3]).shape == (3, 1, 8, 8)
    assert model.encode(x, y).mean.shape == (6, 4)
    assert torch.isfinite(model.reconstruct(x, y)).all()
    observed = torch.ones(1, 1, 8, 8)
    observed[..., 4:, :] = 0
    filled = model.complete(x, observed, y, k=8)
    assert torch.isfinite(filled).all() and torch.equal(filled[..., :4, :], x[..., :4, :])
