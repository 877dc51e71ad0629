"""What long commands print while they run: a tqdm bar on a terminal, plain periodic lines with an ETA
in a log file (no carriage returns), nothing but errors under --quiet."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.progress import LineProgress, NoProgress, reporter
from vaekit.training.policy import compile_reason

QUICK = {"train.epochs": 1, "model.net.hidden": [32], "train.threads": 1}
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


def test_train_says_how_it_runs_and_what_came_out(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model.net.hidden", "[32]", "--train.threads", "1", "--train.epochs", "2",
            "--train.batch_size", "100", "--train.progress", "false", "--train.precision", "fp32"]
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), *args]) == 0
    got = capsys.readouterr()
    banner = got.err.splitlines()[0]
    assert banner.startswith("training on cpu, 1 CPU thread, fp32, eager (not compiled) (train.compile=auto: "
                             "a CPU run compiles at >= 50,000 steps, this one has "), banner
    tail = r"; [\d,]+ parameters; examples: train [\d,]+, valid [\d,]+, test [\d,]+$"
    assert re.search(tail, banner), banner
    # train.progress=false: no in-epoch progress, still one line per epoch, with units
    assert not re.search(r"^epoch \d/2: ", got.err, re.M)
    line = r"^epoch (\d)/2  train loss [-\d.]+  valid ELBO [-\d.]+ nats .* [\d.]+ s$"
    epochs = re.findall(line, got.err, re.M)
    assert epochs == ["1", "2"], got.err
    elbo = json.loads((out / "evaluation.json").read_text())["test"]["elbo"]
    closing = f"test ELBO {elbo:.3f} nats per example; run written to {out} (report: {out / 'report.md'})"
    assert got.out.strip().splitlines()[-1] == closing
    policy = json.loads((out / "policy.json").read_text())["sessions"]
    assert len(policy) == 1 and policy[0]["started_at_step"] == 0 and policy[0]["threads"] == 1
    assert policy[0]["device"] == "cpu" and policy[0]["precision"] == "fp32"
    assert policy[0]["compiled"] is False and policy[0]["compiled_from_step"] is None
    total = int(re.search(r"this one has ([\d,]+)", policy[0]["compile_reason"])[1].replace(",", ""))
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert total == last["step"] and f"this one has {total:,})" in banner
    n_train = int(re.search(r"examples: train ([\d,]+)", banner)[1].replace(",", ""))
    assert total == 2 * -(-n_train // 100)
    report = (out / "report.md").read_text()
    assert "## Speed policy" in report
    assert f"| 0 | cpu | 1 | fp32 | no | {policy[0]['compile_reason']} |" in report
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), "--overwrite", *args]) == 0
    assert len(json.loads((out / "policy.json").read_text())["sessions"]) == 1


@pytest.mark.parametrize(("total", "compiled", "says"), [
    (49_999, False, "a CPU run compiles at >= 50,000 steps, this one has 49,999"),
    (50_000, True, "a CPU run of 50,000 steps (>= 50,000)"),
    (80_000, False, "no C++ compiler found"),
])
def test_the_cpu_compile_switch_is_explained(total, compiled, says):
    reason = compile_reason("auto", torch.device("cpu"), total, compiled)
    assert reason == f"train.compile=auto: {says}" if not says.startswith("no") else says in reason
    assert compile_reason(False, torch.device("cpu"), total, False) == "train.compile=off"


@pytest.mark.parametrize("record", ["kept", "unreadable"])
def test_resume_adds_its_session_to_the_policy_and_says_where_it_starts(tmp_path, capsys, record):
    out = tmp_path / "run"
    args = ["--model.net.hidden", "[32]", "--train.threads", "1", "--train.epochs", "2",
            "--train.batch_size", "500", "--train.precision", "fp32",
            "--train.max_minutes", "1e-9"]  # stops after epoch 1
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), *args]) == 0
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    if record == "unreadable":
        (out / "policy.json").write_text("{not json")
    capsys.readouterr()
    assert main(["resume", str(out)]) == 0
    got = capsys.readouterr()
    banner = next(line for line in got.err.splitlines() if line.startswith("training "))
    assert banner.startswith(f"training from step {step:,} on cpu, 1 CPU thread, fp32, "), banner
    sessions = json.loads((out / "policy.json").read_text())["sessions"]
    starts = [0, step] if record == "kept" else [step]  # an unreadable record is replaced, never fatal
    assert [s["started_at_step"] for s in sessions] == starts
    elbo = json.loads((out / "evaluation.json").read_text())["test"]["elbo"]
    closing = got.out.strip().splitlines()[-1]
    assert closing.startswith(f"test ELBO {elbo:.3f} nats per example; run written to")
    assert (out / "report.md").read_text().count("| cpu | 1 | fp32 | no |") == len(starts)
