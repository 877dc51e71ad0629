"""The objective contract from outside the package: a plugin objective with no KL term trains through
the API, and the trainer sums, logs and shows whatever named terms it returns; the epoch sums'
arithmetic; old checkpoints' epoch sums; TensorBoard event files."""

from __future__ import annotations

import math
import os
import signal
import sys

import pytest
import torch

import vaekit
from vaekit.errors import ConfigError
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import load_tensors, save_tensors
from vaekit.runs.metrics import read_metrics
from vaekit.training.epoch_sums import EpochSums
from vaekit.training.state import TrainState
from vaekit.training.trainer import Trainer

QUICK = {"model.net.hidden": [16], "model.latent_dim": 2, "train.epochs": 2, "train.threads": 1,
         "train.num_samples": 4, "train.device": "cpu"}


def test_an_objective_without_a_kl_term_trains_and_logs_its_own_terms(tmp_path, capsys):
    run = tmp_path / "run"
    plugin = {"objective.name": "reconstruction", "plugins": ["plugins.no_kl_objective"]}  # tests/plugins/
    vaekit.train(run, preset="digits-mlp", **QUICK, **plugin)
    records = read_metrics(run / rd.METRICS)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert {"train_loss", "train_nll_x", "train_z_norm", "elbo", "recon", "kl"} <= set(r)
        assert "train_elbo" not in r and "train_kl" not in r
        assert math.isclose(r["train_nll_x"], r["train_loss"], rel_tol=1e-6)  # the loss is the mean nll_x
        assert r["train_z_norm"] > 0
    assert records[1]["train_loss"] < records[0]["train_loss"]
    err = capsys.readouterr().err
    assert "nll_x" in err and "z_norm" in err  # the progress lines show the terms
    report = (run / rd.REPORT).read_text()
    assert "| train loss | train nll_x | train z_norm |" in report
    assert (run / "curves.png").is_file()


def test_epoch_sums_weigh_examples_and_skip_bad_steps():
    sums = EpochSums(torch.device("cpu"), {}, 0)
    sums.add(torch.tensor(2.0), {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor(5.0)}, torch.tensor(0.0), 2)
    sums.add(torch.tensor(float("nan")), {"a": torch.full((3,), float("nan")), "b": torch.tensor(1.0)},
             torch.tensor(1.0), 3)  # a skipped step: its NaN values are masked out
    sums.add(torch.tensor(4.0), {"a": torch.tensor([6.0]), "b": torch.tensor(7.0)}, torch.tensor(0.0), 1)
    values, seen = sums.by_name(sums.total())
    assert seen == 3 and values == {"loss": 2.0 * 2 + 4.0, "a": 1.0 + 3.0 + 6.0, "b": 5.0 * 2 + 7.0}


def test_epoch_sums_carry_on_from_saved_sums_and_add_new_terms():
    sums = EpochSums(torch.device("cpu"), {"loss": 10.0, "a": 4.0}, 2)
    sums.add(torch.tensor(1.0), {"a": torch.tensor([2.0]), "c": torch.tensor([3.0])}, torch.tensor(0.0), 1)
    assert sums.by_name(sums.total()) == ({"loss": 11.0, "a": 6.0, "c": 3.0}, 3)


@pytest.mark.parametrize(("terms", "match"), [
    ({"loss": torch.ones(2)}, "may not be named 'loss'"),
    ({"time_s": torch.ones(2)}, "may not be named 'time_s'"),
    ({"a": torch.ones(2, 3)}, r"term 'a' has shape \(2, 3\)"),
])
def test_epoch_sums_refuse_reserved_names_and_wrong_shapes(terms, match):
    with pytest.raises(ValueError, match=match):
        EpochSums(torch.device("cpu"), {}, 0).add(torch.tensor(1.0), terms, torch.tensor(0.0), 2)


def test_a_checkpoint_with_the_old_list_of_three_sums_resumes(tmp_path, monkeypatch):
    """Checkpoints before named terms saved [loss, recon, kl]: a mid-epoch one resumes to the same
    numbers as the run that was never interrupted."""
    cfg = {**QUICK, "train.progress": False, "train.checkpoint_every": 5}
    vaekit.train(tmp_path / "whole", preset="digits-mlp", **cfg)
    real = Trainer._loss

    def interrupt_at_step_30(self, *a, **k):  # epoch 2, batch 8 of 23
        if self.state.step == 30:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "_loss", interrupt_at_step_30)
    with pytest.raises(KeyboardInterrupt):
        vaekit.train(tmp_path / "cut", preset="digits-mlp", **cfg)
    monkeypatch.setattr(Trainer, "_loss", real)
    ckpt = tmp_path / "cut" / rd.CHECKPOINT
    tensors, meta = load_tensors(ckpt)
    sums = meta["state"]["epoch_sums"]
    assert meta["state"]["batch"] == 8 and set(sums) == {"loss", "elbo", "recon", "kl"}
    meta["state"]["epoch_sums"] = [sums["loss"], sums["recon"], sums["kl"]]
    save_tensors(ckpt, tensors, meta)
    Trainer.resume(tmp_path / "cut").fit()
    whole, cut = read_metrics(tmp_path / "whole" / rd.METRICS), read_metrics(tmp_path / "cut" / rd.METRICS)
    for a, b in zip(whole, cut, strict=True):
        for key in ("elbo", "train_loss", "train_elbo", "train_recon", "train_kl"):
            assert math.isclose(a[key], b[key], rel_tol=1e-9), key


def test_train_state_migrates_the_list_of_sums():
    state = TrainState.from_saved({"epoch": 1, "batch": 3, "epoch_sums": [30.0, 20.0, 10.0], "epoch_seen": 5})
    assert state.epoch_sums == {"loss": 30.0, "elbo": -30.0, "recon": 20.0, "kl": 10.0}
    assert state.batch == 3 and state.epoch_seen == 5


def test_tensorboard_without_the_package_is_refused_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install vaekit\[tensorboard\]"):
        vaekit.train(tmp_path / "run", preset="digits-mlp", **QUICK, **{"train.tensorboard": True})
    assert not (tmp_path / "run").exists()


def test_tensorboard_event_files_hold_the_terms(tmp_path):
    pytest.importorskip("tensorboard", reason="no tensorboard (pip install vaekit[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    vaekit.train(run, preset="digits-mlp", **QUICK, **{"train.tensorboard": True, "train.progress": False,
                                                       "objective.tc_weight": 1.0})
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/elbo", "train/recon", "train/kl", "train/tc", "valid/elbo"} <= tags
    records = read_metrics(run / rd.METRICS)
    for tag, key in (("train/tc", "train_tc"), ("valid/elbo", "elbo"), ("train/loss", "train_loss")):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records]
    vaekit.train(run, preset="digits-mlp", overwrite=True, **QUICK, **{"train.progress": False})
    assert not (run / "tensorboard").exists()  # --overwrite removes vaekit's own event files too
