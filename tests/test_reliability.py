"""Faults: atomic writes that fail half-way, NaN/inf during training (skip, roll back, stop), Ctrl-C,
a full disk, malicious pickles in a run folder, and writes outside the run folder."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.config import make_config
from vaekit.data import load_dataset
from vaekit.data.base import DataSet, Split
from vaekit.errors import CheckpointError, DiskFullError, DivergenceError
from vaekit.runs import checkpoint as ck
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import atomic_write_bytes, load_tensors, save_tensors
from vaekit.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "model.net.hidden": [8],
    "model.latent_dim": 2,
    "train.epochs": 2,
    "train.progress": False,
    "train.threads": 1,
    "train.num_samples": 4,
    "train.checkpoint_every": 5,
    "train.device": "cpu",
}
HALF_WAY_FAILURES = {
    "OSError(EIO)": OSError(errno.EIO, "I/O error"),
    "KeyboardInterrupt": KeyboardInterrupt(),
    "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
}
NAN_STEPS_SKIPPED = [7]  # one bad step: skipped, no rollback
NAN_STEPS_ROLLBACK = [12, 13, 14]  # max_bad_steps=3 in a row: one rollback with half the learning rate
NAN_GRAD_STEPS = [3, 9]


def _cli_args(out: Path, **extra) -> list[str]:
    args = ["train", "--preset", "digits-mlp", "--out", str(out)]
    for k, v in (TINY | extra).items():
        args += [f"--{k}", str(v).replace(" ", "")]
    return args


def _config(**extra):
    return make_config(preset="digits-mlp", overrides=TINY | extra)


def _assert_same_weights(a: Path, b: Path) -> None:
    ta, _ = load_tensors(a / rd.MODEL)
    tb, _ = load_tensors(b / rd.MODEL)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


class _HalfThenRaise:
    """A file object that writes half of what it is given, then raises ``exc``."""

    def __init__(self, f, exc: BaseException) -> None:
        self.f, self.exc = f, exc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise self.exc


def _fail_writes(monkeypatch, exc: BaseException, name: str, after: int = 0) -> None:
    """Make the write of temp files for ``name`` fail half-way, after ``after`` good ones."""
    real = os.fdopen
    seen = {"n": 0}

    def fdopen(fd, *a, **k):
        f = real(fd, *a, **k)
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
            seen["n"] += 1
            if seen["n"] > after:
                return _HalfThenRaise(f, exc)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)


# -- atomic writes ----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
@pytest.mark.parametrize("exc", list(HALF_WAY_FAILURES.values()), ids=list(HALF_WAY_FAILURES))
def test_write_failing_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch, exc):
    path = tmp_path / "checkpoint.safetensors"
    save_tensors(path, {"w": torch.arange(1000.0)}, {"step": 1})
    before = path.read_bytes()
    _fail_writes(monkeypatch, exc, path.name)
    expected = DiskFullError if getattr(exc, "errno", None) == errno.ENOSPC else type(exc)
    with pytest.raises(expected) as info:
        save_tensors(path, {"w": torch.zeros(1000)}, {"step": 2})
    if expected is DiskFullError:
        assert "disk is full" in info.value.problem and "intact" in info.value.problem
    assert path.read_bytes() == before
    tensors, meta = load_tensors(path)
    assert meta == {"step": 1} and torch.equal(tensors["w"], torch.arange(1000.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_disk_full_on_a_first_write_does_not_claim_a_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    _fail_writes(monkeypatch, HALF_WAY_FAILURES["ENOSPC"], path.name)
    with pytest.raises(DiskFullError) as info:
        save_tensors(path, {"w": torch.zeros(1000)}, {"step": 1})
    assert "there was no earlier checkpoint.safetensors" in info.value.problem
    assert "intact" not in info.value.problem
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions_and_stale_temps_are_removed(tmp_path):
    old = os.umask(0o022)
    try:
        ck._file_mode.cache_clear()
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0o600
    finally:
        os.umask(old)
        ck._file_mode.cache_clear()
    (tmp_path / ".checkpoint.safetensors.k2j_x9ab.tmp").write_bytes(b"torn")
    (tmp_path / ".notes.tmp").write_text("a user's file")
    assert [p.name for p in ck.remove_stale_temps(tmp_path)] == [".checkpoint.safetensors.k2j_x9ab.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "a.json"]


def test_non_finite_values_never_overwrite_a_good_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    save_tensors(path, {"w": torch.ones(3)})
    before = path.read_bytes()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(CheckpointError, match="NaN or infinite"):
            save_tensors(path, {"w": torch.tensor([1.0, bad, 2.0])})
    assert path.read_bytes() == before
    trainer = Trainer(_config(), tmp_path / "run")
    assert trainer.save_checkpoint()
    saved = (tmp_path / "run" / rd.CHECKPOINT).read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    assert not trainer.save_checkpoint()
    assert (tmp_path / "run" / rd.CHECKPOINT).read_bytes() == saved


# -- divergence -------------------------------------------------------------------------------


def _nan_loss_on(monkeypatch, steps: list[int]) -> None:
    """Corrupt the training loss into NaN on the given optimizer steps, the first time each is
    taken (a transient fault: after a rollback the same steps run clean)."""
    real, pending = Trainer._loss, set(steps)

    def loss(self, *a, **k):
        loss, terms = real(self, *a, **k)
        if self.state.step in pending:
            pending.discard(self.state.step)
            loss = loss * float("nan")
        return loss, terms

    monkeypatch.setattr(Trainer, "_loss", loss)


def _saved_tensors_are_finite(monkeypatch) -> list[int]:
    """Record every checkpoint write and check it holds only finite values."""
    real, saves = ck.save_tensors, []

    def save(path, tensors, meta=None):
        assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
        saves.append(1)
        return real(path, tensors, meta)

    monkeypatch.setattr("vaekit.training.loop.save_tensors", save)
    return saves


def test_a_single_nan_step_is_skipped(tmp_path, monkeypatch):
    _nan_loss_on(monkeypatch, NAN_STEPS_SKIPPED)
    saves = _saved_tensors_are_finite(monkeypatch)
    trainer = Trainer(_config(), tmp_path / "run")
    trainer.fit()
    assert trainer.state.skipped_steps == 1 and trainer.state.rollbacks == 0
    assert trainer.opt.param_groups[0]["lr"] == trainer.cfg.train.lr and saves


def test_nan_gradients_skip_the_update(tmp_path):
    trainer = Trainer(_config(**{"train.epochs": 1}), tmp_path / "run")
    first = next(trainer.model.parameters())
    history = []

    def poison(grad):
        history.append((trainer.state.step, first.detach().clone()))
        return grad * float("nan") if trainer.state.step in NAN_GRAD_STEPS else grad

    first.register_hook(poison)
    trainer.fit()
    assert trainer.state.skipped_steps == len(NAN_GRAD_STEPS)
    params = dict(history)
    for s in NAN_GRAD_STEPS:  # the parameters after a poisoned step equal those before it
        assert torch.equal(params[s], params[s + 1])
    assert not torch.equal(params[1], params[2])


def test_repeated_nan_rolls_back_with_a_lower_learning_rate(tmp_path, monkeypatch, capsys):
    _nan_loss_on(monkeypatch, NAN_STEPS_ROLLBACK)
    saves = _saved_tensors_are_finite(monkeypatch)
    cfg = _config(**{"train.max_bad_steps": 3, "train.lr_backoff": 0.25})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    st = trainer.state
    assert st.rollbacks == 1 and st.lr_scale == 0.25 and st.skipped_steps == 3
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(cfg.train.lr * 0.25)
    assert "rolled back to the checkpoint of step 10" in capsys.readouterr().err
    assert saves and all(torch.isfinite(p).all() for p in trainer.model.parameters())
    # the rollback count and lowered rate are part of the checkpoint: a resumed run keeps them
    resumed = Trainer.resume(tmp_path / "run")
    assert resumed.state.rollbacks == 1
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(cfg.train.lr / 4)


def _huge_values_data() -> DataSet:
    """Digits scaled to 1e30: finite data, but the Gaussian likelihood's loss overflows."""
    d = load_dataset("digits")
    huge = lambda s: Split(s.x * 1e30, s.y)  # noqa: E731
    return DataSet("huge", huge(d.train), huge(d.valid), huge(d.test), "image", None, 10)


@pytest.mark.parametrize("max_rollbacks", [0, 2])
def test_divergence_stops_with_a_message_and_the_checkpoint_intact(tmp_path, max_rollbacks, capsys):
    overrides = TINY | {
        "model.likelihood": "gaussian",
        "data.binarize": "none",
        "train.max_bad_steps": 2,
        "train.max_rollbacks": max_rollbacks,
    }
    with pytest.raises(DivergenceError) as info:
        vaekit.train(tmp_path / "run", preset="digits-mlp", data=_huge_values_data(), **overrides)
    msg = str(info.value)
    assert f"after {max_rollbacks} rollback(s)" in msg and "intact" in msg
    for hint in ("--train.lr", "--train.grad_clip", "--model.likelihood.scale", "extreme values"):
        assert hint in msg
    assert capsys.readouterr().err.count("rolled back") == max_rollbacks
    tensors, meta = load_tensors(tmp_path / "run" / rd.CHECKPOINT)
    assert meta["state"]["step"] == 0 and all(
        torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()
    )
    assert not (tmp_path / "run" / rd.MODEL).exists()


# -- Ctrl-C -----------------------------------------------------------------------------------


def _sigint_on(monkeypatch, step: int, times: int) -> None:
    real = Trainer._loss

    def loss(self, *a, **k):
        if self.state.step == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "_loss", loss)


def test_ctrl_c_saves_after_the_step_and_twice_stops_at_once(tmp_path, monkeypatch, capsys):
    _sigint_on(monkeypatch, step=7, times=1)
    assert main(_cli_args(tmp_path / "a")) == 130
    err = capsys.readouterr().err
    assert "checkpoint saved at step 8" in err and f"vaekit resume {tmp_path / 'a'}" in err
    assert load_tensors(tmp_path / "a" / rd.CHECKPOINT)[1]["state"]["step"] == 8
    _sigint_on(monkeypatch, step=7, times=2)
    assert main(_cli_args(tmp_path / "b")) == 130
    err = capsys.readouterr().err
    assert "the last checkpoint is intact" in err and "Traceback" not in err
    assert load_tensors(tmp_path / "b" / rd.CHECKPOINT)[1]["state"]["step"] == 5  # the periodic one
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_resume_before_the_first_checkpoint_starts_over(tmp_path, capsys):
    cfg = _config(**{"train.epochs": 1})
    Trainer(cfg, tmp_path / "a").fit()
    Trainer(cfg, tmp_path / "b")  # killed after writing config.json, before any checkpoint
    assert main(["resume", str(tmp_path / "b")]) == 0
    assert "no checkpoint yet: starting from the beginning" in capsys.readouterr().err
    _assert_same_weights(tmp_path / "a", tmp_path / "b")


def test_time_limit_stops_at_an_epoch_end_and_resume_finishes_the_same_run(tmp_path, capsys):
    Trainer(_config(**{"train.epochs": 3}), tmp_path / "a").fit()
    Trainer(_config(**{"train.epochs": 3, "train.max_minutes": 1e-9}), tmp_path / "b").fit()
    assert "time limit: stopped after epoch 1 of 3" in capsys.readouterr().err
    assert (tmp_path / "b" / rd.MODEL).is_file()  # a finished, usable model of what was trained
    for epochs_done in (2, 3):  # each resume is a new job with the same limit: one more epoch
        assert main(["resume", str(tmp_path / "b")]) == 0
        assert len((tmp_path / "b" / rd.METRICS).read_text().splitlines()) == epochs_done
        assert ("time limit" in capsys.readouterr().err) == (epochs_done < 3)  # none after the last epoch
    _assert_same_weights(tmp_path / "a", tmp_path / "b")


# -- full disk --------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_full_disk_stops_with_a_message_and_resume_finishes_the_same_run(tmp_path, monkeypatch, capsys):
    assert main(_cli_args(tmp_path / "baseline")) == 0
    with monkeypatch.context() as m:  # writes 1 (step 0) and 2 (step 5) succeed, 3 (step 10) fails
        _fail_writes(m, OSError(errno.ENOSPC, "No space left on device"), rd.CHECKPOINT, after=2)
        assert main(_cli_args(tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and "intact" in err and f"vaekit resume {tmp_path / 'run'}" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert load_tensors(tmp_path / "run" / rd.CHECKPOINT)[1]["state"]["step"] == 5
    assert main(["resume", str(tmp_path / "run")]) == 0
    _assert_same_weights(tmp_path / "baseline", tmp_path / "run")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 24 KiB file system (root only): room for config + first checkpoint, not the second."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mnt)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_really_full_disk(small_tmpfs, capsys):
    run = small_tmpfs / "run"
    args = _cli_args(run, **{"train.checkpoint_every": 2})
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and "intact" in err and "Traceback" not in err
    assert load_tensors(run / rd.CHECKPOINT)[1]["state"]["step"] == 0
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)
    assert main(["resume", str(run)]) == 0


# -- safety: no code runs from model files, no writes outside the run folder ------------------


class _Payload:
    """Unpickling this creates a marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    vaekit.train(out, preset="digits-mlp", **TINY | {"train.epochs": 1})
    return out


def test_planted_pickles_are_never_executed(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker))
    torch.save(_Payload(marker), run / "model.pt")
    (run / "checkpoint.pt").write_bytes(evil)
    vaekit.load(run)  # .pt files are never looked at
    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    (run / rd.MODEL).write_bytes(evil)
    (run / rd.CHECKPOINT).write_bytes(evil)
    with pytest.raises(CheckpointError, match="not a safetensors file|truncated"):
        vaekit.load(run)
    for cmd in (["evaluate", run], ["resume", run], ["sample", run, "-o", tmp_path / "x.png"]):
        assert main([str(c) for c in cmd]) == 2
        assert "Traceback" not in capsys.readouterr().err
    torch.save(_Payload(marker), run / rd.MODEL)  # torch's zip format under the safetensors name
    with pytest.raises(CheckpointError):
        vaekit.load(run)
    assert not marker.exists()


UNSAFE_CALLS = {
    r"torch\.load\((?![^)]*weights_only=True)": "torch.load without weights_only=True",
    r"pickle\.loads?\(": "pickle.load",
    r"pickle\.Unpickler\((?!.*\bRestricted)": "an unrestricted Unpickler",
    r"yaml\.(unsafe_)?load\(": "yaml.load (use yaml.safe_load)",
    r"np\.load\([^)]*allow_pickle=True": "np.load with allow_pickle=True",
    r"(?<![\w.])(eval|exec)\(": "eval/exec",
}


def test_the_code_base_never_unpickles():
    offenders = []
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    for path in files:
        text = path.read_text()
        for pattern, what in UNSAFE_CALLS.items():
            for m in re.finditer(pattern, text):
                line = text.count("\n", 0, m.start()) + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not offenders, "\n".join(offenders)
    assert len(files) > 20


def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_runs_write_only_inside_their_folder(tmp_path, monkeypatch):
    """Config values never become file names: train, resume, evaluate and sample with path-like
    values create files only in the run folder (and the -o file the user named)."""
    work = tmp_path / "work"
    (work / "cfg").mkdir(parents=True)
    monkeypatch.chdir(work / "cfg")
    before = _snapshot(tmp_path)
    run = work / "runs" / "r"
    args = _cli_args(run, **{"data.data_dir": "../../escape", "train.epochs": 1})
    assert main(args) == 0
    assert main(["resume", str(run)]) == 0
    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    assert main(["sample", str(run), "-o", str(work / "s.png"), "-n", "4"]) == 0
    new = _snapshot(tmp_path) - before
    assert new and all(p.is_relative_to(run) or p == work / "s.png" for p in new), sorted(new)
    assert not (tmp_path / "escape").exists()


def test_links_out_of_a_run_folder_are_refused(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / rd.METRICS).unlink()
    (run / rd.METRICS).symlink_to(victim)
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and "outside the run folder" in err
    assert victim.read_text() == "precious"
    assert main([*_cli_args(run, **{"train.epochs": 1}), "--overwrite"]) == 0  # removes the link itself
    assert victim.read_text() == "precious" and not (run / rd.METRICS).is_symlink()


def test_overwrite_replaces_only_vaekits_files(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "notes.txt").write_text("mine")
    assert main(_cli_args(run)) == 2
    assert "already holds a vaekit run" in capsys.readouterr().err
    assert main([*_cli_args(run, **{"train.epochs": 1}), "--overwrite"]) == 0
    assert (run / "notes.txt").read_text() == "mine"


def test_debug_lets_the_exception_through(tmp_path):
    """With --debug (before or after the sub-command) the error propagates, so Python prints the
    traceback; without it the CLI prints the short message (see test_bad_input.py)."""
    for argv in (["--debug", "evaluate", str(tmp_path)], ["evaluate", str(tmp_path), "--debug"]):
        with pytest.raises(CheckpointError):
            main(argv)
