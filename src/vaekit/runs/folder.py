"""The run folder: what a run leaves on disk and how a model is rebuilt from it without the code
that trained it (``config.json`` + ``model.safetensors``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit.config import CONFIG_FORMAT, Config, migrate_v1
from vaekit.errors import CheckpointError, ConfigError
from vaekit.nets.mlp import legacy_transposed
from vaekit.runs.checkpoint import (
    FORMAT_VERSION,
    atomic_write_text,
    is_stale_temp,
    load_versioned,
    save_tensors,
)
from vaekit.schema import DataSchema

CONFIG = "config.json"
POLICY = "policy.json"  # the speed policy of each training session
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
REPORT = "report.md"


@dataclass(frozen=True)
class RunData:
    """The data a run was trained on: its name (the data spec, or 'arrays' for data handed over in
    Python) and its schema, all a model needs to be rebuilt."""

    name: str
    schema: DataSchema


def vaekit_version() -> str:
    from vaekit import __version__

    return __version__


def write_config(run_dir: Path, cfg: Config, data: RunData) -> None:
    doc = {
        "format_version": CONFIG_FORMAT,
        "vaekit_version": vaekit_version(),
        "config": cfg.to_dict(),
        "data": {"name": data.name, "schema": data.schema.to_dict()},
    }
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(doc, indent=2))


def migrate(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config.json of an older format in today's: format 1 kept one flat model section and the data
    description (name, event_shape, levels, num_classes, kind) beside it."""
    if doc["format_version"] == 1:
        info = doc["data"]
        described = {key: info[key] for key in ("kind", "event_shape", "levels", "num_classes")}
        schema = DataSchema.from_dict(described, str(path))  # it checks the sizes, as for format 2
        doc = {**doc, "format_version": 2, "config": migrate_v1(doc["config"], schema.event_shape),
               "data": {"name": info["name"], "schema": schema.to_dict()}}
    return doc


def holds_no_run(run: Path) -> bool:
    """The folder is empty but for temp files a killed vaekit write left: what a run killed before
    it wrote config.json leaves (train may use it without --overwrite)."""
    return all(is_stale_temp(p) for p in Path(run).iterdir())


def read_config(run_dir: str | Path) -> tuple[Config, RunData]:
    """Read and check a run folder's config.json."""
    run = Path(run_dir)
    path = run / CONFIG
    if not run.is_dir():
        raise CheckpointError(f"run folder {str(run)!r} does not exist", "check the path")
    if not path.is_file() and holds_no_run(run):
        raise CheckpointError(
            f"{str(run)!r} is not a vaekit run folder yet: it holds no {CONFIG} and no other file (as a "
            f"run stopped before it wrote {CONFIG} leaves it), so there is nothing to resume or load",
            f"start the run again with 'vaekit train ... --out {run}' (no --overwrite needed)",
        )
    if not path.is_file():
        raise CheckpointError(
            f"{str(run)!r} is not a vaekit run folder (no {CONFIG})",
            "point to the folder given as --out to 'vaekit train'",
        )
    try:
        doc = json.loads(path.read_text())
        version = doc["format_version"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{path} is corrupt or not written by vaekit", "restore it from a backup or retrain"
        ) from None
    if version not in (1, CONFIG_FORMAT):
        raise CheckpointError(
            f"{path} has run-folder format {version!r}; this vaekit ({vaekit_version()}) reads "
            f"formats 1 to {CONFIG_FORMAT}",
            f"use the vaekit version that wrote it ({doc.get('vaekit_version', 'unknown')})",
        )
    try:
        doc = migrate(doc, path)
        schema = DataSchema.from_dict(doc["data"]["schema"], str(path))
        cfg = Config.from_dict(doc["config"])
        data = RunData(str(doc["data"]["name"]), schema)
    except (ConfigError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} does not describe a valid run: {e}", "retrain") from None
    return cfg, data


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def save_model(run_dir: Path, model: torch.nn.Module, meta: dict[str, Any] | None = None) -> None:
    save_tensors(Path(run_dir) / MODEL, model_state(model), meta)


def upgrade_layout(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor], version: int
) -> dict[str, torch.Tensor]:
    """A weight file's tensors in today's layout. Format 1 stored the MLP nets' weights [in, out]:
    those, and their Adam moments (``optim.<parameter index>.*``), are transposed to [out, in]."""
    if version == FORMAT_VERSION:
        return tensors
    index = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    out = dict(tensors)
    for name in legacy_transposed(model):
        for key in (f"model.{name}", *(f"optim.{index[name]}.{m}" for m in ("exp_avg", "exp_avg_sq"))):
            if key in out and out[key].dim() == 2:
                out[key] = out[key].t().contiguous()
    return out


def load_weights_into(
    model: torch.nn.Module, source: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a weight file (model.safetensors or checkpoint.safetensors) into the model, in today's
    layout whatever the file's format; returns its tensors in that layout (the optimizer state reads
    them too) and its metadata."""
    tensors, meta, version = load_versioned(source)
    tensors = upgrade_layout(model, tensors, version)
    load_state_into(model, tensors, source)
    return tensors, meta


def load_state_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load tensors in today's layout (``model.<name>`` entries) into the model, strictly."""
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise CheckpointError(
            f"{source} does not fit the model described by config.json ({' '.join(first)})",
            "the weights come from another run or another config; use the matching run folder",
        ) from None


def load(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained model of a run folder (weights from model.safetensors, or from the
    latest checkpoint of an unfinished run), in eval mode."""
    from vaekit.models import build_model
    from vaekit.models.sizes import check_model_fits

    run = Path(run_dir)
    cfg, data = read_config(run)
    try:
        check_model_fits(cfg.model, data.schema, device)
    except ConfigError as e:
        raise CheckpointError(f"{run / CONFIG} describes a run that cannot be loaded: {e.problem}",
                              "restore config.json from a backup or retrain") from None
    model = build_model(cfg.model, data.schema)
    source = run / MODEL if (run / MODEL).is_file() else run / CHECKPOINT
    if not source.is_file():
        raise CheckpointError(
            f"{run} holds no weights yet ({MODEL} and {CHECKPOINT} are missing)",
            f"train it first, or 'vaekit resume {run}'",
        )
    load_weights_into(model, source)
    return model.to(device).eval()
