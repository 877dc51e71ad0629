"""Building a training session from a config: device, data, model, objective, optimizer and speed
policy, in the order that makes a seed give the same run. The loop (``vaekit.training.loop``) only
uses what this builds."""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from vaekit.config import Config
from vaekit.data import DataSet, load_configured
from vaekit.data.streaming import FolderStream, open_folder_stream
from vaekit.data.transforms import check_mode, eval_view, training_form
from vaekit.errors import ConfigError, DataError
from vaekit.models import VAE, build_model
from vaekit.models.inputs import as_labels
from vaekit.models.sizes import check_model_fits, event_values
from vaekit.parts.objectives import Objective, build_objective
from vaekit.paths import refuse_outside_links
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import remove_stale_temps
from vaekit.runs.logger import TENSORBOARD_DIR, require_tensorboard
from vaekit.training import distributed
from vaekit.training.distributed import World
from vaekit.training.graph_step import capture_blocker
from vaekit.training.guard import DivergenceGuard
from vaekit.training.interrupt import DeferredInterrupt
from vaekit.training.policy import Forward, Policy, build_optimizer, make_policy, prepare_model
from vaekit.training.speed import tune_backends

VAEKIT_FILES = (
    rd.CONFIG, rd.MODEL, rd.CHECKPOINT, rd.METRICS, rd.REPORT, rd.POLICY,
    "samples.png", "reconstructions.png", "curves.png", "samples.npy", "evaluation.json",
)
VAEKIT_FOLDERS = ("evaluation", TENSORBOARD_DIR)


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


def run_data(data: DataSet) -> rd.RunData:
    return rd.RunData(data.name, data.schema)


def check_data_fits(cfg: Config, data: DataSet) -> None:
    """Refuse data/likelihood combinations that cannot train, before any work is done."""
    if len(data.train) == 0:
        raise DataError(f"data set {data.name!r} has no training examples", "check the data source")
    check_mode(cfg.data.binarize)
    check_finite_rows(data)
    check_labels(data)
    if data.columns and cfg.model.likelihood.name in ("bernoulli", "gaussian", "logistic-mixture"):
        raise ConfigError(
            f"{data.name!r} is a table of {len(data.columns)} typed columns, encoded for the table "
            f"likelihood, but model.likelihood is {cfg.model.likelihood.name!r}",
            "use --preset table (or --model.likelihood table)",
        )
    if cfg.model.likelihood.name == "bernoulli" and data.train.x.dtype != torch.uint8:
        lo, hi = float(data.train.x.min()), float(data.train.x.max())
        if lo < 0 or hi > 1:
            raise DataError(
                f"the Bernoulli likelihood needs values in [0, 1]; {data.name!r} spans [{lo:g}, {hi:g}]",
                "rescale the data to [0, 1] or use model.likelihood=gaussian",
            )
    if cfg.data.binarize != "none" and not data.schema.unit_interval:
        raise DataError(
            f"data.binarize={cfg.data.binarize} draws each value as a Bernoulli probability, but "
            f"{data.name!r} ({data.schema.kind}) holds values outside [0, 1]",
            "set data.binarize=none for this data",
        )
    if cfg.model.likelihood.name == "logistic-mixture" and cfg.data.binarize != "none":
        raise ConfigError(
            "the logistic-mixture likelihood models 8-bit values, but data.binarize is "
            f"{cfg.data.binarize!r}",
            "set data.binarize=none, or use model.likelihood=bernoulli for binarized data",
        )


def check_labels(data: DataSet) -> None:
    """Refuse labels outside 0..num_classes-1 once, before training: a step captured as a CUDA graph
    or traced by torch.compile cannot read them on the host (``models.inputs.as_labels``)."""
    if not data.num_classes:
        return
    for split in ("train", "valid", "test"):
        y = data.split(split).y
        if y is not None:
            as_labels(y, len(y), data.num_classes, torch.device("cpu"), name=f"the {split} split's y")


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


def claim_folder(out: Path, overwrite: bool) -> None:
    """Refuse to mix runs in one folder; ``overwrite`` removes only files vaekit wrote."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file", "choose a folder path")
    if out.is_dir() and rd.holds_no_run(out):  # a run killed before its config.json
        remove_stale_temps(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            what = "a vaekit run" if (out / rd.CONFIG).exists() else "other files"
            raise ConfigError(
                f"output folder {str(out)!r} already holds {what}",
                f"choose a new --out, continue it with 'vaekit resume {out}', or pass "
                "--overwrite to replace the run (only vaekit's own files are removed)",
            )
        for name in VAEKIT_FILES:
            p = out / name
            if p.is_file():
                p.unlink()
        for name in VAEKIT_FOLDERS:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    refuse_outside_links(out)


@dataclass
class Session:
    """Everything a training run is made of, built and on its device. ``x_train`` is the training
    images in ``training_form`` (a placeholder of the right shape when ``stream`` supplies them)."""

    cfg: Config
    out: Path
    world: World
    device: torch.device
    data: DataSet
    stream: FolderStream | None
    model: VAE
    objective: Objective
    policy: Policy
    forward: Forward  # the training forward pass: DDP-wrapped, compiled and autocast as the policy says
    opt: torch.optim.Optimizer
    guard: DivergenceGuard
    interrupt: DeferredInterrupt
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_valid: torch.Tensor
    y_valid: torch.Tensor | None


def build_session(
    cfg: Config, out: str | Path, data: DataSet | None = None, overwrite: bool = False, resuming: bool = False
) -> Session:
    """Claim ``out`` (a new run; ``resuming``: the run already there) and build the session; its
    config.json is written last, once everything exists. A build that fails leaves no folder that
    looks like a run."""
    out = Path(out)
    if cfg.train.tensorboard:
        require_tensorboard()
    device = pick_device(cfg.train.device)
    world = distributed.setup(device)  # rank 0 of 1 unless started by torchrun
    device = distributed.local_device(device, world)
    created = not out.exists()
    if not resuming and world.main:
        claim_folder(out, overwrite)
    world.barrier()
    try:
        session = _build(cfg, out, data, world, device)
    except BaseException:
        if created and world.main and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    if not resuming and world.main:
        rd.write_config(out, cfg, run_data(session.data))
    return session


def _build(cfg: Config, out: Path, data: DataSet | None, world: World, device: torch.device) -> Session:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    tune_backends(device)
    torch.manual_seed(cfg.train.seed)
    stream = open_folder_stream(cfg, data) if cfg.train.streaming else None
    if stream is not None:
        data = stream.data
    elif data is None:
        data = load_configured(cfg.data)
    if data.kind == "table" and data.columns and world.main:
        from vaekit.data.table import describe_columns

        print(f"{data.name}: {len(data.train):,} training rows, columns:\n{describe_columns(data)}",
              file=sys.stderr)
    check_data_fits(cfg, data)
    # before any weights exist: the model, its gradients and Adam state, and one batch's input,
    # decoder output and output gradient must fit in the device's memory
    batch = cfg.train.batch_size * cfg.objective.samples * event_values(data.event_shape)
    check_model_fits(cfg.model, data.schema, device, batch_values=3 * batch, training=True)
    steps_per_epoch = math.ceil(len(data.train) / cfg.train.batch_size)
    model = build_model(cfg.model, data.schema).to(device)
    objective = build_objective(cfg.objective, model, len(data.train), steps_per_epoch)
    blocker = capture_blocker(objective, world.active, stream is not None)
    policy = make_policy(cfg.train, device, cfg.train.epochs * steps_per_epoch, model, blocker)
    prepare_model(model, policy)
    distributed.seed_rank(cfg.train.seed, world)  # after the (identical) initial weights
    on = lambda y: None if y is None else y.to(device)  # noqa: E731
    binarize, seed = cfg.data.binarize, cfg.data.binarize_seed
    return Session(
        cfg=cfg, out=out, world=world, device=device, data=data, stream=stream, model=model,
        objective=objective, policy=policy,
        forward=Forward(distributed.wrap(model, world, device), policy),
        opt=build_optimizer(model.parameters(), cfg.train.lr, cfg.train.weight_decay, policy),
        guard=distributed.make_guard(world, cfg.train.max_bad_steps, cfg.train.max_rollbacks,
                                     cfg.train.lr_backoff),
        interrupt=distributed.make_interrupt(world, device),
        x_train=data.train.x if stream is not None else training_form(data.train.x, binarize, seed, device),
        y_train=on(data.train.y),
        x_valid=eval_view(data.valid.x, binarize, seed).to(device),
        y_valid=on(data.valid.y),
    )


__all__ = ["Session", "build_session", "check_data_fits", "claim_folder", "pick_device", "run_data"]
