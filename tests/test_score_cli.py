"""`vaekit score` on a tiny digits run trained without the digit 1: CSV, metrics, plot, threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vaekit.cli import main

TRAIN = ["--train.epochs", "2", "--model.net.hidden", "[32]", "--train.progress", "false",
         "--train.threads", "1", "--data.exclude_classes", "[1]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "run"
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), *TRAIN]) == 0
    return out


def test_score_writes_rows_metrics_and_plot(run, tmp_path, capsys):
    before = (run / "evaluation.json").read_bytes()
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), "-k", "4", "--fpr", "0.1", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "AUROC" in text and "FPR@95" in text
    table = np.genfromtxt(out, delimiter=",", names=True)
    assert table.dtype.names == ("index", "label", "neg_elbo", "nll", "complexity", "latent_density")
    assert len(table) == 180 and (table["index"] == np.arange(180)).all()
    assert (table["complexity"] < table["nll"]).all()  # L(x) > 0 is subtracted
    assert (tmp_path / "scores.png").is_file()
    saved = json.loads((run / "anomaly-threshold.json").read_text())
    assert saved["score"] == "latent_density" and saved["fpr"] == 0.1
    assert (run / "evaluation.json").read_bytes() == before  # the run's evaluation is left alone
    flagged = int((table["latent_density"] > saved["threshold"]).sum())
    assert f"{flagged} of 180 examples score above" in text


def test_score_errors(run, tmp_path, capsys):
    assert main(["score", str(run), "--anomaly-classes", "12", "-o", str(tmp_path / "s.csv")]) == 2
    assert "not a label" in capsys.readouterr().err
    assert main(["score", str(run), "--anomaly-classes", "a,b", "-o", str(tmp_path / "s.csv")]) == 2
    assert main(["score", str(run), "-o", str(tmp_path / "s.txt")]) == 2
    assert main(["score", str(run), "--score", "nope", "-o", str(tmp_path / "s.csv")]) == 2


def test_score_unlabelled_data_refuses_auroc(run, tmp_path, capsys):
    from vaekit.data import load_dataset

    x = load_dataset("digits").test.x.numpy()
    np.savez(tmp_path / "u.npz", x_train=x)
    assert main(["score", str(run), "--data", f"npz:{tmp_path / 'u.npz'}", "-k", "2",
                 "-o", str(tmp_path / "s.csv")]) == 2
    assert "needs anomaly labels" in capsys.readouterr().err


def test_score_on_a_run_trained_without_labels_refuses_anomaly_classes(tmp_path, capsys):
    from vaekit.data import load_dataset

    np.savez(tmp_path / "u.npz", x_train=load_dataset("digits").train.x.numpy())
    out = tmp_path / "unlabelled"
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), "--data", f"npz:{tmp_path / 'u.npz'}",
                 *TRAIN[:-2]]) == 0
    capsys.readouterr()
    assert main(["score", str(out), "--anomaly-classes", "1", "-k", "2", "-o", str(tmp_path / "s.csv")]) == 2
    assert "needs anomaly labels" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
