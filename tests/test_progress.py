"""What long commands print while they run: a tqdm bar on a terminal, plain periodic lines with an ETA
in a log file (no carriage returns), nothing but errors under --quiet."""

from __future__ import annotations

import io
import re

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.progress import LineProgress, NoProgress, reporter

QUICK = {"train.epochs": 1, "model.hidden": [32], "train.threads": 1}
LINE = re.compile(r"^(?P<desc>.+): (?P<done>\S+)/(?P<total>\S+) (?P<unit>\w+)s \((?P<pct>\d+)%\), ")


class Clock:
    """A fake clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("step_s", [0.5, 3.0, 7.0, 25.0])
def test_lines_in_a_file_are_periodic_whole_and_have_an_eta(step_s):
    clock, out = Clock(), io.StringIO()
    bar = reporter(100, "work", unit="sample", stream=out, clock=clock)
    assert isinstance(bar, LineProgress)
    for _ in range(100):
        clock.t += step_s
        bar.update(1)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    total_s = 100 * step_s
    assert len(lines) <= total_s // 10 + 1  # at most one per 10 s, plus the last
    assert len(lines) >= min(100, total_s // (10 + step_s))  # and one soon after every 10 s
    for line in lines:
        m = LINE.match(line)
        assert m and m["desc"] == "work" and m["total"] == "100" and m["unit"] == "sample", line
    assert lines[-1].startswith("work: 100/100 samples (100%)") and "done in" in lines[-1]
    for line in lines[:-1]:  # rate 1/step_s samples per second, so the ETA is (100 - done) * step_s
        done = int(LINE.match(line)["done"])
        eta = re.search(r"ETA (\d+):(\d+)(?::(\d+))?", line)
        assert eta, line
        parts = [int(g) for g in eta.groups() if g is not None]
        seconds = parts[0] * 60 + parts[1] if len(parts) == 2 else parts[0] * 3600 + parts[1] * 60 + parts[2]
        assert abs(seconds - (100 - done) * step_s) <= 1, line


def test_resumed_epoch_counts_its_rate_from_where_it_started():
    clock, out = Clock(), io.StringIO()
    bar = reporter(1000, "epoch 1/2", unit="step", stream=out, clock=clock, initial=600)
    clock.t += 20
    bar.update(200)  # 10 steps/s from step 600 on: 200 left, ETA 20 s
    bar.close()
    assert out.getvalue().splitlines()[0].startswith("epoch 1/2: 800/1000 steps (80%), 10 steps/s, ETA 00:20")


def test_a_terminal_gets_a_bar_and_off_means_silent():
    tty = Terminal()
    bar = reporter(10, "work", stream=tty)
    assert not isinstance(bar, LineProgress | NoProgress)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert "\r" in tty.getvalue()
    out = io.StringIO()
    off = reporter(10, "work", stream=out, enabled=False)
    off.update(10)
    off.close()
    assert off.disable and out.getvalue() == ""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("progress") / "run"
    vaekit.train(out, preset="digits-mlp", **QUICK, **{"train.progress": False})
    yield out
    torch.set_num_threads(threads)


def test_evaluate_into_a_file_prints_progress_lines(run, capsys):
    assert main(["evaluate", str(run), "--nll-samples", "20", "--json"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("log p(x), K=20: ")]
    assert lines and "samples (100%)" in lines[-1] and "done in" in lines[-1]


def test_encode_into_a_file_prints_progress_lines(run, tmp_path, capsys):
    assert main(["encode", str(run), "-o", str(tmp_path / "z.npy"), "--batch-size", "50"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and re.search(r"^encode test: (\d+)/\1 examples \(100%\)", err, re.M), err


def test_training_into_a_file_has_no_carriage_returns(tmp_path, capsys):
    vaekit.train(tmp_path / "run", preset="digits-mlp", **QUICK)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert re.search(r"^epoch 1/1: (\d+)/\1 steps \(100%\)", err, re.M), err
    assert re.search(r"^epoch 1/1  train loss", err, re.M), err


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_only_results_and_errors(run, tmp_path, capsys, where):
    def quiet(*args: str) -> list[str]:
        return ["--quiet", *args] if where == "before" else [*args, "--quiet"]

    assert main(quiet("evaluate", str(run), "--nll-samples", "5", "--json")) == 0
    got = capsys.readouterr()
    assert got.err == "" and '"nll"' in got.out
    assert main(quiet("sample", str(run), "-n", "4", "-o", str(tmp_path / "s.npy"))) == 0
    got = capsys.readouterr()
    assert got.err == "" and got.out == "" and (tmp_path / "s.npy").is_file()
    assert main(quiet("evaluate", str(run), "--nll-samples", "0")) == 2
    got = capsys.readouterr()
    assert "vaekit: error:" in got.err and "fix:" in got.err
