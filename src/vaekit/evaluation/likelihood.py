"""Importance-sampled log-likelihood (Burda et al. 2015), chunked over examples and samples.

    log p(x) ~= logsumexp_{j<K} log w_j - log K,   log w_j = log p(x|z_j) + log p(z_j) - log q(z_j|x),
    z_j ~ q(z|x)

Only the model's forward contract is used (``model(x, y, k) -> Output`` and ``Output.log_weights()``), so
every posterior / prior / likelihood works, with or without an analytic KL. Each forward call sees
``batch_size`` examples and ``sample_chunk`` samples (memory ~ their product; by default about
ROWS_PER_CALL rows on a CPU; on a GPU as many as fill about a quarter of its free memory, measured on
one probe call); the K log-weights of an example batch are kept in float64 ([K, batch] numbers)
and reduced with logsumexp there. The noise
of example i, sample j depends only on (seed, i, j) (``CounterNoise``), so the estimate is the same for
any chunk sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.evaluation.noise import CounterNoise
from vaekit.parts.output import Output
from vaekit.progress import reporter

IWAE_KS = (1, 5, 50, 500, 5000)  # the k of the reported IWAE bounds (those <= K, plus K itself)
# default rows (examples x samples) per forward call: cache-sized on a CPU; on a GPU the probe's size
ROWS_PER_CALL = {"cpu": 1024, "cuda": 32768}
GPU_MEMORY_SHARE = 0.25  # a GPU's default chunks fill about this share of its free memory ...
GPU_MAX_ROWS = 262144  # ... up to this many rows (larger calls gain nothing: the GPU is busy already)


@dataclass
class ImportanceSamples:
    """Per-example numbers from one set of K posterior samples (float64, nats)."""

    log_px: torch.Tensor  # [N] logsumexp_K log w - log K
    bounds: dict[int, torch.Tensor]  # k -> [N] k-sample IWAE bound, mean over the K // k disjoint groups
    recon: torch.Tensor  # [N] -mean_K log p(x|z)
    kl: torch.Tensor  # [N] the model's KL (analytic when it has one, else mean_K log q - log p)
    kl_dims: torch.Tensor | None  # [N, d] the model's per-dimension KL, when it gives one
    kl_layers: torch.Tensor | None  # [N, L] KL per stochastic layer of a hierarchical model
    chunk_invariant: bool  # every random draw came from CounterNoise


def iwae_ks(k: int) -> list[int]:
    """The k of the IWAE bounds reported with K samples: 1, 5, 50, 500, 5000 up to K, and K."""
    return sorted({j for j in IWAE_KS if j <= k} | {k})


def group_bounds(lw: torch.Tensor, k: int) -> torch.Tensor:
    """k-sample IWAE bound from log-weights [K, B]: the K // k disjoint groups of k consecutive samples
    each give logsumexp - log k; their mean is an unbiased estimate of the bound, [B]."""
    groups = lw.shape[0] // k
    return (torch.logsumexp(lw[: groups * k].view(groups, k, -1), 1) - math.log(k)).mean(0)


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


def _forward(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None, first: int, start: int, k: int,
             seed: int, devices: list[torch.device]) -> tuple[Output, bool]:
    """The output for examples first.. with samples start..start+k-1 under CounterNoise; and whether every
    draw was replaced. Draws it cannot replace get torch's generator seeded from the chunk alone."""
    chunk_seed = hash((seed, first, start)) % 2**63
    with torch.random.fork_rng(devices=devices), CounterNoise(seed, first, xb.shape[0], start, k) as noise:
        torch.default_generator.manual_seed(chunk_seed)
        if devices:
            torch.cuda.manual_seed(chunk_seed)
        return model(xb, yb, k), noise.replaced


def gpu_rows(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None, k: int, seed: int,
             device: torch.device) -> int:
    """Rows per forward call that fill about GPU_MEMORY_SHARE of the GPU's free memory, from the peak
    memory of one probe call of about ROWS_PER_CALL["cuda"] rows (examples of ``xb`` x up to K samples;
    its result is dropped)."""
    samples = min(k, ROWS_PER_CALL["cuda"])
    examples = min(xb.shape[0], max(1, ROWS_PER_CALL["cuda"] // samples))
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    _forward(model, xb[:examples], None if yb is None else yb[:examples], 0, 0, samples, seed, [device])
    rows = examples * samples
    per_row = max(1.0, (torch.cuda.max_memory_allocated(device) - before) / rows)
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(GPU_MAX_ROWS, max(rows, GPU_MEMORY_SHARE * free / per_row)))


@torch.no_grad()
def importance_sample(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int = 1000,
    batch_size: int | None = None,
    sample_chunk: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ImportanceSamples:
    """Draw K posterior samples per example in chunks and reduce them to log p(x), the IWAE bounds of
    ``iwae_ks(K)``, and the ELBO parts, all from the same samples."""
    n = x.shape[0]
    device = model_device(model)
    devices = [device] if device.type == "cuda" else []
    log_px = torch.empty(n, dtype=torch.float64)
    bounds = {j: torch.empty(n, dtype=torch.float64) for j in iwae_ks(k)}
    recon = torch.zeros(n, dtype=torch.float64)
    kl = torch.zeros(n, dtype=torch.float64)
    parts: dict[str, torch.Tensor] = {}  # kl_dims, kl_layers: KL parts, when the model gives them
    invariant = True
    was_training = model.training
    model.eval()
    bar = reporter(n * k, f"log p(x), K={k}", unit="sample", enabled=progress)
    try:
        sizes = chunk_sizes(k, batch_size, sample_chunk, ROWS_PER_CALL["cpu"])  # also checks the sizes
        if devices and n and (batch_size is None or sample_chunk is None):
            head = slice(0, ROWS_PER_CALL["cuda"])  # the probe's examples (at most this many)
            fill = gpu_rows(model, x[head].to(device), None if y is None else y[head].to(device), k, seed,
                            device)
            sizes = chunk_sizes(k, batch_size, sample_chunk, fill)
        batch_size, chunk = sizes
        for first in range(0, n, batch_size):
            xb = x[first : first + batch_size].to(device)
            yb = None if y is None else y[first : first + batch_size].to(device)
            rows = slice(first, first + xb.shape[0])
            lw = torch.empty(k, xb.shape[0], dtype=torch.float64)
            for start in range(0, k, chunk):
                kk = min(chunk, k - start)
                t, replaced = _forward(model, xb, yb, first, start, kk, seed, devices)
                invariant = invariant and replaced
                lw[start : start + kk] = t.log_weights().double().cpu()
                recon[rows] -= t.log_px_z.double().sum(0).cpu()
                kl[rows] += t.kl.double().cpu() * kk
                for name, part in (("kl_dims", t.kl_dims), ("kl_layers", t.extras.get("kl_layers"))):
                    if part is not None:
                        parts.setdefault(name, torch.zeros(n, part.shape[-1], dtype=torch.float64))
                        parts[name][rows] += part.double().cpu() * kk
                bar.update(xb.shape[0] * kk)
            log_px[rows] = torch.logsumexp(lw, 0) - math.log(k)
            for j, bound in bounds.items():
                bound[rows] = group_bounds(lw, j)
    finally:
        bar.close()
        model.train(was_training)
    kl_dims, kl_layers = (parts[name] / k if name in parts else None for name in ("kl_dims", "kl_layers"))
    return ImportanceSamples(log_px, bounds, recon / k, kl / k, kl_dims, kl_layers, invariant)


__all__ = ["IWAE_KS", "ImportanceSamples", "group_bounds", "importance_sample", "iwae_ks"]
