"""Parts written outside vaekit (tests/plugins/): each registers itself, and trains, evaluates,
saves and loads through the command line with no edit to src/. The runs record their plugin
modules, so a fresh process finds the parts again from config.json alone."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main as cli_main

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
FAST = ["--model.net.hidden", "[64]", "--model.latent_dim", "2", "--data.binarize", "none",
        "--train.epochs", "40", "--train.batch_size", "32", "--train.progress", "false",
        "--train.threads", "1"]


def _train(tmp_path: Path, plugins: str, *args: str) -> Path:
    out = tmp_path / "run"
    assert cli_main(["--quiet", "train", "--plugins", plugins, "--out", str(out), *FAST, *args]) == 0
    return out


def _evaluate(run: Path) -> dict:
    assert cli_main(["--quiet", "evaluate", str(run), "--nll-samples", "100"]) == 0
    return json.loads((run / "evaluation.json").read_text())["test"]


def test_a_table_source_with_a_per_column_likelihood_and_a_new_prior(tmp_path):
    """Toy table: a uniform over 5 categories, b = a, c = a + Bernoulli(1/2) mod 8, so H = log 5 + log 2
    = 2.30 nats a row, and any model of independent columns needs >= H(a) + H(b) + H(c) = 5.2."""
    run = _train(tmp_path, "plugins.toy_sources,plugins.column_likelihood,plugins.laplace_prior",
                 "--data", "toy-table", "--model.likelihood", "columns", "--model.prior", "laplace",
                 "--model.prior.scale", "0.5")
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["plugins"] == ["plugins.toy_sources", "plugins.column_likelihood",
                                          "plugins.laplace_prior"]
    assert [c["categories"][-1] for c in saved["data"]["schema"]["columns"]] == ["4", "6", "7"]
    test = _evaluate(run)
    assert math.log(10) - 0.2 < test["nll"] < 4.5 and test["elbo"] <= -test["nll"] + 3 * test["nll_sem"]
    model = vaekit.load(run)
    assert type(model.prior).__name__ == "LaplacePrior" and float(model.prior.scale) == 0.5
    assert type(model.likelihood).__name__ == "ColumnLikelihood"
    assert cli_main(["--quiet", "sample", str(run), "-n", "50", "-o", str(tmp_path / "rows.npy")]) == 0
    encoded = np.load(tmp_path / "rows.npy")
    assert encoded.shape == (50, 20) and set(np.unique(encoded)) <= {0.0, 1.0}
    probs = model.sample(200, generator=torch.Generator().manual_seed(0)).numpy()  # the likelihood's mean
    rows = np.stack([b.argmax(1) for b in np.split(probs, [5, 12], axis=1)], 1)
    assert (rows[:, 0] == rows[:, 1]).mean() > 0.8  # the model learned that b copies a


def test_an_autoregressive_likelihood_reads_x_and_reloads_in_a_fresh_process(tmp_path):
    """Toy tokens: 6 starts x 2 steps, 12 equally likely sequences of 12 tokens: H = log 12 = 2.48 nats,
    where independent uniform tokens cost 12 log 6 = 21.5."""
    run = _train(tmp_path, "plugins.toy_sources,plugins.gru_likelihood", "--data", "toy-tokens",
                 "--model.likelihood", "gru", "--model.likelihood.hidden", "32")
    test = _evaluate(run)
    assert math.log(12) - 0.2 < test["nll"] < 4.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    command = [sys.executable, "-m", "vaekit", "--quiet", "evaluate", str(run), "--nll-samples", "100"]
    fresh = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((run / "evaluation.json").read_text())["test"]["nll"] == pytest.approx(test["nll"])
    torch.manual_seed(0)
    x = vaekit.load(run).sample(200, mean=False)  # drawn token by token
    steps = (x[:, 1:] - x[:, :-1]) % 6
    valid = (steps == steps[:, :1]).all(1) & ((steps[:, 0] == 1) | (steps[:, 0] == 2))
    assert valid.float().mean() > 0.75  # a random sequence is valid with probability 2 / 6**11


def test_an_objective_without_a_kl_term_logs_its_own_terms_through_the_cli(tmp_path):
    run = _train(tmp_path, "plugins.no_kl_objective", "--objective.name", "reconstruction",
                 "--train.epochs", "3",
                 "--data.binarize", "dynamic")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"train_nll_x", "train_z_norm"} <= set(r) and "train_kl" not in r for r in records)
    assert records[-1]["train_nll_x"] < records[0]["train_nll_x"]
    test = _evaluate(run)  # the model is still a VAE: its ELBO and log-likelihood are defined
    assert test["elbo"] < -test["nll"] + 3 * test["nll_sem"]
    assert type(vaekit.load(run)).__name__ == "VAE"


def test_a_plugin_that_is_missing_is_refused_with_the_module_named(tmp_path, capsys):
    assert cli_main(["train", "--plugins", "plugins.not_there", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "plugins.not_there" in err and "PYTHONPATH" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
