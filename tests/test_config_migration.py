"""Run folders of config format 1 (vaekit 0.1: one flat model section) load, evaluate and resume:
``migrate_v1`` turns them into today's nested part sections with the same model."""

from __future__ import annotations

import json

import pytest
import torch

import vaekit
from vaekit.cli import main as cli_main
from vaekit.config import Config, make_config, migrate_v1
from vaekit.errors import ConfigError
from vaekit.runs import folder as rd

# config.json as vaekit 0.1 wrote it for 'vaekit train --train.epochs 2 --train.progress false'
V1_RUN = {
    "format_version": 1, "vaekit_version": "0.1.0",
    "config": {
        "data": {"name": "digits", "data_dir": None, "binarize": "dynamic", "binarize_seed": 0,
                 "valid_fraction": 0.1},
        "model": {"kind": "vae", "latent_dim": 8, "latent_dims": [], "latent_channels": [], "net": "mlp",
                  "hidden": [256, 128], "channels": [32, 64], "res_blocks": 1, "activation": "relu",
                  "likelihood": "bernoulli", "likelihood_scale": "global", "likelihood_sigma": 0.1,
                  "mixture_components": 5, "prior": "normal", "prior_components": 50, "posterior": "gaussian",
                  "flow_steps": 2, "flow_hidden": 256, "flow_context": 32, "conditional": False},
        "objective": {"name": "elbo", "beta": 1.0, "warmup_epochs": 0.0, "free_bits": 0.0, "samples": 1,
                      "tc_weight": 0.0, "mmd_weight": 0.0, "mmd_kernel": "imq"},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0, "grad_clip": 0.0,
                  "seed": 0,
                  "device": "auto", "eval_batch_size": 1000, "early_stop_patience": 0, "checkpoint_every": 0,
                  "max_minutes": 0.0, "num_samples": 64, "threads": 0, "progress": False, "max_bad_steps": 20,
                  "max_rollbacks": 3, "lr_backoff": 0.5, "precision": "auto", "compile": "auto",
                  "streaming": False, "num_workers": 2},
    },
    "data": {"name": "digits", "event_shape": [1, 8, 8], "levels": 17, "num_classes": 10, "kind": "image"},
}


def test_a_format_1_run_folder_loads_evaluates_and_resumes(tmp_path):
    run = tmp_path / "run"
    vaekit.train(run, **{"train.epochs": 2, "train.progress": False})  # the same run, today's format
    today = json.loads((run / rd.CONFIG).read_text())
    reference = vaekit.load(run)
    (run / rd.CONFIG).write_text(json.dumps(V1_RUN))
    cfg, data = rd.read_config(run)
    assert cfg.to_dict() == today["config"] and data.schema.to_dict() == today["data"]["schema"]
    old = vaekit.load(run)
    for (name, a), (_, b) in zip(reference.state_dict().items(), old.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert cli_main(["--quiet", "evaluate", str(run), "--nll-samples", "20"]) == 0
    assert cli_main(["--quiet", "resume", str(run)]) == 0  # complete: nothing to do, nothing rewritten
    assert json.loads((run / rd.CONFIG).read_text()) == V1_RUN


@pytest.mark.parametrize(("flat", "shape", "nested"), [
    ({"net": "auto", "hidden": [400], "latent_dim": 20}, (1, 28, 28),
     {"net": {"name": "conv", "channels": [32, 64], "width": 400, "activation": "relu"}, "latent_dim": 20}),
    ({"net": "auto", "hidden": [64, 32]}, (1, 8, 8), {"net": {"name": "mlp", "hidden": [64, 32],
                                                              "activation": "relu"}}),
    ({"net": "mlp", "posterior": "iaf", "flow_steps": 3, "flow_hidden": 64, "flow_context": 8,
      "prior": "vamp",
      "prior_components": 500},
     (1, 28, 28), {"posterior": {"name": "iaf", "steps": 3, "hidden": 64, "context": 8},
                   "prior": {"name": "vamp", "components": 500}}),
    ({"net": "mlp", "likelihood": "gaussian", "likelihood_scale": "per-pixel", "likelihood_sigma": 0.3},
     (3, 32, 32), {"likelihood": {"name": "gaussian", "scale": "per-pixel", "sigma": 0.3}}),
    ({"kind": "hierarchical", "net": "auto", "latent_dims": [32], "latent_channels": [8], "hidden": [256],
      "res_blocks": 2, "likelihood": "logistic-mixture", "mixture_components": 3}, (1, 28, 28),
     {"name": "hierarchical", "latent_dims": [32], "latent_channels": [8], "width": 256,
      "net": {"name": "resnet", "channels": [32, 64], "width": 256, "blocks": 2, "activation": "relu"},
      "likelihood": {"name": "logistic-mixture", "components": 3}}),
])
def test_migrate_v1_puts_each_option_under_its_part(flat, shape, nested):
    model = Config.from_dict(migrate_v1({"model": flat}, shape)).model
    expected = Config.from_dict({"model": nested}).model
    assert model == expected


def test_a_format_1_key_names_its_new_place():
    with pytest.raises(ConfigError, match="'model.prior_components' is now 'model.prior.components'"):
        make_config(overrides={"model.prior_components": 5})
