"""Training on digits: the ELBO improves, runs reproduce, and saved models load back exactly."""

from __future__ import annotations

import json

import pytest
import torch

import vaekit
from vaekit.config import make_config
from vaekit.data.transforms import eval_view
from vaekit.errors import ConfigError
from vaekit.evaluation import evaluate_elbo
from vaekit.models import build_model
from vaekit.schema import DataSchema
from vaekit.training.trainer import Trainer

QUICK = {"train.epochs": 3, "train.progress": False, "model.net.hidden": [64, 32], "train.threads": 1}


def test_training_improves_validation_elbo_by_a_clear_margin(tmp_path):
    cfg = make_config(preset="digits-mlp", overrides=QUICK | {"train.epochs": 8})
    trainer = Trainer(cfg, tmp_path / "run")
    torch.manual_seed(0)
    initial = evaluate_elbo(trainer.model, trainer.x_valid, seed=0)["elbo"]
    final = trainer.fit()["elbo"]
    # an untrained Bernoulli model on 64 pixels sits near 64 ln 2 = 44 nats; training must gain a lot
    assert final > initial + 10, (initial, final)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 9))
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "samples.png",
                 "reconstructions.png", "report.md", "curves.png", "evaluation.json"):
        assert (tmp_path / "run" / name).is_file(), name


def test_same_seed_same_metrics_and_weights(tmp_path):
    a = vaekit.train(tmp_path / "a", preset="digits-mlp", **QUICK)
    b = vaekit.train(tmp_path / "b", preset="digits-mlp", **QUICK)
    ra = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1]
    rb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1]
    strip = lambda r: {k: v for k, v in json.loads(r).items() if k != "train_time_s"}  # noqa: E731
    assert strip(ra) == strip(rb)
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    c = vaekit.train(tmp_path / "c", preset="digits-mlp", **QUICK | {"train.seed": 1})
    assert not torch.equal(next(iter(a.parameters())), next(iter(c.parameters())))


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = vaekit.train(tmp_path / "run", preset="digits-mlp", **QUICK)
    loaded = vaekit.load(tmp_path / "run")
    x = torch.bernoulli(torch.full((7, 1, 8, 8), 0.4))
    assert torch.equal(model.encode(x).mean, loaded.encode(x).mean)
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))
    z = torch.randn(3, model.latent_dim)
    assert torch.equal(model.decode(z).mean, loaded.decode(z).mean)
    torch.manual_seed(3)
    e1 = model.elbo(x)
    torch.manual_seed(3)
    assert torch.equal(e1, loaded.elbo(x))
    assert loaded.sample(5).shape == (5, 1, 8, 8)


@pytest.mark.parametrize(
    "overrides",
    [
        {"model.likelihood": "gaussian", "data.binarize": "none", "model.likelihood.scale": "per-pixel"},
        {"model.likelihood": "logistic-mixture", "data.binarize": "none", "model.likelihood.components": 3},
        {"objective.name": "iwae", "objective.samples": 5},
        {"objective.warmup_epochs": 1.0, "objective.free_bits": 0.1, "objective.beta": 2.0},
        {"model.conditional": True},
        {"model.net": "conv", "model.net.channels": [16]},
    ],
    ids=["gaussian", "logmix", "iwae", "warmup-freebits-beta", "conditional", "conv"],
)
def test_every_part_trains_and_improves(tmp_path, overrides):
    cfg = make_config(preset="digits-mlp", overrides=QUICK | {"train.epochs": 4} | overrides)
    trainer = Trainer(cfg, tmp_path / "run")
    initial = evaluate_elbo(trainer.model, trainer.x_valid, trainer.y_valid)["elbo"]
    final = trainer.fit()["elbo"]
    assert final > initial, (initial, final)


def test_conditional_model_samples_per_class(tmp_path):
    model = vaekit.train(tmp_path / "run", preset="digits-mlp", **QUICK | {"model.conditional": True})
    assert model.sample(4, y=3).shape == (4, 1, 8, 8)
    with pytest.raises(vaekit.VaekitError, match="labels"):
        model.sample(4)


def test_bad_combinations_refused_before_training(tmp_path):
    cfg = make_config(preset="digits-mlp", overrides={"model.likelihood": "logistic-mixture"})
    with pytest.raises(ConfigError, match="binarize"):
        Trainer(cfg, tmp_path / "run")
    cfg = make_config(preset="digits-mlp", overrides={"model.net": "conv"})
    with pytest.raises(ConfigError, match="at least 4x4"):
        build_model(cfg.model, DataSchema.for_shape((1, 3, 10), 256, None))


def test_eval_view_static_binarization_is_fixed():
    x = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    a, b = eval_view(x, "dynamic", 5), eval_view(x, "dynamic", 5)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(eval_view(x, "none", 0), x.float() / 255)
