"""Kill test: a real `vaekit train` process is killed (SIGKILL at seeded random moments, once in the
middle of a checkpoint write, once Ctrl-C) and resumed with `vaekit resume` each time; the final
weights, optimizer state and metrics must equal those of an uninterrupted run bit for bit (CPU)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import load_dataset
from vaekit.errors import CheckpointError
from vaekit.runs.checkpoint import load_tensors

SRC = Path(__file__).resolve().parents[1] / "src"
TRAIN_ARGS = (
    "--model.net.hidden [32] --model.latent_dim 4 --data.binarize dynamic --train.batch_size 32 "
    "--train.lr 0.003 --train.progress false --train.threads 1 --train.device cpu --train.num_samples 4 "
    "--train.checkpoint_every 4"
).split()
RANDOM_KILLS, SLOW_RANDOM_KILLS = 3, 20  # plus one kill in the middle of a write and one Ctrl-C
WRITE_PAUSE_S = 0.5
# `vaekit` with every atomic write paused half-way, so a kill can land in the middle of one
SLOW_WRITES = f"""
import os, sys, time
_fdopen = os.fdopen
class HalfThenPause:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *exc): return self.f.__exit__(*exc)
    def __getattr__(self, name): return getattr(self.f, name)
    def write(self, data):
        self.f.write(data[: len(data) // 2]); self.f.flush(); time.sleep({WRITE_PAUSE_S})
        return self.f.write(data[len(data) // 2 :])
os.fdopen = lambda *a, **k: HalfThenPause(_fdopen(*a, **k))
from vaekit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Story:
    """What happened to the interrupted run, round by round."""

    kills: int = 0
    mid_write_kills: int = 0
    torn_temp_refused: int = 0
    checkpoints_loaded_after_kill: int = 0
    resume_steps: list[int] = field(default_factory=list)
    sigint: dict = field(default_factory=dict)
    stale_temps_after_resume: int = 0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": "0"}


def _launch(args: list[str], slow_writes: bool = False) -> subprocess.Popen:
    code = ["-c", SLOW_WRITES] if slow_writes else ["-m", "vaekit"]
    return subprocess.Popen(
        [sys.executable, *code, *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _digits_npz(path: Path) -> Path:
    """The digits data set as an .npz (workers then skip importing scikit-learn)."""
    d = load_dataset("digits")
    arrays = {f"{k}_{s}": getattr(d.split(s), k).numpy() for s in ("train", "valid", "test") for k in "xy"}
    np.savez(path, **arrays)
    return path


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll ``cond`` until true; False if the process ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError("timed out waiting for the training process")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed or removed meanwhile
        return 0


def _temps(run: Path) -> list[Path]:
    return sorted(run.glob(".checkpoint.safetensors.*.tmp"))


def _kill_after_progress(proc: subprocess.Popen, run: Path, delay: float) -> bool:
    """Wait until this process writes a checkpoint, then SIGKILL it ``delay`` seconds later."""
    before = _mtime(run / "checkpoint.safetensors")
    if not _wait_for(lambda: _mtime(run / "checkpoint.safetensors") != before, proc):
        return False
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return True


def _check_after_kill(run: Path, story: Story) -> None:
    """The checkpoint on disk is whole (its checksum verifies); a left-over temp file (never read by
    vaekit, removed by resume) is refused when torn."""
    load_tensors(run / "checkpoint.safetensors")
    story.checkpoints_loaded_after_kill += 1
    for tmp in _temps(run):
        try:
            load_tensors(tmp)  # killed after the write, before the rename: whole
        except CheckpointError:
            story.torn_temp_refused += 1


def _resume_step(stderr: str) -> int:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("Resuming"))
    return int(line.rsplit("step ", 1)[1])


def _interrupt(what: str, proc: subprocess.Popen, run: Path, rng: random.Random, story: Story) -> str:
    """Apply one planned interruption to ``proc``; returns its stderr."""
    if what == "mid-write":
        old = set(_temps(run))  # left by an earlier kill; this process removes them when it starts
        landed = _wait_for(lambda: any(_size(p) > 0 for p in set(_temps(run)) - old), proc)
        if landed:
            proc.send_signal(signal.SIGKILL)
            story.mid_write_kills += 1
    elif what == "kill":
        landed = _kill_after_progress(proc, run, rng.uniform(0.0, 0.4))
    else:
        before = _mtime(run / "checkpoint.safetensors")
        landed = _wait_for(lambda: _mtime(run / "checkpoint.safetensors") != before, proc)
        time.sleep(rng.uniform(0.0, 0.3))
        landed = landed and proc.poll() is None
        proc.send_signal(signal.SIGINT)
    assert landed, f"the run finished before the planned {what}; make it longer"
    _, err = proc.communicate(timeout=60)
    if what == "sigint":
        state = load_tensors(run / "checkpoint.safetensors")[1]["state"]
        story.sigint = {"rc": proc.returncode, "stderr": err, "step": state["step"]}
    else:
        story.kills += 1
        _check_after_kill(run, story)
    return err


def run_story(tmp: Path, epochs: int, random_kills: int, seed: int) -> tuple[Path, Path, Story]:
    """An uninterrupted run and an interrupted one side by side; returns both folders and what
    happened to the interrupted one: SIGKILLs at seeded random moments, one SIGKILL in the
    middle of a checkpoint write (second round) and one Ctrl-C (fourth round)."""
    data = _digits_npz(tmp / "digits.npz")
    args = ["--data", f"npz:{data}", "--train.epochs", str(epochs), *TRAIN_ARGS]
    base, run = tmp / "baseline", tmp / "killed"
    baseline = _launch(["train", "--out", str(base), *args])
    rng, story = random.Random(seed), Story()
    plan = ["kill"] * random_kills
    plan.insert(1, "mid-write")
    plan.insert(3, "sigint")
    cmd = ["train", "--out", str(run), *args]
    for what in plan:
        proc = _launch(cmd, slow_writes=what == "mid-write")
        err = _interrupt(what, proc, run, rng, story)
        if cmd[0] == "resume":
            story.resume_steps.append(_resume_step(err))
        cmd = ["resume", str(run)]
    proc = _launch(cmd)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    story.resume_steps.append(_resume_step(err))
    story.stale_temps_after_resume = len(_temps(run))
    _, b_err = baseline.communicate(timeout=120)
    assert baseline.returncode == 0, b_err
    return base, run, story


def _assert_same_run(base: Path, run: Path) -> None:
    """Same weights, optimizer state, RNG and training state, bit for bit, down to the whole files'
    sha256; same metrics."""
    for name in ("model.safetensors", "checkpoint.safetensors"):
        assert hashlib.sha256((base / name).read_bytes()).digest() == hashlib.sha256(
            (run / name).read_bytes()).digest(), name
        a, meta_a = load_tensors(base / name)
        b, meta_b = load_tensors(run / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
        assert meta_a == meta_b, name
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "train_time_s"}  # noqa: E731
    ra = [strip(ln) for ln in (base / "metrics.jsonl").read_text().splitlines()]
    rb = [strip(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert ra == rb


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> tuple[Path, Path, Story]:
    return run_story(tmp_path_factory.mktemp("kill"), epochs=30, random_kills=RANDOM_KILLS, seed=1234)


def test_killed_and_resumed_run_equals_uninterrupted_run_bitwise(story):
    base, run, s = story
    assert s.kills == RANDOM_KILLS + 1 and s.mid_write_kills == 1
    _assert_same_run(base, run)


def test_no_torn_checkpoint_is_ever_loaded(story):
    _, run, s = story
    assert s.checkpoints_loaded_after_kill == s.kills
    assert s.torn_temp_refused >= 1  # the kill during a write left a half-written temp file
    assert s.stale_temps_after_resume == 0  # ... which resume removed
    assert s.resume_steps == sorted(s.resume_steps)


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(story):
    _, run, s = story
    assert s.sigint["rc"] == 130
    assert f"checkpoint saved at step {s.sigint['step']}" in s.sigint["stderr"]
    assert f"vaekit resume {run}" in s.sigint["stderr"]
    assert "Traceback" not in s.sigint["stderr"]


@pytest.mark.slow
def test_many_kills_still_bitwise(tmp_path):
    base, run, s = run_story(tmp_path, epochs=200, random_kills=SLOW_RANDOM_KILLS, seed=99)
    assert s.kills == SLOW_RANDOM_KILLS + 1
    _assert_same_run(base, run)
