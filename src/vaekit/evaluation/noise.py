"""Counter-based posterior noise: the random numbers a model draws for example i, sample j are a fixed
function of (seed, draw number, i, j), so an estimate does not depend on how examples and samples are
chunked into forward calls.

A model draws its own noise inside ``model(x, y, k)``, one tensor for a whole [k, B] chunk from torch's
global generator, so different chunk sizes would hand each example different numbers. Inside
``CounterNoise`` every standard-normal or uniform draw laid out [k, B, ...] or [k*B, ...] (sample-major,
as in ``Terms``) is replaced by numbers from numpy's Philox generator (a counter-based generator) with
key (seed, n) and counter (i, j * words per sample): the n-th draw of the forward call, example i,
sample j. Normals come from the uniforms by Box-Muller. Any other random draw (another layout, another
distribution, an explicit generator) keeps torch's generator and clears ``replaced``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

# torch random functions that CounterNoise does not replace: seeing one makes the draw chunk-dependent
_OTHER_RANDOM = {
    f
    for f in (
        getattr(torch, name, None)
        for name in ("bernoulli", "multinomial", "randint", "randint_like", "randperm", "poisson",
                     "binomial", "_standard_gamma", "_sample_dirichlet")
    )
    if f is not None
} | {
    getattr(torch.Tensor, name)
    for name in ("bernoulli", "bernoulli_", "multinomial", "exponential_", "geometric_", "log_normal_",
                 "cauchy_", "random_")
    if hasattr(torch.Tensor, name)
}


def _box_muller(u: np.ndarray) -> np.ndarray:
    """Pairs of uniforms (u1, u2) in [0, 1) -> two standard normals sqrt(-2 ln(1-u1)) (cos, sin)(2 pi u2);
    the radius from the full 53-bit u1 (exact tails), the angle in float32 (numpy's fast sin/cos)."""
    r = np.sqrt(-2.0 * np.log1p(-u[..., 0::2])).astype(np.float32)
    theta = ((2 * math.pi) * u[..., 1::2]).astype(np.float32)
    out = np.empty(u.shape, np.float32)
    out[..., 0::2] = r * np.cos(theta)
    out[..., 1::2] = r * np.sin(theta)
    return out


class CounterNoise(TorchFunctionMode):
    """Use as ``with CounterNoise(seed, first, count, start, k): model(x[first:first+count], y, k)``:
    examples first..first+count-1 with their samples start..start+k-1."""

    def __init__(self, seed: int, first: int, count: int, start: int, k: int) -> None:
        super().__init__()
        self.key = seed % 2**64
        self.ids = range(first, first + count)
        self.start = start
        self.k = k
        self.draws = 0
        self.replaced = True  # False once a draw came from torch's generator instead

    def draw(self, shape: torch.Size, normal: bool) -> torch.Tensor | None:
        """Noise of ``shape`` for this chunk (CPU; float32 normals, float64 uniforms), or None when the
        layout is not [k, B, ...] or [k*B, ...]."""
        k, b = self.k, len(self.ids)
        self.draws += 1
        if len(shape) >= 2 and shape[0] == k and shape[1] == b:
            rest = shape[2:]
        elif len(shape) >= 1 and shape[0] == k * b:
            rest = shape[1:]
        else:
            return None
        m = math.prod(rest)
        words = 4 * math.ceil(m / 4)  # Philox gives 4 words per counter step: keep samples aligned
        key = self.key + (self.draws << 64)
        u = np.empty((b, k * words))
        for row, i in enumerate(self.ids):
            bits = np.random.Philox(key=key, counter=(i << 128) + self.start * words // 4)
            u[row] = np.random.Generator(bits).random(k * words)
        noise = torch.from_numpy(_box_muller(u) if normal else u).view(b, k, words)
        return noise[..., :m].transpose(0, 1).reshape(shape)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None):
        kwargs = kwargs or {}
        handler = _HANDLERS.get(func)
        if handler is not None and kwargs.get("generator") is None and kwargs.get("out") is None:
            result = handler(self, func, args, kwargs)
            if result is not None:
                return result
        if handler is not None or func in _OTHER_RANDOM:
            self.replaced = False
        return func(*args, **kwargs)


def _arg(args: tuple, kwargs: dict, pos: int, name: str, default: Any) -> Any:
    return args[pos] if len(args) > pos else kwargs.get(name, default)


def _fill_(mode: CounterNoise, args: tuple, kwargs: dict, normal: bool) -> torch.Tensor | None:
    """Tensor.normal_(mean, std) / Tensor.uniform_(from, to) in place."""
    t = args[0]
    lo = _arg(args, kwargs, 1, "mean" if normal else "from", 0.0)
    hi = _arg(args, kwargs, 2, "std" if normal else "to", 1.0)
    eps = mode.draw(t.shape, normal)
    if eps is None:
        return None
    eps = eps.to(dtype=t.dtype, device=t.device)
    with torch.no_grad():
        t.copy_(eps * hi + lo if normal else lo + (hi - lo) * eps)
    return t


def _factory(mode: CounterNoise, func: Callable, args: tuple, kwargs: dict, normal: bool) -> torch.Tensor:
    """randn / rand / randn_like / rand_like: torch makes the tensor (shape, dtype, device), we fill it."""
    out = func(*args, **kwargs)
    eps = mode.draw(out.shape, normal)
    if eps is None:
        mode.replaced = False
        return out
    with torch.no_grad():
        out.copy_(eps.to(dtype=out.dtype, device=out.device))
    return out


def _normal(mode: CounterNoise, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
    """torch.normal(mean, std[, size]) = mean + std * eps."""
    out = func(*args, **kwargs)
    eps = mode.draw(out.shape, True)
    if eps is None:
        mode.replaced = False
        return out
    mean, std = _arg(args, kwargs, 0, "mean", 0.0), _arg(args, kwargs, 1, "std", 1.0)
    return (mean + std * eps.to(dtype=out.dtype, device=out.device)).to(out.dtype)


_HANDLERS: dict[Callable, Callable] = {
    torch.Tensor.normal_: lambda m, f, a, kw: _fill_(m, a, kw, True),
    torch.Tensor.uniform_: lambda m, f, a, kw: _fill_(m, a, kw, False),
    torch.randn: lambda m, f, a, kw: _factory(m, f, a, kw, True),
    torch.randn_like: lambda m, f, a, kw: _factory(m, f, a, kw, True),
    torch.rand: lambda m, f, a, kw: _factory(m, f, a, kw, False),
    torch.rand_like: lambda m, f, a, kw: _factory(m, f, a, kw, False),
    torch.normal: _normal,
}

__all__ = ["CounterNoise"]
