"""`vaekit resume` never destroys a run (issue 15), and the same seed writes the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaekit.cli import main
from vaekit.runs.checkpoint import load_tensors
from vaekit.runs.report import record_evaluation

SRC = Path(__file__).resolve().parents[1] / "src"
TRAIN = ["--preset", "digits-mlp", "--train.epochs", "3", "--model.net.hidden", "[16]",
         "--model.latent_dim", "4",
         "--train.progress", "false", "--train.threads", "1", "--train.device", "cpu"]
EVALUATED = {"nll": -70.5, "K": 10, "seed": 0, "iwae_bounds": {"1": -75.0, "10": -71.0},
             "kl_per_dim": [1.0, 2.0, 0.5, 0.1]}


def _files(run: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file in the run folder."""
    return {str(p.relative_to(run)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 3-epoch run whose evaluation.json holds numbers as `vaekit evaluate` adds them."""
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", "--out", str(out), *TRAIN]) == 0
    record_evaluation(out, "test", EVALUATED)
    return out


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    return dst


def test_resume_of_a_finished_run_says_so_and_touches_nothing(copy, capsys):
    before = _files(copy)
    assert main(["resume", str(copy)]) == 0
    err = capsys.readouterr().err
    assert "already complete (3 of 3 epochs" in err and "Resuming" not in err
    assert _files(copy) == before


def test_an_early_stopped_run_is_complete_and_a_time_limited_one_continues(copy, capsys):
    ckpt = load_tensors(copy / "checkpoint.safetensors")[1]["state"]
    cfg = json.loads((copy / "config.json").read_text())
    cfg["config"]["train"]["epochs"] = 5  # as if stopped early at 3 of 5 (or by train.max_minutes)
    cfg["config"]["train"]["early_stop_patience"] = max(ckpt["bad_epochs"], 1)
    (copy / "config.json").write_text(json.dumps(cfg))
    from vaekit.training.trainer import Trainer

    trainer = Trainer.resume(copy)
    assert trainer.stopped_early == (ckpt["bad_epochs"] >= 1)
    assert trainer.complete == trainer.stopped_early
    cfg["config"]["train"]["early_stop_patience"] = ckpt["bad_epochs"] + 1  # not stopped early
    (copy / "config.json").write_text(json.dumps(cfg))
    trainer = Trainer.resume(copy)
    assert not trainer.complete
    assert main(["resume", str(copy)]) == 0
    assert [json.loads(ln)["epoch"] for ln in (copy / "metrics.jsonl").read_text().splitlines()][-1] >= 4


@pytest.mark.parametrize("damage", ["deleted", "a folder"])
def test_a_trained_run_without_a_usable_checkpoint_is_refused_untouched(copy, damage, capsys):
    ckpt = copy / "checkpoint.safetensors"
    ckpt.unlink()
    if damage == "a folder":
        ckpt.mkdir()
    before = _files(copy)
    assert main(["resume", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "vaekit: error:" in err and "fix:" in err and "Traceback" not in err
    assert "checkpoint.safetensors" in err and ".tmp" not in err
    assert _files(copy) == before
    assert (copy / "metrics.jsonl").stat().st_size > 0


def test_metrics_further_ahead_than_the_checkpoint_are_refused_not_trimmed(copy, finished, capsys):
    one = copy.parent / "one"
    assert main(["train", "--out", str(one), *TRAIN, "--train.epochs", "1"]) == 0
    shutil.copy(one / "checkpoint.safetensors", copy / "checkpoint.safetensors")  # epochs 1..3 vs 1
    before = _files(copy)
    assert main(["resume", str(copy)]) == 2
    assert "older than the metrics" in capsys.readouterr().err
    assert _files(copy) == before


def test_finishing_a_run_keeps_what_evaluate_wrote(tmp_path):
    record_evaluation(tmp_path, "test", EVALUATED)
    record_evaluation(tmp_path, "test", {"elbo": -80.0, "recon": -75.0, "kl": 5.0})
    record_evaluation(tmp_path, "valid", {"elbo": -81.0})
    doc = json.loads((tmp_path / "evaluation.json").read_text())
    assert doc["test"] == {**EVALUATED, "elbo": -80.0, "recon": -75.0, "kl": 5.0}
    assert doc["valid"] == {"elbo": -81.0}


def test_a_run_killed_before_its_config_is_restarted_by_train(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".config.json.abcd1234.tmp").write_text('{"format_')  # the torn write a kill leaves
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and f"vaekit train ... --out {out}" in err
    assert main(["train", "--out", str(out), *TRAIN]) == 0  # no --overwrite needed: no run there
    assert not list(out.glob(".*.tmp"))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_same_seed_runs_write_byte_identical_files(tmp_path):
    """Separate processes (the safetensors header's hash-map order differs between processes)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        subprocess.run([sys.executable, "-m", "vaekit", "train", "--out", str(run), *TRAIN], env=env,
                       check=True, capture_output=True)
    for name in ("model.safetensors", "checkpoint.safetensors", "config.json", "samples.png",
                 "reconstructions.png"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
