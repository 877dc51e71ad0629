"""The command line end to end on digits: train, evaluate, sample, reconstruct, encode, resume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main

TRAIN = ["--train.epochs", "3", "--model.net.hidden", "[32]", "--train.progress", "false",
         "--train.threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), *TRAIN]) == 0
    return out


def test_train_writes_the_run_folder(run):
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
                 "samples.png", "reconstructions.png", "report.md", "evaluation.json"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["train"]["epochs"] == 3 and cfg["config"]["model"]["net"]["hidden"] == [32]
    assert cfg["data"]["schema"]["event_shape"] == [1, 8, 8]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert "test" in (run / "report.md").read_text()


def test_evaluate_prints_json(run, capsys):
    assert main(["evaluate", str(run), "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "test" and res["n"] == 180
    assert res["elbo"] < 0 < res["recon"] and res["kl"] >= 0
    assert res["elbo"] == pytest.approx(-(res["recon"] + res["kl"]), abs=1e-6)


def test_sample_png_and_npy(run, tmp_path, capsys):
    assert main(["sample", str(run), "-n", "16", "-o", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] > 8
    assert main(["sample", str(run), "-n", "16", "-o", str(tmp_path / "s.npy"), "--seed", "3"]) == 0
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (16, 1, 8, 8) and 0 <= arr.min() and arr.max() <= 1


def test_reconstruct_and_encode(run, tmp_path):
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png"), "-n", "8"]) == 0
    assert (tmp_path / "r.png").is_file()
    assert main(["encode", str(run), "--data", "digits", "-o", str(tmp_path / "z.npy")]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (180, 8) and np.isfinite(z).all()


def test_resume_continues_to_more_epochs(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["config"]["train"]["epochs"] = 4
    (copy / "config.json").write_text(json.dumps(cfg))
    assert main(["resume", str(copy)]) == 0
    assert [json.loads(line)["epoch"] for line in (copy / "metrics.jsonl").read_text().splitlines()] == [
        1, 2, 3, 4]


def test_errors_are_short_and_helpful(tmp_path, capsys):
    args = ["train", "--preset", "digits-mlp", "--out", str(tmp_path / "x"), "--model.latnet_dim", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.latent_dim" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_module_entry_point_and_help():
    out = subprocess.run([sys.executable, "-m", "vaekit", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "--model.latent_dim" in out.stdout and "default: 16" in out.stdout
    for cmd in ("resume", "evaluate", "sample", "reconstruct", "encode"):
        r = subprocess.run([sys.executable, "-m", "vaekit", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, cmd
