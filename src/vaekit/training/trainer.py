"""The training loop and the one place that decides device, seeds and what lands on disk.

Data order is a function of (seed, epoch) and the RNG state is saved with every checkpoint, so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaekit.config import Config
from vaekit.data import DataSet, load_dataset
from vaekit.data.streaming import open_folder_stream
from vaekit.data.transforms import (
    bernoulli_from_thresholds,
    bernoulli_thresholds,
    check_mode,
    eval_view,
    static_binarize,
    to_unit,
)
from vaekit.errors import CheckpointError, ConfigError, DataError, DiskFullError
from vaekit.evaluation import evaluate_elbo
from vaekit.evaluation.outputs import write_outputs
from vaekit.models import VAE, build_model
from vaekit.models.sizes import check_model_fits, event_values
from vaekit.parts.objectives import make_loss
from vaekit.paths import refuse_outside_links
from vaekit.progress import reporter
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    remove_stale_temps,
    save_tensors,
)
from vaekit.runs.metrics import append_metrics, read_metrics
from vaekit.training import distributed
from vaekit.training.epoch_sums import EpochSums
from vaekit.training.guard import POLL_EVERY, params_finite
from vaekit.training.interrupt import StepInterrupt
from vaekit.training.policy import Forward, build_optimizer, make_policy, prepare_batch, prepare_model
from vaekit.training.speed import flush_denormals, step_unless, tune_backends

VAEKIT_FILES = (
    rd.CONFIG, rd.MODEL, rd.CHECKPOINT, rd.METRICS, rd.REPORT, rd.POLICY,
    "samples.png", "reconstructions.png", "curves.png", "samples.npy", "evaluation.json",
)


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device asks for CUDA but no GPU is visible", "use train.device=cpu")
    return dev


def data_info(data: DataSet) -> rd.DataInfo:
    return rd.DataInfo(data.name, list(data.event_shape), data.levels, data.num_classes, data.kind)


def check_data_fits(cfg: Config, data: DataSet) -> None:
    """Refuse data/likelihood combinations that cannot train, before any work is done."""
    if len(data.train) == 0:
        raise DataError(f"data set {data.name!r} has no training examples", "check the data source")
    check_mode(cfg.data.binarize)
    check_finite_rows(data)
    if cfg.model.likelihood == "bernoulli" and data.train.x.dtype != torch.uint8:
        lo, hi = float(data.train.x.min()), float(data.train.x.max())
        if lo < 0 or hi > 1:
            raise DataError(
                f"the Bernoulli likelihood needs values in [0, 1]; {data.name!r} spans [{lo:g}, {hi:g}]",
                "rescale the data to [0, 1] or use model.likelihood=gaussian",
            )
    if cfg.model.likelihood == "logistic-mixture" and cfg.data.binarize != "none":
        raise ConfigError(
            "the logistic-mixture likelihood models 8-bit values, but data.binarize is "
            f"{cfg.data.binarize!r}",
            "set data.binarize=none, or use model.likelihood=bernoulli for binarized data",
        )


def check_finite_rows(data: DataSet) -> None:
    """Refuse float data with NaN/inf values, naming the rows (loaders check files; this catches
    DataSets built in Python)."""
    for split in ("train", "valid", "test"):
        x = data.split(split).x
        if x.is_floating_point() and len(x):
            bad = (~torch.isfinite(x.reshape(len(x), -1))).any(1).nonzero().flatten()
            if len(bad):
                raise DataError(
                    f"the {split} split of {data.name!r} has NaN or infinite values in rows "
                    f"{bad[:5].tolist()} ({len(bad)} in all)",
                    "drop or repair those rows before training",
                )


@dataclass
class TrainState:
    """Where training stands; saved (as JSON) inside every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed within the current epoch
    step: int = 0  # optimizer steps taken
    best_elbo: float = -math.inf
    bad_epochs: int = 0
    skipped_steps: int = 0
    rollbacks: int = 0  # times the divergence guard went back to the last checkpoint
    lr_scale: float = 1.0  # learning-rate factor applied by those rollbacks
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss/recon/kl so far
    epoch_seen: int = 0  # examples behind epoch_sums


class Trainer:
    """Train ``cfg`` into ``out``. Use ``Trainer.resume(out)`` to continue an interrupted run."""

    def __init__(
        self,
        cfg: Config,
        out: str | Path,
        data: DataSet | None = None,
        overwrite: bool = False,
        _resuming: bool = False,
    ) -> None:
        self.cfg = cfg
        self.out = Path(out)
        device = pick_device(cfg.train.device)
        self.world = distributed.setup(device)  # rank 0 of 1 unless started by torchrun
        self.device = distributed.local_device(device, self.world)
        created = not self.out.exists()
        if not _resuming and self.world.main:
            self._claim_folder(overwrite)
        self.world.barrier()
        try:
            self._set_up(cfg, data, _resuming)
        except BaseException:
            if created and self.world.main and self.out.is_dir() and not any(self.out.iterdir()):
                self.out.rmdir()  # a set-up that failed leaves no folder that looks like a run
            raise

    def _set_up(self, cfg: Config, data: DataSet | None, _resuming: bool) -> None:
        """Data, model, optimizer and training state; config.json last, once all of them exist."""
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        tune_backends(self.device)
        torch.manual_seed(cfg.train.seed)
        self.stream = open_folder_stream(cfg, data) if cfg.train.streaming else None
        self.data = self.stream.data if self.stream else data if data is not None else load_dataset(
            cfg.data.name, cfg.data.data_dir, valid_fraction=cfg.data.valid_fraction
        )
        check_data_fits(cfg, self.data)
        # before any weights exist: the model, its gradients and Adam state, and one batch's input,
        # decoder output and output gradient must fit in the device's memory
        batch = cfg.train.batch_size * cfg.objective.samples * event_values(self.data.event_shape)
        check_model_fits(cfg.model, self.data.event_shape, self.data.levels, self.data.num_classes,
                         self.device, batch_values=3 * batch, training=True)
        steps = cfg.train.epochs * math.ceil(len(self.data.train) / cfg.train.batch_size)
        self.model: VAE = build_model(
            cfg.model, self.data.event_shape, self.data.levels, self.data.num_classes
        ).to(self.device)
        self.policy = make_policy(cfg.train, self.device, steps, self.model)
        prepare_model(self.model, self.policy)
        distributed.seed_rank(cfg.train.seed, self.world)  # after the (identical) initial weights
        # the training forward pass: DDP-wrapped, compiled and autocast as the policy says
        self.forward = Forward(distributed.wrap(self.model, self.world, self.device), self.policy)
        self.opt = build_optimizer(self.model.parameters(), cfg.train.lr, cfg.train.weight_decay, self.policy)
        self.state = TrainState()
        self.guard = distributed.make_guard(
            self.world, cfg.train.max_bad_steps, cfg.train.max_rollbacks, cfg.train.lr_backoff
        )
        self.interrupt = distributed.make_interrupt(self.world, self.device)
        self.sums = EpochSums(self.device, [0.0, 0.0, 0.0], 0)
        self.params = list(self.model.parameters())  # the guard's list, built once
        self.x_train = self._train_view()
        self.y_train = self._labels(self.data.train.y)
        self.x_valid = eval_view(self.data.valid.x, cfg.data.binarize, cfg.data.binarize_seed).to(self.device)
        self.y_valid = self._labels(self.data.valid.y)
        if not _resuming and self.world.main:
            rd.write_config(self.out, cfg, data_info(self.data))

    # -- set-up -----------------------------------------------------------------------------

    def _claim_folder(self, overwrite: bool) -> None:
        """Refuse to mix runs in one folder; --overwrite removes only files vaekit wrote."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {str(self.out)!r} is a file", "choose a folder path")
        if self.out.is_dir() and rd.holds_no_run(self.out):  # a run killed before its config.json
            remove_stale_temps(self.out)
        if self.out.is_dir() and any(self.out.iterdir()):
            if not overwrite:
                what = "a vaekit run" if (self.out / rd.CONFIG).exists() else "other files"
                raise ConfigError(
                    f"output folder {str(self.out)!r} already holds {what}",
                    f"choose a new --out, continue it with 'vaekit resume {self.out}', or pass "
                    "--overwrite to replace the run (only vaekit's own files are removed)",
                )
            for name in VAEKIT_FILES:
                p = self.out / name
                if p.is_file():
                    p.unlink()
            shutil.rmtree(self.out / "evaluation", ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        refuse_outside_links(self.out)

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return None if y is None else y.to(self.device)

    def _train_view(self) -> torch.Tensor:
        """The training images on the device: unit floats, the static binarization, or for dynamic
        binarization the pixels' Bernoulli thresholds (``bernoulli_thresholds``)."""
        if self.stream is not None:
            return self.data.train.x  # a placeholder of the right shape: the stream supplies the pixels
        if self.cfg.data.binarize == "dynamic":
            return bernoulli_thresholds(self.data.train.x).to(self.device)  # int32 moves, not float64
        x = to_unit(self.data.train.x).to(self.device)
        if self.cfg.data.binarize == "static":
            return static_binarize(x, self.cfg.data.binarize_seed)
        return x

    def _batches(self, perm: torch.Tensor, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, images) of this rank's part of each of the epoch's batches from ``state.batch``
        on: indexed from the data in memory, or decoded from disk by the stream's workers."""
        bs = self.cfg.train.batch_size
        parts = [self.world.shard(perm[b * bs : (b + 1) * bs]) for b in range(self.state.batch, steps)]
        if self.stream is None:
            images = (self.x_train.index_select(0, i) for i in parts)
        else:  # decoded 8-bit images, put in the in-memory data's form
            view = bernoulli_thresholds if self.cfg.data.binarize == "dynamic" else to_unit
            images = (view(x) for x in self.stream.batches(parts, self.device))
        return zip(parts, images, strict=True)

    # -- resume -----------------------------------------------------------------------------

    @classmethod
    def resume(cls, out: str | Path, data: DataSet | None = None) -> Trainer:
        """Rebuild a trainer from a run folder's config and latest checkpoint. A run killed before
        its first checkpoint (nothing trained yet) starts from the beginning (the same seed gives
        the same run); a folder that holds a trained model but no usable checkpoint is refused, so
        a resume never silently retrains over a model and its metrics."""
        cfg, _ = rd.read_config(out)
        run = Path(out)
        refuse_outside_links(run)
        ckpt = run / rd.CHECKPOINT
        if ckpt.exists() and not ckpt.is_file():
            raise CheckpointError(
                f"{ckpt} is not a regular file, so the run cannot continue from it",
                f"put the run's checkpoint file back, or start again with 'vaekit train --config "
                f"{run / rd.CONFIG} --out NEW_DIR' (the files in {run} are kept)",
            )
        trained = [name for name in (rd.MODEL, rd.METRICS) if (run / name).exists()]
        if not ckpt.exists() and trained:
            raise CheckpointError(
                f"{run} holds a trained run ({', '.join(trained)}) but no {rd.CHECKPOINT}, so it "
                "cannot continue where it stopped",
                f"restore {rd.CHECKPOINT} (e.g. from a backup), or train again with 'vaekit train "
                f"--config {run / rd.CONFIG} --out NEW_DIR' (the files in {run} are kept)",
            )
        remove_stale_temps(run)
        trainer = cls(cfg, out, data=data, _resuming=True)
        if ckpt.is_file():
            trainer.load_checkpoint()
        else:
            print(f"{out} has no checkpoint yet: starting from the beginning", file=sys.stderr)
        if trainer.world.main:
            trainer._trim_metrics()
        return trainer

    @property
    def stopped_early(self) -> bool:
        """Early stopping ended the run (train.early_stop_patience epochs without improvement)."""
        patience = self.cfg.train.early_stop_patience
        return bool(patience) and self.state.bad_epochs >= patience

    @property
    def complete(self) -> bool:
        """The run is finished (all epochs, or stopped early) and its final files are written.

        A run stopped by train.max_minutes, Ctrl-C or a kill is not complete: it continues on resume.
        """
        done = self.state.batch == 0 and (self.state.epoch >= self.cfg.train.epochs or self.stopped_early)
        return done and (self.out / rd.MODEL).is_file() and (self.out / rd.REPORT).is_file()

    def load_checkpoint(self) -> None:
        """Restore model, optimizer, training state and RNG from the run's checkpoint."""
        ckpt = self.out / rd.CHECKPOINT
        tensors, meta = load_tensors(ckpt)
        rd.load_state_into(self.model, tensors, ckpt)
        try:
            optimizer_from_tensors(self.opt, tensors, meta["optimizer"])
            self.state = TrainState(**meta["state"])
            distributed.restore_rng(tensors, self.device, self.world, self.cfg.train.seed + self.state.step)
            if not self.world.main:  # rank 0 carries the whole world's sums of the epoch so far
                self.state.epoch_sums, self.state.epoch_seen = [0.0, 0.0, 0.0], 0
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(
                f"{ckpt} does not hold a valid training state ({type(e).__name__}: {e})",
                f"it comes from another run or vaekit version; start again with 'vaekit train "
                f"--config {self.out / rd.CONFIG} --out NEW_DIR'",
            ) from None

    def _trim_metrics(self) -> None:
        """Drop the metric line of an epoch whose checkpoint was never written (a kill between the
        two). The file is rewritten only when there is such a line; metrics further ahead of the
        checkpoint mean the checkpoint is not this run's latest, and the run is refused untouched."""
        path = self.out / rd.METRICS
        if not path.is_file():
            return
        records = read_metrics(path)
        ahead = sorted({r["epoch"] for r in records if r["epoch"] > self.state.epoch})
        if not ahead:
            return
        if ahead != [self.state.epoch + 1]:
            raise CheckpointError(
                f"{path} records epochs up to {ahead[-1]} but {rd.CHECKPOINT} is at epoch "
                f"{self.state.epoch}: the checkpoint is older than the metrics",
                f"restore the run's latest {rd.CHECKPOINT}, or train again with 'vaekit train --config "
                f"{self.out / rd.CONFIG} --out NEW_DIR' (the files in {self.out} are kept)",
            )
        keep = [r for r in records if r["epoch"] <= self.state.epoch]
        rd.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def save_checkpoint(self) -> bool:
        """Write model, optimizer, training state and RNG atomically. Writes nothing and returns
        False when the parameters are not finite: a diverged model never replaces a good checkpoint."""
        if not params_finite(self.model):
            return False
        mid_epoch = self.state.batch > 0
        sums, seen = self._world_sums()
        self.state.epoch_sums = sums.tolist() if mid_epoch else [0.0, 0.0, 0.0]
        self.state.epoch_seen = seen if mid_epoch else 0
        tensors = rd.model_state(self.model)
        opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
        tensors.update(opt_tensors)
        tensors.update(distributed.rng_tensors(self.device, self.world))
        meta = {"state": self.state.__dict__, "optimizer": opt_meta}
        if self.world.main:
            save_tensors(self.out / rd.CHECKPOINT, tensors, meta)
        self.world.barrier()
        return True

    def _world_sums(self) -> tuple[torch.Tensor, int]:
        """This epoch's loss/recon/KL sums and example count, over all ranks."""
        total = self.world.sum(self.sums.total())
        return total[:3], int(total[3])

    # -- the loop ---------------------------------------------------------------------------

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor | None, steps_per_epoch: int):
        obj = self.cfg.objective
        terms = self.forward(xb, yb, obj.samples)
        warmup_steps = int(obj.warmup_epochs * steps_per_epoch)
        return make_loss(terms, obj, self.state.step, warmup_steps, self.x_train.shape[0], self.model)

    def _update(self, bad: torch.Tensor) -> None:
        """The optimizer step, skipped when ``bad`` (a device flag) is 1."""
        step_unless(self.opt, bad)

    def _poll_guard(self) -> bool:
        """Read the guard's counters into the state; True when it is time to roll back."""
        skipped, tripped = self.guard.poll()
        self.state.skipped_steps += skipped
        return tripped

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs; returns the last validation metrics.

        Ctrl-C stops after the current step and saves a checkpoint (twice: stops at once, keeping
        the last checkpoint); a full disk stops with the previous checkpoint intact.
        """
        if self.complete:  # nothing to do: a finished run's files are left exactly as they are
            records = read_metrics(self.out / rd.METRICS) if (self.out / rd.METRICS).is_file() else []
            return records[-1] if records else {}
        if self.world.main:
            self._record_policy()
            print(self.banner(), file=sys.stderr)
        try:
            with self.interrupt, flush_denormals(self.device):
                return self._fit()
        except StepInterrupt:
            self._poll_guard()  # the skipped-step count is part of the saved state
            saved = self.save_checkpoint()
            what = f"checkpoint saved at step {self.state.step}" if saved else (
                "the parameters are not finite, so the last good checkpoint was kept")
            print(f"\nInterrupted: {what}. Continue with:  vaekit resume {self.out}", file=sys.stderr)
            raise
        except KeyboardInterrupt:
            print(f"\nStopped: the last checkpoint is intact. Continue with:  vaekit resume {self.out}",
                  file=sys.stderr)
            raise
        except DiskFullError as e:
            raise DiskFullError(
                e.problem, f"free some disk space, then continue with 'vaekit resume {self.out}'"
            ) from None

    def banner(self) -> str:
        """The start line of a training session: where and how it runs, how big the model and data are."""
        p = self.policy
        threads = torch.get_num_threads()
        compiled = "torch.compile" if p.compile else "eager (not compiled)"
        n_params = sum(t.numel() for t in self.model.parameters())
        ranks = f" x {self.world.size} processes" if self.world.size > 1 else ""
        start = f"from step {self.state.step:,} " if self.state.step else ""
        return (
            f"training {start}on {self.device}{ranks}, {threads} CPU thread{'s' * (threads != 1)}, "
            f"{p.precision}, {compiled} ({p.compile_reason}){', fused Adam' if p.fused_optimizer else ''}; "
            f"{n_params:,} parameters; examples: train {len(self.data.train):,}, valid "
            f"{len(self.data.valid):,}, test {len(self.data.test):,}"
        )

    def _record_policy(self) -> None:
        """Append this session's speed policy to policy.json: what the run really ran with, and from
        which step (a resumed run may run on another device, or compile where the first did not)."""
        path = self.out / rd.POLICY
        try:
            sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
        except (ValueError, KeyError, TypeError):
            sessions = []  # an unreadable record is replaced, never fatal: it only describes the run
        sessions = [r for r in sessions if r.get("started_at_step", 0) < self.state.step]
        sessions.append(self.policy.record(self.state.step, torch.get_num_threads()))
        rd.atomic_write_text(path, json.dumps({"sessions": sessions}, indent=2))

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg.train
        n = self.x_train.shape[0]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        last: dict[str, Any] = {}
        self.model.train()
        if not (self.out / rd.CHECKPOINT).is_file():
            self.save_checkpoint()  # something to resume or roll back to before the first step
        started = time.perf_counter()
        while self.state.epoch < cfg.epochs:
            epoch = self.state.epoch
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
            perm = perm.to(self.device)
            self.sums = EpochSums(self.device, self.state.epoch_sums, self.state.epoch_seen)
            t0 = time.perf_counter()
            bar = reporter(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                           enabled=cfg.progress and self.world.main, initial=self.state.batch, leave=False)
            batches = self._batches(perm, steps_per_epoch)
            for b in range(self.state.batch, steps_per_epoch):
                idx, xb = next(batches)
                if self.cfg.data.binarize == "dynamic":
                    xb = bernoulli_from_thresholds(xb)
                xb = prepare_batch(xb, self.policy)
                yb = None if self.y_train is None else self.y_train[idx]
                out = self._loss(xb, yb, steps_per_epoch)
                for p in self.params:  # zero_grad(set_to_none=True) without the optimizer's Python wrapper
                    p.grad = None
                out.loss.backward()  # also for a non-finite loss: its gradients are then non-finite too
                bad = self.guard.check(out.loss.detach(), self.params, cfg.grad_clip)
                self._update(bad)
                self.sums.add(out.loss, out.recon, out.kl, bad, len(idx))
                self.state.step += 1
                self.state.batch = b + 1
                if not bar.disable and (b % 10 == 0 or b == steps_per_epoch - 1):  # a device read
                    loss, recon, kl, seen = self.sums.total().tolist()
                    bar.set_postfix(loss=f"{loss / max(seen, 1):.2f}", recon=f"{recon / max(seen, 1):.2f}",
                                    kl=f"{kl / max(seen, 1):.2f}", step=self.state.step)
                bar.update(1)
                checkpoint = bool(cfg.checkpoint_every) and self.state.step % cfg.checkpoint_every == 0
                if checkpoint or self.state.step % POLL_EVERY == 0:  # a device read every few steps
                    self.sums.total()  # fold the steps kept so far (no device read): bounds its lists
                    if self._poll_guard():
                        break
                    if checkpoint and not self.guard.bad_run:  # only after a good step: a
                        self.save_checkpoint()  # rollback lands before the trouble
                self.interrupt.check()
            bar.close()
            tripped = self._poll_guard()
            if tripped or not params_finite(self.model):
                self.guard.roll_back(self, tripped)
                continue
            sums, seen = self._world_sums()  # reads the device: the epoch's work is done
            train_time = time.perf_counter() - t0
            loss, recon, kl = (sums / max(seen, 1)).tolist()
            valid = evaluate_elbo(
                self.model, self.x_valid, self.y_valid, cfg.eval_batch_size, self.cfg.data.binarize_seed
            )
            self.state.epoch += 1
            self.state.batch = 0
            last = {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "split": "valid",
                **valid,
                "train_loss": loss,
                "train_elbo": -(recon + kl),
                "train_time_s": train_time,
                "skipped_steps": self.state.skipped_steps,
                "rollbacks": self.state.rollbacks,
            }
            improved = valid["elbo"] > self.state.best_elbo
            if improved:
                self.state.best_elbo = valid["elbo"]
                self.state.bad_epochs = 0
            else:
                self.state.bad_epochs += 1
            if cfg.early_stop_patience and improved and self.world.main:
                rd.save_model(self.out, self.model, {"epoch": self.state.epoch})
            if self.world.main:
                append_metrics(self.out / rd.METRICS, last)  # before the checkpoint: resume trims extras
            self.save_checkpoint()
            if self.world.main:  # one line per epoch also with train.progress=false (--quiet hides it)
                print(
                    f"epoch {self.state.epoch}/{cfg.epochs}  train loss {loss:.3f}  "
                    f"valid ELBO {valid['elbo']:.3f} nats (recon {valid['recon']:.3f}, KL {valid['kl']:.3f})"
                    f"  {train_time:.1f} s",
                    file=sys.stderr,
                )
            if cfg.early_stop_patience and self.state.bad_epochs >= cfg.early_stop_patience:
                print(f"early stop: no improvement for {self.state.bad_epochs} epochs", file=sys.stderr)
                break
            if self._out_of_time(started):
                break
            self.interrupt.check()
        self.finish()
        return last

    def _out_of_time(self, started: float) -> bool:
        """train.max_minutes reached (every rank stops at the same epoch end): a job's wall-time limit."""
        limit = self.cfg.train.max_minutes
        if not limit or self.state.epoch >= self.cfg.train.epochs:
            return False
        if not self.world.any(time.perf_counter() - started >= 60 * limit, self.device):
            return False
        if self.world.main:
            print(f"time limit: stopped after epoch {self.state.epoch} of {self.cfg.train.epochs} "
                  f"(train.max_minutes={limit:g}); continue with:  vaekit resume {self.out}", file=sys.stderr)
        return True

    def finish(self) -> None:
        """Final weights, pictures and report (rank 0 writes them)."""
        if not self.world.main:
            return
        if self.cfg.train.early_stop_patience and (self.out / rd.MODEL).is_file():
            tensors, _ = load_tensors(self.out / rd.MODEL)
            rd.load_state_into(self.model, tensors, self.out / rd.MODEL)
        else:
            rd.save_model(self.out, self.model, {"epoch": self.state.epoch})
        self.model.eval()
        write_outputs(self.out, self.model, self.cfg, self.data, self.device)


