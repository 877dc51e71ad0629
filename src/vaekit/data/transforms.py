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


def bernoulli_thresholds(x: torch.Tensor, rows: int = 4096) -> torch.Tensor:
    """Probabilities as int32 thresholds t, P(r < t) = p for r uniform on the int32 range: the form in
    which dynamically binarized training data are kept. 8-bit data (p = x / 255) map exactly,
    t = floor(x 2^32 / 255) - 2^31; floats in [0, 1] through float64; p = 1 gives 1 - 2^-32."""
    out = torch.empty(x.shape, dtype=torch.int32, device=x.device)
    for i in range(0, x.shape[0], rows):
        part = x[i : i + rows]
        if part.dtype == torch.uint8:
            t = part.long().mul_(2**32).div_(255, rounding_mode="floor")
        else:
            t = part.double().mul_(2.0**32).floor_()
        out[i : i + rows] = t.sub_(2**31).clamp_(max=2**31 - 1)
    return out


def bernoulli_from_thresholds(t: torch.Tensor) -> torch.Tensor:
    """x ~ Bernoulli(p) as fp32 0/1 from ``bernoulli_thresholds``: 1[r < t] with 32 random bits per
    pixel, two per full-range int64 draw of the default generator: about half the CPU time of
    1[u < p] with a 24-bit uniform float u per pixel, and finer (2^-32 instead of 2^-24). The 0/1
    bytes are read as uint8 for the float conversion: from bool it takes six times as long on CPU."""
    n = t.numel()
    return (random_bits(t).view(torch.int32)[:n].view(t.shape) < t).view(torch.uint8).float()


def random_bits(t: torch.Tensor) -> torch.Tensor:
    """32 random bits for each value of ``t``, as int64 words of the default generator on t's device
    (one full-range draw per two values). ``training.graph_step.allow_tracing`` makes it one opaque
    call in a torch.compile graph (dynamo cannot trace the in-place ``random_``); CUDA graphs capture
    the kernel itself."""
    return torch.empty((t.numel() + 1) // 2, dtype=torch.int64, device=t.device).random_(-(2**63), None)


def training_form(x: torch.Tensor, mode: str, seed: int, device: torch.device) -> torch.Tensor:
    """How training images are kept on ``device``: unit floats, the static binarization (drawn on the
    device), or for dynamic binarization the pixels' Bernoulli thresholds (``bernoulli_thresholds``;
    int32 moves to the device, not float64)."""
    check_mode(mode)
    if mode == "dynamic":
        return bernoulli_thresholds(x).to(device)
    u = to_unit(x).to(device)
    return static_binarize(u, seed) if mode == "static" else u


def training_batch(kept: torch.Tensor, mode: str) -> torch.Tensor:
    """A batch of ``training_form`` as the model trains on it: a fresh binarization each time it is
    seen for dynamic binarization, else the kept values."""
    return bernoulli_from_thresholds(kept) if mode == "dynamic" else kept
