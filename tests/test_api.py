"""The Python API at its boundary: numpy arrays and lists in, checked like the CLI's data, clear
errors for a wrong shape, dtype or range; vaekit.train on arrays; dir(vaekit); bounded memory of
model.log_likelihood."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vaekit
from vaekit.errors import DataError
from vaekit.evaluation.likelihood import ROWS_PER_CALL, importance_sample

QUICK = {"train.epochs": 1, "train.progress": False, "train.threads": 1, "model.net.hidden": [32]}


def _binary(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 8, 8)) > 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A Bernoulli model trained on a numpy array of [N, H, W] binary images."""
    return vaekit.train(tmp_path_factory.mktemp("api") / "run", data=_binary(300), **QUICK)


def test_dir_lists_the_public_names():
    names = dir(vaekit)
    assert {"train", "load", "evaluate", "encode", "Config", "DataSet", "VaekitError"} <= set(names)
    assert all(hasattr(vaekit, n) for n in vaekit.__all__)


def test_train_on_a_numpy_array_splits_it_seeded(tmp_path):
    x = _binary(200, seed=1)
    vaekit.train(tmp_path / "a", data=x, **QUICK)
    info = json.loads((tmp_path / "a" / "config.json").read_text())["data"]
    assert info["schema"]["event_shape"] == [1, 8, 8]
    data = vaekit.api.array_dataset(x, seed=0, valid_fraction=0.1)
    assert (len(data.train), len(data.valid), len(data.test)) == (160, 20, 20)
    again = vaekit.api.array_dataset(torch.from_numpy(x), seed=0, valid_fraction=0.1)
    assert torch.equal(data.test.x, again.test.x)


def test_train_on_arrays_with_labels_trains_a_conditional_model(tmp_path):
    x, y = _binary(150), np.arange(150) % 3
    m = vaekit.train(tmp_path / "c", data=(x, y), **QUICK, **{"model.conditional": True})
    assert m.num_classes == 3
    assert m.sample(4, y=2).shape == (4, 1, 8, 8)


def test_train_refuses_bad_arrays_with_the_data_checks(tmp_path):
    with pytest.raises(DataError, match="NaN or infinite values in rows"):
        vaekit.train(tmp_path / "n", data=np.full((20, 3), np.nan), **QUICK)
    with pytest.raises(DataError, match="shape"):
        vaekit.train(tmp_path / "s", data=np.zeros(20), **QUICK)


def test_numpy_lists_and_tensors_give_the_same_numbers(model):
    x = _binary(5, seed=3)
    t = torch.from_numpy(x)[:, None]
    want = model.encode(t).mean
    assert torch.equal(model.encode(x).mean, want)  # [B, H, W] is read as one channel
    assert torch.equal(model.encode(x.tolist()).mean, want)
    assert torch.equal(model.encode(x[..., None]).mean, want)  # channels-last
    assert torch.equal(model.encode(x.astype(bool)).mean, want)
    assert torch.equal(model.encode((x * 255).astype(np.uint8)).mean, want)  # 8-bit values / 255
    torch.manual_seed(1)
    elbo = model.elbo(x)
    torch.manual_seed(1)
    assert torch.equal(elbo, model.elbo(t))
    assert model.decode(want.detach().numpy()).mean.shape == (5, 1, 8, 8)
    assert model.reconstruct(x).shape == (5, 1, 8, 8)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 4, 8), np.float32), r"shape \(2, 4, 8\); the model takes \[B, 1, 8, 8\]"),
    (np.zeros((2, 64), np.float32), r"shape \(2, 64\)"),
    (np.array([["a"] * 8] * 8), "not numeric"),
    (np.zeros((2, 8, 8), complex), "not numeric"),
    (np.full((2, 8, 8), np.nan, np.float32), r"NaN or infinite values in rows \[0, 1\]"),
    (np.full((2, 8, 8), 3.0, np.float32), r"spans \[3, 3\].*takes values in \[0, 1\]"),
    (np.full((2, 8, 8), 7, np.int64), "values other than 0 and 1"),
])
def test_bad_inputs_are_refused_with_the_problem_named(model, bad, message):
    for method in (model.encode, model.elbo, model.reconstruct):
        with pytest.raises(DataError, match=message):
            method(bad)
    with pytest.raises(DataError, match=message):
        model.log_likelihood(bad, k=4)


def test_bad_latents_and_labels_are_refused(model):
    d = model.latent_dim
    with pytest.raises(DataError, match=rf"latents are \[N, {d}\]"):
        model.decode(np.zeros((2, d + 1)))
    with pytest.raises(DataError, match=r"z\[None\]"):
        model.decode(np.zeros(d))
    with pytest.raises(DataError, match="NaN or infinite"):
        model.decode(np.full((1, d), np.inf))


def test_completion_takes_nan_in_the_missing_entries(model):
    x = _binary(3, seed=4)
    observed = np.ones((8, 8), bool)
    observed[4:] = False
    gaps = np.where(observed, x, np.nan)
    filled = model.complete(gaps, observed, k=8)
    assert torch.isfinite(filled).all()
    assert torch.equal(filled[:, 0, :4], torch.from_numpy(x[:, :4]))


def test_log_likelihood_is_chunked_over_examples(model):
    """All examples x a sample chunk used to go through the decoder at once (16 GB for 10,000
    MNIST digits at the default chunk): now no call exceeds the evaluation's row budget."""
    rows = []
    hook = model.decoder.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    try:
        x = _binary(3000, seed=5)
        torch.manual_seed(0)
        ll = model.log_likelihood(x, k=50)
    finally:
        hook.remove()
    assert ll.shape == (3000,) and torch.isfinite(ll).all()
    assert max(rows) <= ROWS_PER_CALL["cpu"]
    torch.manual_seed(0)  # the same numbers as the whole batch in one call (the estimate is chunk-invariant)
    seed = int(torch.randint(0, 2**62, ()))
    whole = importance_sample(model, model.batch(x[:7]), None, 50, 7, 50, seed).log_px.float()
    assert torch.equal(whole, ll[:7])
