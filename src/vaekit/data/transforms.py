"""Preprocessing between stored values and what the model sees: unit scaling and binarization."""

from __future__ import annotations

import torch

from vaekit.errors import ConfigError

BINARIZE_MODES = ("none", "static", "dynamic")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [0, 1]; float data is assumed to be in [0, 1] already."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_b ~ Bernoulli(x) elementwise (x in [0, 1])."""
    return torch.bernoulli(x, generator=generator)


def static_binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed binarization: the same seed always gives the same binary data set."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return binarize(x, g)


def check_mode(mode: str) -> None:
    if mode not in BINARIZE_MODES:
        raise ConfigError(
            f"unknown data.binarize {mode!r}", "set data.binarize to one of: none, static, dynamic"
        )


def eval_view(x: torch.Tensor, mode: str, seed: int) -> torch.Tensor:
    """What evaluation sees: unit floats, binarized once with a fixed seed unless mode is 'none'."""
    check_mode(mode)
    u = to_unit(x)
    return u if mode == "none" else static_binarize(u, seed)
