"""Where each epoch's metrics go: metrics.jsonl always, TensorBoard event files with
``train.tensorboard``. The trainer hands every record to one ``RunLogger``."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Protocol

from vaekit.errors import ConfigError
from vaekit.runs.metrics import append_metrics

TENSORBOARD_DIR = "tensorboard"  # inside the run folder
NOT_PLOTTED = ("epoch", "step", "n")  # keys of a record that are coordinates or counts, not curves


class RunLogger(Protocol):
    def log(self, record: dict[str, Any]) -> None:
        """Write one epoch's record (metrics.jsonl's keys: epoch, step, split, train_<term>, ...)."""

    def close(self) -> None:
        """Flush and release what the logger holds."""


class MetricsFile:
    """Appends each record as one JSON line to metrics.jsonl (what the report, explorer and resume read)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, record: dict[str, Any]) -> None:
        append_metrics(self.path, record)

    def close(self) -> None:
        pass


def require_tensorboard() -> None:
    """ConfigError unless ``torch.utils.tensorboard`` (the tensorboard package) can be imported."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.tensorboard=true needs the tensorboard package, which is not installed",
            "pip install vaekit[tensorboard] (or pip install tensorboard), or set train.tensorboard=false",
        ) from None


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A record's numbers as TensorBoard tags: train_<term> -> train/<term>, a validation key ->
    <split>/<key>, a list (kl_layers) -> one tag per entry, numbered from 1."""
    split = record.get("split", "valid")
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in NOT_PLOTTED:
            continue
        tag = f"train/{key[6:]}" if key.startswith("train_") else f"{split}/{key}"
        if isinstance(value, list):
            out |= {f"{tag}_{i + 1}": float(v) for i, v in enumerate(value) if isinstance(v, numbers.Real)}
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[tag] = float(value)
    return out


class TensorBoard:
    """Writes each record's numbers as scalars at the record's optimizer step, in OUT/tensorboard
    (``tensorboard --logdir OUT``); a resumed run adds a new event file next to the old ones."""

    def __init__(self, out: Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / TENSORBOARD_DIR))

    def log(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()  # an interrupted run keeps what it logged

    def close(self) -> None:
        self.writer.close()


class Loggers:
    """Several loggers as one."""

    def __init__(self, loggers: list[RunLogger]) -> None:
        self.loggers = loggers

    def log(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_loggers(out: Path, metrics_file: Path, tensorboard: bool) -> Loggers:
    """metrics.jsonl, plus TensorBoard when asked for."""
    loggers: list[RunLogger] = [MetricsFile(metrics_file)]
    if tensorboard:
        loggers.append(TensorBoard(out))
    return Loggers(loggers)


__all__ = ["Loggers", "MetricsFile", "RunLogger", "TENSORBOARD_DIR", "TensorBoard", "open_loggers",
           "require_tensorboard", "scalars"]
