"""Memory estimates made before anything large is allocated, so an oversized config, data shape or
sample count is refused with the numbers instead of swapping the machine or dying of OOM."""

from __future__ import annotations

import math
import os

import torch

from vaekit.config import PartConfig
from vaekit.errors import ConfigError
from vaekit.schema import DataSchema

FLOAT_BYTES = 4
TRAIN_COPIES = 4  # weights, gradients and Adam's two moments, per parameter


def memory_bytes(device: str | torch.device = "cpu") -> int:
    """The memory of the device: the GPU's for CUDA, else the machine's physical memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def parameter_count(cfg: PartConfig, schema: DataSchema) -> int:
    """Parameters of the model the config builds for this data, counted on the meta device (no
    memory is allocated)."""
    from vaekit.models import build_model

    with torch.device("meta"):
        model = build_model(cfg, schema)
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_fits(what: str, need: int, device: str | torch.device, fix: str) -> None:
    """ConfigError when ``need`` bytes exceed the device's memory, naming both numbers."""
    have = memory_bytes(device)
    if need > have:
        raise ConfigError(f"{what} needs at least {_gb(need)}, more than the {_gb(have)} of memory of "
                          f"{torch.device(device).type}", fix)


def check_model_fits(
    cfg: PartConfig,
    schema: DataSchema,
    device: str | torch.device = "cpu",
    batch_values: int = 0,
    training: bool = False,
) -> int:
    """Refuse a model (plus ``batch_values`` floats of one batch) too large for the device's memory;
    returns the parameter count. Training counts each parameter TRAIN_COPIES times."""
    params = parameter_count(cfg, schema)
    need = params * FLOAT_BYTES * (TRAIN_COPIES if training else 1) + batch_values * FLOAT_BYTES
    check_fits(
        f"a model of {params:,} parameters for data of shape {schema.event_shape}"
        + (f" with batches of {batch_values:,} values" if batch_values else ""),
        need, device,
        "make the model smaller (model.latent_dim, model.net.hidden, model.net.channels, ...) or the batch "
        "(train.batch_size, objective.samples)",
    )
    return params


def event_values(event_shape: tuple[int, ...]) -> int:
    """Values in one example."""
    return math.prod(event_shape)
