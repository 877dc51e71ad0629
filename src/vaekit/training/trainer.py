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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaekit.config import Config
from vaekit.data import DataSet, load_dataset
from vaekit.data.transforms import binarize, check_mode, eval_view, static_binarize, to_unit
from vaekit.errors import CheckpointError, ConfigError, DataError
from vaekit.evaluation import evaluate_elbo
from vaekit.models import VAE, build_model
from vaekit.objectives import elbo_loss, iwae_loss, kl_weight
from vaekit.training import run_dir as rd
from vaekit.training.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_tensors,
)

VAEKIT_FILES = (
    rd.CONFIG, rd.MODEL, rd.CHECKPOINT, rd.METRICS, rd.REPORT,
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


@dataclass
class TrainState:
    """Where training stands; saved (as JSON) inside every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed within the current epoch
    step: int = 0  # optimizer steps taken
    best_elbo: float = -math.inf
    bad_epochs: int = 0
    skipped_steps: int = 0


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
        if not _resuming:
            self._claim_folder(overwrite)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.data = data if data is not None else load_dataset(
            cfg.data.name, cfg.data.data_dir, valid_fraction=cfg.data.valid_fraction
        )
        check_data_fits(cfg, self.data)
        self.model: VAE = build_model(
            cfg.model, self.data.event_shape, self.data.levels, self.data.num_classes
        ).to(self.device)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
        )
        self.state = TrainState()
        self.x_train = self._train_view()
        self.y_train = self._labels(self.data.train.y)
        self.x_valid = eval_view(self.data.valid.x, cfg.data.binarize, cfg.data.binarize_seed).to(self.device)
        self.y_valid = self._labels(self.data.valid.y)
        if not _resuming:
            rd.write_config(self.out, cfg, data_info(self.data))

    # -- set-up -----------------------------------------------------------------------------

    def _claim_folder(self, overwrite: bool) -> None:
        """Refuse to mix runs in one folder; --overwrite removes only files vaekit wrote."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {str(self.out)!r} is a file", "choose a folder path")
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

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return None if y is None else y.to(self.device)

    def _train_view(self) -> torch.Tensor:
        x = to_unit(self.data.train.x).to(self.device)
        if self.cfg.data.binarize == "static":
            return static_binarize(x, self.cfg.data.binarize_seed)
        return x

    # -- resume -----------------------------------------------------------------------------

    @classmethod
    def resume(cls, out: str | Path, data: DataSet | None = None) -> Trainer:
        """Rebuild a trainer from a run folder's config and latest checkpoint."""
        cfg, _ = rd.read_config(out)
        trainer = cls(cfg, out, data=data, _resuming=True)
        ckpt = Path(out) / rd.CHECKPOINT
        if not ckpt.is_file():
            raise CheckpointError(
                f"{out} has no checkpoint to resume from",
                f"start it again with 'vaekit train --config {Path(out) / rd.CONFIG} --out NEW_DIR'",
            )
        tensors, meta = load_tensors(ckpt)
        rd.load_state_into(trainer.model, tensors, ckpt)
        optimizer_from_tensors(trainer.opt, tensors, meta["optimizer"])
        trainer.state = TrainState(**meta["state"])
        torch.set_rng_state(tensors["rng.cpu"])
        if trainer.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.device)
        trainer._trim_metrics()
        return trainer

    def _trim_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resume from."""
        path = self.out / rd.METRICS
        if path.is_file():
            keep = [r for r in read_metrics(path) if r["epoch"] <= self.state.epoch]
            rd.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def save_checkpoint(self) -> None:
        tensors = rd.model_state(self.model)
        opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
        tensors.update(opt_tensors)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"state": self.state.__dict__, "optimizer": opt_meta}
        save_tensors(self.out / rd.CHECKPOINT, tensors, meta)

    # -- the loop ---------------------------------------------------------------------------

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor | None, steps_per_epoch: int):
        obj = self.cfg.objective
        terms = self.model(xb, yb, obj.samples)
        if obj.name == "iwae":
            return iwae_loss(terms)
        if obj.name != "elbo":
            raise ConfigError(f"unknown objective {obj.name!r}", "set objective.name to elbo or iwae")
        beta = kl_weight(self.state.step, int(obj.warmup_epochs * steps_per_epoch), obj.beta)
        return elbo_loss(terms, beta, obj.free_bits)

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs; returns the last validation metrics."""
        try:
            return self._fit()
        except KeyboardInterrupt:
            self.save_checkpoint()
            print(
                f"\nInterrupted: checkpoint saved. Continue with:  vaekit resume {self.out}",
                file=sys.stderr,
            )
            raise

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg.train
        n = self.x_train.shape[0]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        last: dict[str, Any] = {}
        self.model.train()
        while self.state.epoch < cfg.epochs:
            epoch = self.state.epoch
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
            perm = perm.to(self.device)
            sums = torch.zeros(3, dtype=torch.float64, device=self.device)
            seen = 0
            t0 = time.perf_counter()
            bar = tqdm(
                total=steps_per_epoch,
                initial=self.state.batch,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not cfg.progress,
                leave=False,
                file=sys.stderr,
            )
            for b in range(self.state.batch, steps_per_epoch):
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                xb = self.x_train[idx]
                if self.cfg.data.binarize == "dynamic":
                    xb = binarize(xb)
                yb = None if self.y_train is None else self.y_train[idx]
                out = self._loss(xb, yb, steps_per_epoch)
                self.opt.zero_grad(set_to_none=True)
                if torch.isfinite(out.loss):
                    out.loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    self.opt.step()
                    sums += torch.stack([out.loss.detach(), out.recon, out.kl]).double() * len(idx)
                    seen += len(idx)
                else:
                    self.state.skipped_steps += 1
                self.state.step += 1
                self.state.batch = b + 1
                if b % 10 == 0 or b == steps_per_epoch - 1:
                    loss, recon, kl = (sums / max(seen, 1)).tolist()
                    bar.set_postfix(
                        loss=f"{loss:.2f}", recon=f"{recon:.2f}", kl=f"{kl:.2f}", step=self.state.step
                    )
                bar.update(1)
                if cfg.checkpoint_every and self.state.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            bar.close()
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
            }
            improved = valid["elbo"] > self.state.best_elbo
            if improved:
                self.state.best_elbo = valid["elbo"]
                self.state.bad_epochs = 0
            else:
                self.state.bad_epochs += 1
            if cfg.early_stop_patience and improved:
                rd.save_model(self.out, self.model, {"epoch": self.state.epoch})
            self.save_checkpoint()
            append_metrics(self.out / rd.METRICS, last)
            if cfg.progress:
                print(
                    f"epoch {self.state.epoch}/{cfg.epochs}  train loss {loss:.3f}  "
                    f"valid ELBO {valid['elbo']:.3f} (recon {valid['recon']:.3f}, KL {valid['kl']:.3f})"
                    f"  {train_time:.1f}s",
                    file=sys.stderr,
                )
            if cfg.early_stop_patience and self.state.bad_epochs >= cfg.early_stop_patience:
                print(f"early stop: no improvement for {self.state.bad_epochs} epochs", file=sys.stderr)
                break
        self.finish()
        return last

    def finish(self) -> None:
        """Final weights, pictures and report."""
        from vaekit.report import write_outputs

        if self.cfg.train.early_stop_patience and (self.out / rd.MODEL).is_file():
            tensors, _ = load_tensors(self.out / rd.MODEL)
            rd.load_state_into(self.model, tensors, self.out / rd.MODEL)
        else:
            rd.save_model(self.out, self.model, {"epoch": self.state.epoch})
        self.model.eval()
        write_outputs(self.out, self.model, self.cfg, self.data, self.device)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Metric records; a torn last line (crash mid-write) is ignored."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
