"""A first-time user's friction with the command line: help texts, presets, the default preset,
--print-config, evaluate --examples, the report's epoch table and the curves' labels."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaekit.cli import build_parser, main
from vaekit.config import DEFAULT_PRESET, make_config, presets
from vaekit.runs.report import REPORT_EPOCHS, epochs_to_show

QUICK = ["--train.epochs", "2", "--model.net.hidden", "[32]", "--train.progress", "false",
         "--train.threads", "1"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_says_what_it_does_and_no_default_none():
    subs = _subparsers(build_parser())
    assert {"train", "resume", "evaluate", "sample", "reconstruct", "encode", "serve", "presets"} <= set(subs)
    for name, sub in subs.items():
        assert sub.description, f"'vaekit {name} --help' has no description"
        text = sub.format_help()
        assert "default: None" not in text, name
        assert "(default: )" not in text, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = (action.help or "").split("(default:")[0].strip()
            assert what, f"vaekit {name}: {action.option_strings or action.dest} does not say what it does"
    evaluate = subs["evaluate"].format_help()
    assert "the split to evaluate (default: test)" in " ".join(evaluate.split())


def test_presets_lists_each_preset_on_one_line(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == presets()
    assert all(len(line.split()) > 3 for line in lines)  # a description follows every name
    assert any(line.startswith(DEFAULT_PRESET) and line.endswith("(default)") for line in lines)
    assert any("beta-VAE (Higgins et al. 2017)" in line for line in lines)  # 'et al.' ends no sentence


def test_print_config_prints_the_resolved_config_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--print-config", "--model.latent_dim", "7", "--out", "runs/x"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["latent_dim"] == 7
    assert cfg["data"]["binarize"] == "dynamic"  # digits-mlp, the default preset, was applied
    assert list(tmp_path.iterdir()) == []


def test_train_without_a_preset_uses_the_default_preset(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    expected = make_config(preset=DEFAULT_PRESET, overrides={"train.epochs": 2, "model.net.hidden": [32],
                                                             "train.progress": False, "train.threads": 1})
    assert saved == expected.to_dict()
    assert saved["data"]["binarize"] == "dynamic"


def test_train_needs_out(capsys):
    assert main(["train"]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("friction") / "run"
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), *QUICK]) == 0
    return out


def test_evaluate_examples_takes_the_first_n_and_reports_wall_and_cpu_seconds(run, capsys):
    assert main(["evaluate", str(run), "--examples", "25", "--nll-samples", "20", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 25
    assert res["wall_seconds"] > 0 and res["cpu_seconds"] > 0 and "seconds" not in res
    saved = json.loads((run / "evaluation.json").read_text())["test"]
    assert saved["n"] == 25
    assert main(["evaluate", str(run), "--examples", "0"]) == 2
    assert "--examples" in capsys.readouterr().err


def _records(n: int) -> list[dict]:
    return [{"epoch": i + 1, "step": 10 * (i + 1), "elbo": -100.0 + min(i, 150 - i), "recon": 90.0,
             "kl": 10.0, "train_elbo": -99.0, "train_time_s": 1.0} for i in range(n)]


def test_the_report_shows_first_last_best_and_a_few_epochs_between():
    records = _records(200)
    shown = [r["epoch"] for r in epochs_to_show(records)]
    assert len(shown) == REPORT_EPOCHS and shown == sorted(shown)
    assert {1, 200, 76} <= set(shown)  # first, last, best (epoch 76 has the highest ELBO)
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    assert max(gaps) <= 2 * 200 / (REPORT_EPOCHS - 2)
    assert epochs_to_show(records[:5]) == records[:5]


def test_report_md_of_a_long_run_is_short(run):
    from vaekit.runs.report import render_report

    lines = [json.dumps(r) for r in _records(200)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    text = render_report(run).read_text()
    training = text.split("## Training")[1].split("\n## ")[0]
    rows = [line for line in training.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    assert len(rows) == REPORT_EPOCHS
    assert "metrics.jsonl holds every epoch" in text


def test_curves_have_readable_labels_and_whole_epoch_ticks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from vaekit import viz

    seen = {}
    real_savefig = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.get_legend().get_texts()]
        seen["ylabel"] = ax.get_ylabel()
        seen["ticks"] = [t for t in ax.get_xticks() if 1 <= t <= 3]
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", capture)
    viz.save_curves(_records(3), tmp_path / "curves.png")
    assert seen["labels"] == ["train ELBO", "validation ELBO"]
    assert "nats per example" in seen["ylabel"]
    assert seen["ticks"] and all(float(t).is_integer() for t in seen["ticks"])


def test_a_reader_that_stops_early_is_no_error():
    """'vaekit presets | head': a pipe closed before vaekit writes (here by a reader that reads
    nothing) is no error: exit 0 and no message."""
    script = f"'{sys.executable}' -m vaekit presets | true; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert proc.returncode == 0 and proc.stderr == ""
