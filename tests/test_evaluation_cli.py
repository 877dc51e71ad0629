"""`vaekit evaluate` and `vaekit.evaluate` on a small trained run: the same numbers and keys from both,
written into evaluation.json, the report and its two figures."""

from __future__ import annotations

import json

import pytest
import torch

import vaekit
from vaekit.cli import main

QUICK = {"train.epochs": 1, "train.progress": False, "model.net.hidden": [32], "train.threads": 1}
KEYS = {"elbo", "recon", "kl", "nll", "bpd", "iwae_bounds", "active_units", "kl_per_dim", "split", "K",
        "seed", "n"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small model: one thread avoids OpenMP stalls on a shared CPU
    out = tmp_path_factory.mktemp("eval") / "run"
    vaekit.train(out, preset="digits-mlp", **QUICK)
    yield out
    torch.set_num_threads(threads)


def test_cli_json_and_python_api_agree(run, capsys):
    assert main(["evaluate", str(run), "--split", "test", "--nll-samples", "20", "--batch-size", "50",
                 "--seed", "3", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert KEYS <= set(cli)
    assert cli["split"] == "test" and cli["K"] == 20 and cli["seed"] == 3 and cli["n"] > 100
    assert list(cli["iwae_bounds"]) == ["1", "5", "20"]
    assert cli["iwae_bounds"]["1"] < cli["iwae_bounds"]["20"] == pytest.approx(-cli["nll"])
    assert 0 < cli["bpd"] == pytest.approx(cli["nll"] / (64 * 0.6931471805599453))
    assert cli["elbo"] == pytest.approx(-(cli["recon"] + cli["kl"]))
    assert len(cli["kl_per_dim"]) == 8 and 0 <= cli["active_units"] <= 8
    api = vaekit.evaluate(run, "test", batch_size=7, sample_chunk=3, seed=3, nll_samples=20)
    assert set(api) == set(cli)
    for key in ("elbo", "nll", "recon", "kl"):
        assert api[key] == pytest.approx(cli[key], abs=1e-4), key  # other chunks, same samples


def test_evaluation_lands_in_the_run_folder(run):
    res = vaekit.evaluate(run, "valid", nll_samples=10)
    doc = json.loads((run / "evaluation.json").read_text())
    assert doc["valid"]["nll"] == res["nll"]
    assert (run / "evaluation-iwae.png").stat().st_size > 1000
    assert (run / "evaluation-kl.png").stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "IWAE bound against k" in report and "KL per latent dimension" in report
    assert f"{res['nll']:.3f}" in report and "bpd = nll / (D ln 2)" in report


def test_bad_sample_count_is_a_short_error(run, capsys):
    assert main(["evaluate", str(run), "--nll-samples", "0"]) == 2
    err = capsys.readouterr().err
    assert "must be >= 1" in err and "fix:" in err
