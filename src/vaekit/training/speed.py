"""Opt-in tricks that compute the same numbers faster, one small function each.

``vaekit.training.policy`` decides *what* runs (precision, compilation); nothing here changes a
result. Each trick states its gain as measured on ``benchmarks/throughput.py``'s CPU MNIST MLP step
(one thread, on against off, interleaved; benchmarks/results/speed-tricks.json) and is kept only while
it pays at least 5 % of a step. The two CUDA-only tricks (cuDNN autotuning, channels-last) have no
measurement yet: none was made on a GPU; ``throughput.py --speed-off NAME`` on one gives it. Every
private torch API used here has a public fallback, taken when this torch lacks the private one;
tests check that both give the same numbers.

``OFF`` names the tricks to skip, so a benchmark can measure each one's gain
(``benchmarks/throughput.py --speed-off NAME``); training leaves it empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn as nn

TRICKS = ("cudnn_benchmark", "channels_last", "flush_denormals", "fused_adam", "finite_check")
OFF: set[str] = set()

# GradScaler's one-kernel "any value not finite?" check; None where this torch has none
_amp_check: Callable[..., None] | None = getattr(torch, "_amp_foreach_non_finite_check_and_unscale_", None)


def on(name: str) -> bool:
    """Whether trick ``name`` (one of TRICKS) is taken: it is, unless a benchmark switched it off."""
    return name not in OFF


def tune_backends(device: torch.device) -> None:
    """Process-wide switches: cuDNN's autotuner on CUDA (CUDA only, not yet measured). Removed: glibc
    ``mallopt`` keeping freed heap for reuse (no gain: -0.9 % of a CPU step over 17 pairs)."""
    if device.type == "cuda" and on("cudnn_benchmark"):
        torch.backends.cudnn.benchmark = True


def denormals_flushed() -> bool:
    """Whether this thread's float arithmetic flushes denormals to zero (FTZ/DAZ), by trying it."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Flush denormal floats (below 1.2e-38 in fp32) to zero on CPU while training, then restore.

    The IWAE objective's normalized importance weights make most gradient rows that small, and x86
    arithmetic on denormals is slow: once the weights have trained 150 steps, flushing saves 41 % of an
    IWAE (k = 50) CPU step of the MNIST MLP (in the benchmark's first 20 steps from initialization there
    are few denormals yet and no gain). Only values below 1.2e-38 change, smaller than any gradient that
    moves a weight. Scoped, because it is process state other code (numpy, hypothesis) relies on."""
    if device.type != "cpu" or not on("flush_denormals"):
        yield
        return
    was = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was)


def fused_adam(device: torch.device) -> bool:
    """Whether to use the single-kernel Adam (same update rule; CUDA and CPU have it): it saves
    29 % of a CPU step of the MNIST MLP."""
    return device.type in ("cuda", "cpu") and on("fused_adam")


def step_unless(opt: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """``opt.step()`` unless the device flag ``bad`` is 1. A fused optimizer reads the flag on the
    device, as under a GradScaler (its ``found_inf``), so the host never waits for the step; any
    other optimizer needs the host to read it."""
    if opt.defaults.get("fused"):
        opt.found_inf = bad
        opt.step()
    elif not bool(bad):
        opt.step()


def non_finite_flag(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """1.0 (a float32 device scalar, no host read) when any value of ``tensors`` is NaN or inf, else
    0.0. GradScaler's one-kernel check (with scale 1, so nothing is changed) saves 24 % of
    a CPU step of the MNIST MLP over one isfinite per tensor."""
    device = tensors[0].device
    if _amp_check is not None and on("finite_check"):
        flag = torch.zeros((), device=device)
        _amp_check(list(tensors), flag, torch.ones((), device=device))
        return flag
    return (~torch.stack([torch.isfinite(t).all() for t in tensors])).any().float()


def channels_last_pays(convolutional: bool, device: torch.device) -> bool:
    """Convolutions on CUDA run faster channels-last (cuDNN's NHWC kernels, and bf16 tensor cores
    want them); on CPU they do not. CUDA only, not yet measured."""
    return convolutional and device.type == "cuda" and on("channels_last")


def channels_last_model(model: nn.Module) -> None:
    """The model's 4-d weights channels-last (in place; the values and the saved files are unchanged)."""
    model.to(memory_format=torch.channels_last)


def channels_last_batch(x: torch.Tensor) -> torch.Tensor:
    """An image batch [B, C, H, W] channels-last (other batches as they are)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


__all__ = [
    "OFF",
    "TRICKS",
    "denormals_flushed",
    "flush_denormals",
    "fused_adam",
    "non_finite_flag",
    "step_unless",
    "tune_backends",
]
