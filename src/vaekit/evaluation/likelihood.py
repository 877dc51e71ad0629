"""The evaluation's importance-sampled log p(x): ``vaekit.models.importance`` with the reported IWAE
bounds, a progress bar, and on a GPU chunks sized from its free memory.

Every posterior / prior / likelihood works, with or without an analytic KL. By default a forward call
sees about ROWS_PER_CALL rows on a CPU; on a GPU as many as fill about a quarter of its free memory,
measured on one probe call. The noise of example i, sample j depends only on (seed, i, j) (the seed rule
of ``vaekit.models.importance``), so the estimate is the same for any chunk sizes and on any device.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.models.importance import (
    ROWS_PER_CALL,
    ImportanceSamples,
    chunk_sizes,
    forward_chunk,
    model_device,
)
from vaekit.models.importance import importance_sample as sample_chunks
from vaekit.progress import reporter

IWAE_KS = (1, 5, 50, 500, 5000)  # the k of the reported IWAE bounds (those <= K, plus K itself)
GPU_MEMORY_SHARE = 0.25  # a GPU's default chunks fill about this share of its free memory ...
GPU_MAX_ROWS = 262144  # ... up to this many rows (larger calls gain nothing: the GPU is busy already)


def iwae_ks(k: int) -> list[int]:
    """The k of the IWAE bounds reported with K samples: 1, 5, 50, 500, 5000 up to K, and K."""
    return sorted({j for j in IWAE_KS if j <= k} | {k})


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
    with torch.no_grad():
        forward_chunk(model, xb[:examples], None if yb is None else yb[:examples], 0, 0, samples, k, seed)
    rows = examples * samples
    per_row = max(1.0, (torch.cuda.max_memory_allocated(device) - before) / rows)
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(GPU_MAX_ROWS, max(rows, GPU_MEMORY_SHARE * free / per_row)))


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
    """K posterior samples per example reduced to log p(x), the IWAE bounds of ``iwae_ks(K)`` and the
    ELBO parts, all from the same samples."""
    n = x.shape[0]
    device = model_device(model)
    chunk_sizes(k, batch_size, sample_chunk, 1)  # checks the sizes before the probe
    if device.type == "cuda" and n and (batch_size is None or sample_chunk is None):
        head = slice(0, ROWS_PER_CALL["cuda"])  # the probe's examples (at most this many)
        was_training = model.training
        model.eval()
        try:
            fill = gpu_rows(model, x[head].to(device), None if y is None else y[head].to(device), k, seed,
                            device)
        finally:
            model.train(was_training)
        batch_size, sample_chunk = chunk_sizes(k, batch_size, sample_chunk, fill)
    bar = reporter(n * k, f"log p(x), K={k}", unit="sample", enabled=progress)
    try:
        return sample_chunks(model, x, y, k, batch_size, sample_chunk, seed, iwae_ks(k), bar.update)
    finally:
        bar.close()


__all__ = ["IWAE_KS", "ImportanceSamples", "importance_sample", "iwae_ks"]
