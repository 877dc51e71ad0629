"""The training loop over a built ``Session``: epochs of steps, the divergence guard and its
rollbacks, checkpoints, and each epoch's validation and metrics.

Data order is a function of (seed, epoch) and the RNG state is saved with every checkpoint, so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

from vaekit.data.transforms import training_batch, training_form
from vaekit.errors import CheckpointError, DiskFullError
from vaekit.evaluation import evaluate_elbo
from vaekit.evaluation.outputs import write_outputs
from vaekit.progress import reporter
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import optimizer_from_tensors, optimizer_to_tensors, save_tensors
from vaekit.runs.logger import Loggers, open_loggers
from vaekit.runs.metrics import read_metrics
from vaekit.training import distributed
from vaekit.training.epoch_sums import EpochSums
from vaekit.training.graph_step import CapturedStep, DeviceStep
from vaekit.training.guard import POLL_EVERY, params_finite
from vaekit.training.interrupt import StepInterrupt
from vaekit.training.policy import prepare_batch
from vaekit.training.session import Session
from vaekit.training.speed import flush_denormals, step_unless
from vaekit.training.state import TrainState


class TrainingLoop:
    """Trains a built session's model with its objective into its run folder (``fit``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        s = session
        self.cfg, self.out, self.world, self.device = s.cfg, s.out, s.world, s.device
        self.data, self.model, self.objective, self.policy = s.data, s.model, s.objective, s.policy
        self.forward, self.opt, self.guard, self.interrupt = s.forward, s.opt, s.guard, s.interrupt
        self.x_train, self.y_train, self.x_valid, self.y_valid = s.x_train, s.y_train, s.x_valid, s.y_valid
        self.state = TrainState()
        self.sums = EpochSums(self.device, {}, 0)
        self.params = list(self.model.parameters())  # the guard's list, built once
        self.logger: Loggers | None = None
        self.graph = self._graph_step() if self.policy.graph else None

    def _graph_step(self) -> CapturedStep:
        """The whole step as one CUDA graph (``train.graph``; the policy checked that it can be)."""
        c = self.cfg
        step = DeviceStep(self.forward, self.objective, self.opt, self.guard, self.params, self.x_train,
                          self.y_train, c.data.binarize, c.train.grad_clip, self.policy)
        return CapturedStep(step, c.train.batch_size, self.objective.steady_from)

    # -- state on disk ----------------------------------------------------------------------

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
        tensors, meta = rd.load_weights_into(self.model, ckpt)
        try:
            optimizer_from_tensors(self.opt, tensors, meta["optimizer"])
            self.state = TrainState.from_saved(meta["state"])
            distributed.restore_rng(tensors, self.device, self.world, self.cfg.train.seed + self.state.step)
            if not self.world.main:  # rank 0 carries the whole world's sums of the epoch so far
                self.state.epoch_sums = dict.fromkeys(self.state.epoch_sums, 0.0)
                self.state.epoch_seen = 0
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(
                f"{ckpt} does not hold a valid training state ({type(e).__name__}: {e})",
                f"it comes from another run or vaekit version; start again with 'vaekit train "
                f"--config {self.out / rd.CONFIG} --out NEW_DIR'",
            ) from None

    def save_checkpoint(self) -> bool:
        """Write model, optimizer, training state and RNG atomically. Writes nothing and returns
        False when the parameters are not finite: a diverged model never replaces a good checkpoint."""
        if not params_finite(self.model):
            return False
        mid_epoch = self.state.batch > 0
        sums, seen = self._world_sums()
        self.state.epoch_sums = sums if mid_epoch else {}
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

    def _world_sums(self) -> tuple[dict[str, float], int]:
        """This epoch's sums of the loss and each term, and its example count, over all ranks."""
        return self.sums.by_name(self.world.sum(self._epoch_total()))

    def _epoch_total(self) -> torch.Tensor:
        """The epoch's sums so far on the device, with what the graph step has summed since the last read."""
        if self.graph is not None:
            self.sums.absorb(self.graph.totals)
        return self.sums.total()

    def trim_metrics(self) -> None:
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

    # -- one step ---------------------------------------------------------------------------

    def _batches(self, perm: torch.Tensor, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, kept images) of this rank's part of each of the epoch's batches from
        ``state.batch`` on: indexed from the data in memory, or decoded from disk by the stream."""
        bs = self.cfg.train.batch_size
        parts = [self.world.shard(perm[b * bs : (b + 1) * bs]) for b in range(self.state.batch, steps)]
        stream = self.session.stream
        if self.graph is not None:  # the graph step gathers its batch itself
            images = (None for _ in parts)
        elif stream is None:
            images = (self.x_train.index_select(0, i) for i in parts)
        else:  # decoded 8-bit images, put in the in-memory data's form
            d = self.cfg.data
            images = (training_form(x, d.binarize, d.binarize_seed, self.device)
                      for x in stream.batches(parts, self.device))
        return zip(parts, images, strict=True)

    def _loss(
        self, xb: torch.Tensor, yb: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective's loss and named terms for one batch. A denoising objective's (``noise``) encoder
        sees a corrupted copy of the batch, and the likelihood scores the batch itself."""
        noise = getattr(self.objective, "noise", None)
        k = self.objective.samples
        out = self.forward(xb, yb, k) if noise is None else self.forward(noise(xb), yb, k, None, xb)
        return self.objective(out, self.state.step)

    def _step(self, idx: torch.Tensor, xb: torch.Tensor) -> None:
        """One eager training step on the batch ``xb`` (in ``training_form``) of indices ``idx``."""
        xb = prepare_batch(training_batch(xb, self.cfg.data.binarize), self.policy)
        yb = None if self.y_train is None else self.y_train[idx]
        loss, terms = self._loss(xb, yb)
        for p in self.params:  # zero_grad(set_to_none=True) without the optimizer's Python wrapper
            p.grad = None
        loss.backward()  # also for a non-finite loss: its gradients are then non-finite too
        bad = self.guard.check(loss.detach(), self.params, self.cfg.train.grad_clip)
        self._update(bad)
        self.sums.add(loss, terms, bad, len(idx))

    def _update(self, bad: torch.Tensor) -> None:
        """The optimizer step, skipped when ``bad`` (a device flag) is 1."""
        step_unless(self.opt, bad)

    def _poll_guard(self) -> bool:
        """Read the guard's counters into the state; True when it is time to roll back."""
        skipped, tripped = self.guard.poll()
        self.state.skipped_steps += skipped
        return tripped

    def _roll_back(self, tripped: bool) -> None:
        """Reload the last checkpoint with a lower learning rate, or raise the guard's DivergenceError
        after ``max_rollbacks``; ``tripped``: because of a run of bad steps (else non-finite weights)."""
        live, why = self.state, self.guard.reason(tripped)
        if live.rollbacks >= self.guard.max_rollbacks:
            lr = self.opt.param_groups[0]["lr"]
            raise self.guard.give_up(why, live.step, live.epoch, live.rollbacks, lr, self.out)
        scale = live.lr_scale * self.guard.lr_backoff
        rollbacks, skipped, at_step = live.rollbacks + 1, live.skipped_steps, live.step
        self.load_checkpoint()
        if self.graph is not None:  # new optimizer state and learning rate: capture again
            self.graph.reset()
        restored = self.state
        for group in self.opt.param_groups:
            group["lr"] *= scale / restored.lr_scale
        restored.lr_scale, restored.rollbacks, restored.skipped_steps = scale, rollbacks, skipped
        self.guard.reset()
        print(
            f"warning: {why} (step {at_step}); rolled back to the checkpoint of step {restored.step} "
            f"with the learning rate lowered to {self.opt.param_groups[0]['lr']:g} "
            f"(rollback {rollbacks} of at most {self.guard.max_rollbacks})",
            file=sys.stderr,
        )

    # -- the loop ---------------------------------------------------------------------------

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
            self.logger = open_loggers(self.out, self.out / rd.METRICS, self.cfg.train.tensorboard)
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
        finally:
            if self.logger is not None:
                self.logger.close()
                self.logger = None

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
            f"{p.precision}, {compiled} ({p.compile_reason}){', fused Adam' if p.fused_optimizer else ''}, "
            f"{'CUDA graph' if p.graph else 'eager'} step ({p.graph_reason}); "
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

    def _show(self, bar: Any) -> None:
        """The epoch's running means on the progress bar (a device read)."""
        sums, seen = self.sums.by_name(self._epoch_total())
        bar.set_postfix(**{name: f"{value / max(seen, 1):.2f}" for name, value in sums.items()},
                        step=self.state.step)

    def _epoch(self, steps_per_epoch: int) -> bool:
        """The current epoch's remaining steps; False when the guard stopped it early (a rollback is due)."""
        cfg = self.cfg.train
        epoch = self.state.epoch
        n = self.x_train.shape[0]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        perm = perm.to(self.device)
        bar = reporter(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       enabled=cfg.progress and self.world.main, initial=self.state.batch, leave=False)
        batches = self._batches(perm, steps_per_epoch)
        try:
            for b in range(self.state.batch, steps_per_epoch):
                idx, xb = next(batches)
                if self.graph is not None:
                    self.graph(idx, self.state.step)
                else:
                    self._step(idx, xb)
                self.state.step += 1
                self.state.batch = b + 1
                if not bar.disable and (b % 10 == 0 or b == steps_per_epoch - 1):
                    self._show(bar)
                bar.update(1)
                checkpoint = bool(cfg.checkpoint_every) and self.state.step % cfg.checkpoint_every == 0
                if checkpoint or self.state.step % POLL_EVERY == 0:  # a device read every few steps
                    self._epoch_total()  # fold the steps kept so far (no device read): bounds its lists
                    if self._poll_guard():
                        return False
                    if checkpoint and not self.guard.bad_run:  # only after a good step: a
                        self.save_checkpoint()  # rollback lands before the trouble
                self.interrupt.check()
        finally:
            bar.close()
        return True

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg.train
        steps_per_epoch = math.ceil(self.x_train.shape[0] / cfg.batch_size)
        last: dict[str, Any] = {}
        self.model.train()
        if not (self.out / rd.CHECKPOINT).is_file():
            self.save_checkpoint()  # something to resume or roll back to before the first step
        started = time.perf_counter()
        while self.state.epoch < cfg.epochs:
            self.sums = EpochSums(self.device, self.state.epoch_sums, self.state.epoch_seen)
            t0 = time.perf_counter()
            self._epoch(steps_per_epoch)
            tripped = self._poll_guard()
            if tripped or not params_finite(self.model):
                self._roll_back(tripped)
                continue
            sums, seen = self._world_sums()  # reads the device: the epoch's work is done
            train_time = time.perf_counter() - t0
            means = {name: value / max(seen, 1) for name, value in sums.items()}
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
                **{f"train_{name}": value for name, value in means.items()},
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
            if self.logger is not None:
                self.logger.log(last)  # before the checkpoint: resume trims extras
            self.save_checkpoint()
            if self.world.main:  # one line per epoch also with train.progress=false (--quiet hides it)
                print(
                    f"epoch {self.state.epoch}/{cfg.epochs}  train loss {means['loss']:.3f}  "
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
            rd.load_weights_into(self.model, self.out / rd.MODEL)
        else:
            rd.save_model(self.out, self.model, {"epoch": self.state.epoch})
        self.model.eval()
        write_outputs(self.out, self.model, self.cfg, self.data, self.device)
