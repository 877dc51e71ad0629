"""Counter-based posterior noise: the random numbers a model draws for example i, sample j are a fixed
function of (seed, draw number, i, j), so an estimate does not depend on how examples and samples are
chunked into forward calls, nor on the device.

A model draws its own noise inside ``model(x, y, k)``, one tensor for a whole [k, B] chunk from torch's
global generator, so different chunk sizes would hand each example different numbers. Inside
``CounterNoise`` every standard-normal or uniform draw laid out [k, B, ...] or [k*B, ...] (sample-major,
as in ``Terms``) is replaced by numbers from the counter-based generator Philox4x32-10 (Salmon et al.
2011), computed on the draw's own device (torch integer ops on a GPU, so no host round trip; numpy on a
CPU, whose ufuncs cost less per call), the same numbers on both: key = seed, counter = (word block p,
sample j, example i, draw number n of the forward call). Normals come from
the uniforms by Box-Muller. Any other random draw (another layout, another distribution, an explicit
generator) keeps torch's generator and clears ``replaced``.
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

_MASK = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # Philox4x32 round multipliers
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # key schedule increments (golden ratio, sqrt(3) - 1)


Words = Any  # int64 torch tensors or uint64 numpy arrays of 32-bit words: the same operators serve both


def _mulhilo(a: Words, m: int) -> tuple[Words, Words]:
    """High and low 32-bit words of a * m, for 32-bit words a and a 32-bit constant m. The product is
    < 2^64: numpy's uint64 holds it exactly, and torch's int64 multiplication wraps modulo 2^64 (two's
    complement, on CPU and GPU), so its bits are the exact product's (tests/test_noise.py checks both)."""
    p = a * m
    return (p >> 32) & _MASK, p & _MASK


def philox4x32(counter: tuple[Words, ...], key: int) -> tuple[Words, ...]:
    """Philox4x32-10 of the 128-bit counter (four arrays of 32-bit words, broadcast together) under the
    64-bit key: four arrays of 32-bit words, uniformly random as a function of the counter."""
    if isinstance(counter[0], torch.Tensor):
        c0, c1, c2, c3 = torch.broadcast_tensors(*counter)
    else:
        c0, c1, c2, c3 = np.broadcast_arrays(*counter)
    k0, k1 = key & _MASK, (key >> 32) & _MASK
    for r in range(10):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & _MASK, (k1 + _PHILOX_W[1]) & _MASK
        hi0, lo0 = _mulhilo(c0, _PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, _PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _philox_words(key: int, draw: int, ids: range, start: int, k: int, blocks: int,
                  device: torch.device) -> torch.Tensor:
    """[k, len(ids), blocks, 4] int64 words for counters (block, sample, example, draw), on ``device``.
    On a CPU numpy computes them: its ufuncs on these small arrays cost a third of torch's per call."""
    word = np.uint64
    counter = (np.arange(blocks, dtype=word), np.arange(start, start + k, dtype=word).reshape(k, 1, 1),
               np.arange(ids.start, ids.stop, dtype=word).reshape(1, -1, 1), word(draw))
    if device.type == "cpu":
        return torch.from_numpy(np.stack(philox4x32(counter, key), -1).astype(np.int64))
    on_device = tuple(torch.from_numpy(np.asarray(c, dtype=np.int64)).to(device) for c in counter)
    return torch.stack(philox4x32(on_device, key), -1)


def _unit(w: torch.Tensor) -> torch.Tensor:
    """32-bit words -> float64 uniforms in (0, 1), the centres of the 2^32 equal cells."""
    return (w.double() + 0.5) * 2.0**-32


def counter_uniforms(key: int, draw: int, ids: range, start: int, k: int, m: int, normal: bool,
                     device: torch.device) -> torch.Tensor:
    """[k, len(ids), m] numbers for examples ``ids`` and samples start..start+k-1: float64 uniforms in
    (0, 1), or float32 standard normals. Each Philox block (4 words) gives four numbers of one (example,
    sample); normals by Box-Muller, r = sqrt(-2 ln u1), angle 2 pi u2, from pairs of words (|z| < 6.7:
    the 32-bit u1 leaves out a tail of probability 2^-32 per pair)."""
    blocks = math.ceil(m / 4)
    words = _philox_words(key, draw, ids, start, k, blocks, device)
    if normal:
        r = torch.sqrt(-2.0 * torch.log(_unit(words[..., 0::2]))).float()
        theta = words[..., 1::2].float() * (2 * math.pi * 2.0**-32)
        out = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), -1)
    else:
        out = _unit(words)
    return out.view(k, len(ids), 4 * blocks)[..., :m]


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

    def draw(self, shape: torch.Size, normal: bool, device: torch.device) -> torch.Tensor | None:
        """Noise of ``shape`` for this chunk on ``device`` (float32 normals, float64 uniforms), or None when
        the layout is not [k, B, ...] or [k*B, ...]."""
        k, b = self.k, len(self.ids)
        self.draws += 1
        if len(shape) >= 2 and shape[0] == k and shape[1] == b:
            rest = shape[2:]
        elif len(shape) >= 1 and shape[0] == k * b:
            rest = shape[1:]
        else:
            return None
        m = math.prod(rest)
        noise = counter_uniforms(self.key, self.draws, self.ids, self.start, k, m, normal, device)
        return noise.reshape(shape)

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
    eps = mode.draw(t.shape, normal, t.device)
    if eps is None:
        return None
    eps = eps.to(t.dtype)
    with torch.no_grad():
        t.copy_(eps * hi + lo if normal else lo + (hi - lo) * eps)
    return t


def _factory(mode: CounterNoise, func: Callable, args: tuple, kwargs: dict, normal: bool) -> torch.Tensor:
    """randn / rand / randn_like / rand_like: torch makes the tensor (shape, dtype, device), we fill it."""
    out = func(*args, **kwargs)
    eps = mode.draw(out.shape, normal, out.device)
    if eps is None:
        mode.replaced = False
        return out
    with torch.no_grad():
        out.copy_(eps)
    return out


def _normal(mode: CounterNoise, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
    """torch.normal(mean, std[, size]) = mean + std * eps."""
    out = func(*args, **kwargs)
    eps = mode.draw(out.shape, True, out.device)
    if eps is None:
        mode.replaced = False
        return out
    mean, std = _arg(args, kwargs, 0, "mean", 0.0), _arg(args, kwargs, 1, "std", 1.0)
    return (mean + std * eps.to(out.dtype)).to(out.dtype)


_HANDLERS: dict[Callable, Callable] = {
    torch.Tensor.normal_: lambda m, f, a, kw: _fill_(m, a, kw, True),
    torch.Tensor.uniform_: lambda m, f, a, kw: _fill_(m, a, kw, False),
    torch.randn: lambda m, f, a, kw: _factory(m, f, a, kw, True),
    torch.randn_like: lambda m, f, a, kw: _factory(m, f, a, kw, True),
    torch.rand: lambda m, f, a, kw: _factory(m, f, a, kw, False),
    torch.rand_like: lambda m, f, a, kw: _factory(m, f, a, kw, False),
    torch.normal: _normal,
}

__all__ = ["CounterNoise", "counter_uniforms", "philox4x32"]
