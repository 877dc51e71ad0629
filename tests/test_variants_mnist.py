"""Variant properties on real MNIST (``mnist_npz`` fixture; skipped without the shared data):
the CVAE's samples read as the digit asked for and its completions beat a sample of the same class;
(slow) the VampPrior's NLL beats the standard normal prior's and the IAF posterior's ELBO gap is
smaller than the diagonal Gaussian's, each at equal budget."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import vaekit
from vaekit.data import DataSet, load_dataset
from vaekit.data.base import Split
from vaekit.data.transforms import eval_view, to_unit
from vaekit.evaluation import evaluate_elbo

ONE_THREAD = {"train.progress": False, "train.threads": 1}


@pytest.fixture
def mnist(mnist_npz):
    return load_dataset(f"npz:{mnist_npz}")


def subset(data: DataSet, n_train: int, n_eval: int) -> DataSet:
    def cut(s: Split, n: int) -> Split:
        return Split(s.x[:n], None if s.y is None else s.y[:n])

    return DataSet(
        f"{data.name}[:{n_train}]",
        cut(data.train, n_train),
        cut(data.valid, n_eval),
        cut(data.test, n_eval),
        data.kind,
        data.levels,
        data.num_classes,
    )


def digit_classifier(data: DataSet, n: int = 10_000, epochs: int = 5) -> nn.Module:
    """A 784-256-10 MLP trained on n real (grey-level) training digits."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = to_unit(data.train.x[:n]).flatten(1), data.train.y[:n]
    clf = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(100):
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return clf.eval()


def test_mnist_cvae_samples_read_as_the_digit_asked_for_and_completion_helps(tmp_path, mnist):
    torch.set_num_threads(1)
    clf = digit_classifier(mnist)
    with torch.no_grad():
        real = (clf(to_unit(mnist.test.x[:2000]).flatten(1)).argmax(1) == mnist.test.y[:2000]).float().mean()
    assert real > 0.9, real
    data = subset(mnist, 20_000, 500)
    overrides = ONE_THREAD | {"train.epochs": 3}
    model = vaekit.train(tmp_path / "cvae", preset="mnist-cvae", data=data, **overrides)
    y = torch.arange(1000) % 10
    samples = model.sample(1000, y=y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        accuracy = (clf(samples.flatten(1)).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9, accuracy
    # conditional completion: given the top half (and the label), fill in the bottom half
    x, labels = eval_view(mnist.test.x[:300], "dynamic", 0), mnist.test.y[:300]
    observed = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    observed[..., :14, :] = True
    torch.manual_seed(0)
    filled = model.complete(x, observed, labels, k=200)
    sampled = model.sample(300, y=labels, generator=torch.Generator().manual_seed(1))
    err_filled = (filled - x)[..., 14:, :].pow(2).mean().item()
    err_sampled = (sampled - x)[..., 14:, :].pow(2).mean().item()
    assert err_filled < 0.85 * err_sampled, (err_filled, err_sampled)


SLOW_EPOCHS = 5


def nll_and_gap(model: nn.Module, x: torch.Tensor, k: int = 1000) -> tuple[float, float]:
    """Mean -log p(x) (K importance samples) and the ELBO gap (-ELBO) - NLL, nats."""
    torch.manual_seed(0)
    nll = -torch.cat([model.log_likelihood(xb, k) for xb in x.split(100)]).double().mean().item()
    elbo = evaluate_elbo(model, x, seed=0)["elbo"]
    return nll, -elbo - nll


@pytest.mark.slow
def test_vampprior_nll_and_iaf_gap_beat_the_standard_vae_at_equal_budget(tmp_path, mnist):
    """Same epochs, seed and network: the VampPrior's test NLL is lower than the standard normal
    prior's, and the IAF posterior's ELBO gap is smaller than the diagonal Gaussian's."""
    torch.set_num_threads(1)
    x = eval_view(mnist.test.x[:1000], "dynamic", 0)
    data = subset(mnist, 50_000, 1000)
    result = {}
    for preset in ("mnist-mlp", "mnist-vampprior", "mnist-iaf"):
        overrides = ONE_THREAD | {"train.epochs": SLOW_EPOCHS}
        model = vaekit.train(tmp_path / preset, preset=preset, data=data, **overrides)
        result[preset] = nll_and_gap(model, x)
    (nll_standard, gap_standard), (nll_vamp, _), (_, gap_iaf) = result.values()
    assert nll_vamp < nll_standard, result
    assert 0 < gap_iaf < gap_standard, result
