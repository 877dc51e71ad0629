"""Importance-sampled log-likelihood (Burda et al. 2015), chunked over examples and samples:

    log p(x) ~= logsumexp_{j<K} log w_j - log K,   log w_j = log p(x|z_j) + log p(z_j) - log q(z_j|x),
    z_j = T(eps_j; x),  eps_j ~ N(0, I)

A model that takes noise (``forward(x, y, k, eps)``, eps [k, B, latent_dim] standard normals that its
posterior maps to z) is handed eps by a fixed seed rule, so the estimate does not depend on how examples
and samples are chunked into forward calls, nor on the device:

    eps of example i, sample j = row j mod NOISE_BLOCK of
        torch.randn(min(NOISE_BLOCK, K - b NOISE_BLOCK), latent_dim, generator=Generator(s))
    with block b = j // NOISE_BLOCK and s = the first 8 bytes (little-endian) of blake2b("seed,i,b"),

drawn by torch's CPU generator and moved to the model's device. A chunk whose samples start or end inside
a block draws the whole block (sample chunks that are multiples of NOISE_BLOCK, or all K, waste nothing).
A model without ``eps`` draws its own noise from torch's global generator, seeded per forward call from
(seed, first example, first sample): reproducible for the same chunk sizes only (``chunk_invariant``
False).

Each forward call sees ``batch_size`` examples and ``sample_chunk`` samples (memory ~ their product; by
default about ROWS_PER_CALL rows); the K log-weights of an example batch are kept in float64 ([K, batch]
numbers) and reduced with logsumexp there.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.parts.output import Output

NOISE_BLOCK = 1024  # samples per seeded noise block (see the module docstring)
# default rows (examples x samples) per forward call: cache-sized on a CPU; on a GPU a start for its probe
ROWS_PER_CALL = {"cpu": 1024, "cuda": 32768}


@dataclass
class ImportanceSamples:
    """Per-example numbers from one set of K posterior samples (float64, nats)."""

    log_px: torch.Tensor  # [N] logsumexp_K log w - log K
    bounds: dict[int, torch.Tensor]  # k -> [N] k-sample IWAE bound, mean over the K // k disjoint groups
    recon: torch.Tensor  # [N] -mean_K log p(x|z)
    kl: torch.Tensor  # [N] the model's KL (analytic when it has one, else mean_K log q - log p)
    kl_dims: torch.Tensor | None  # [N, d] the model's per-dimension KL, when it gives one
    kl_layers: torch.Tensor | None  # [N, L] KL per stochastic layer of a hierarchical model
    chunk_invariant: bool  # the model took its noise from the seed rule (eps), so any chunking agrees


def block_seed(seed: int, example: int, block: int) -> int:
    """The 64-bit generator seed of one noise block: blake2b of "seed,example,block", first 8 bytes."""
    digest = hashlib.blake2b(f"{seed},{example},{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def posterior_noise(seed: int, examples: range, start: int, count: int, k: int, dim: int) -> torch.Tensor:
    """Standard normals eps [count, len(examples), dim] for samples start..start+count-1 (of K = ``k``)
    of the given examples, by the seed rule of the module docstring (float32, CPU)."""
    out = torch.empty(count, len(examples), dim)
    g = torch.Generator()
    for block in range(start // NOISE_BLOCK, (start + count - 1) // NOISE_BLOCK + 1):
        lo = block * NOISE_BLOCK
        rows = min(NOISE_BLOCK, k - lo)
        a, b = max(start, lo), min(start + count, lo + rows)
        for col, i in enumerate(examples):
            g.manual_seed(block_seed(seed, i, block))
            out[a - start : b - start, col] = torch.randn(rows, dim, generator=g)[a - lo : b - lo]
    return out


def takes_noise(model: nn.Module) -> bool:
    """Whether ``model(x, y, k, eps)`` accepts the posterior noise (every vaekit model does)."""
    return "eps" in inspect.signature(model.forward).parameters


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def chunk_sizes(k: int, batch_size: int | None, sample_chunk: int | None, rows: int) -> tuple[int, int]:
    """(examples, samples) per forward call. What is not given fills about ``rows`` rows, samples
    first (one example's samples share its encoder pass), then examples."""
    for name, v in (("nll samples (K)", k), ("batch size", batch_size), ("sample chunk", sample_chunk)):
        if v is not None and v < 1:
            raise ConfigError(f"the {name} must be >= 1, got {v}", f"pass a positive {name}")
    if sample_chunk is None:
        sample_chunk = rows if batch_size is None else max(1, rows // batch_size)
    sample_chunk = min(k, sample_chunk)
    return batch_size or max(1, rows // sample_chunk), sample_chunk


def forward_chunk(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None, first: int, start: int,
                  count: int, k: int, seed: int) -> Output:
    """Output [count, B] for examples first..first+B-1 with samples start..start+count-1 of K = ``k``."""
    if takes_noise(model):
        eps = posterior_noise(seed, range(first, first + xb.shape[0]), start, count, k, model.latent_dim)
        dtype = xb.dtype if xb.is_floating_point() else None
        return model(xb, yb, count, eps.to(xb.device, dtype))
    devices = [xb.device] if xb.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(block_seed(seed, first, start))
        return model(xb, yb, count)


def group_bounds(lw: torch.Tensor, k: int) -> torch.Tensor:
    """k-sample IWAE bound from log-weights [K, B]: the K // k disjoint groups of k consecutive samples
    each give logsumexp - log k; their mean is an unbiased estimate of the bound, [B]."""
    groups = lw.shape[0] // k
    return (torch.logsumexp(lw[: groups * k].view(groups, k, -1), 1) - math.log(k)).mean(0)


@torch.no_grad()
def importance_sample(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int = 1000,
    batch_size: int | None = None,
    sample_chunk: int | None = None,
    seed: int = 0,
    bound_ks: Iterable[int] = (),
    on_chunk: Callable[[int], None] | None = None,
) -> ImportanceSamples:
    """Draw K posterior samples per example in chunks and reduce them to log p(x), the k-sample IWAE
    bounds for ``bound_ks``, and the ELBO parts, all from the same samples; ``on_chunk(samples)`` after
    every forward call (a progress bar). Sizes not given fill about ROWS_PER_CALL rows of the device."""
    n = x.shape[0]
    device = model_device(model)
    batch_size, chunk = chunk_sizes(k, batch_size, sample_chunk, ROWS_PER_CALL.get(device.type, 1024))
    log_px = torch.empty(n, dtype=torch.float64)
    bounds = {j: torch.empty(n, dtype=torch.float64) for j in bound_ks}
    recon = torch.zeros(n, dtype=torch.float64)
    kl = torch.zeros(n, dtype=torch.float64)
    parts: dict[str, torch.Tensor] = {}  # kl_dims, kl_layers: KL parts, when the model gives them
    was_training = model.training
    model.eval()
    try:
        for first in range(0, n, batch_size):
            xb = x[first : first + batch_size].to(device)
            yb = None if y is None else y[first : first + batch_size].to(device)
            rows = slice(first, first + xb.shape[0])
            lw = torch.empty(k, xb.shape[0], dtype=torch.float64)
            for start in range(0, k, chunk):
                kk = min(chunk, k - start)
                t = forward_chunk(model, xb, yb, first, start, kk, k, seed)
                lw[start : start + kk] = t.log_weights().double().cpu()
                recon[rows] -= t.log_px_z.double().sum(0).cpu()
                kl[rows] += t.kl.double().cpu() * kk
                for name, part in (("kl_dims", t.kl_dims), ("kl_layers", t.extras.get("kl_layers"))):
                    if part is not None:
                        parts.setdefault(name, torch.zeros(n, part.shape[-1], dtype=torch.float64))
                        parts[name][rows] += part.double().cpu() * kk
                if on_chunk is not None:
                    on_chunk(xb.shape[0] * kk)
            log_px[rows] = torch.logsumexp(lw, 0) - math.log(k)
            for j, bound in bounds.items():
                bound[rows] = group_bounds(lw, j)
    finally:
        model.train(was_training)
    kl_dims, kl_layers = (parts[name] / k if name in parts else None for name in ("kl_dims", "kl_layers"))
    return ImportanceSamples(log_px, bounds, recon / k, kl / k, kl_dims, kl_layers, takes_noise(model))


__all__ = [
    "NOISE_BLOCK", "ROWS_PER_CALL", "ImportanceSamples", "block_seed", "chunk_sizes", "forward_chunk",
    "group_bounds", "importance_sample", "model_device", "posterior_noise", "takes_noise",
]
