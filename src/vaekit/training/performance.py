"""The device / precision / compile policy of training, decided in this one place.

``make_policy`` reads ``train.precision`` and ``train.compile`` and the hardware once; the trainer
only applies the result: bf16 autocast around the forward pass (network outputs cast back to fp32
so the likelihood, the KL and every sum over pixels, latents or samples run in fp32), torch.compile
of the model, channels-last convolutions and the fused Adam kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

from vaekit.config import PartConfig, TrainConfig
from vaekit.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
SWITCHES = ("auto", "on", "off")
# On CPU, compilation (~30 s on a 2-core machine) pays back only on long runs (measured break-even
# for the MNIST MLP: ~50k steps).
CPU_COMPILE_MIN_STEPS = 50_000


@cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16)."""
    init_amx = getattr(torch._C._cpu, "_init_amx", None)
    if init_amx is not None and init_amx():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_allowed(model: PartConfig) -> bool:
    """bf16 is used only where the fp32 boundary is known: the composed VAE with the Gaussian
    posterior (flows and hierarchical layers compute log-densities inside their networks)."""
    return model.name == "vae" and model.posterior.name == "gaussian"


def pick_precision(
    name: str, device: torch.device, model: PartConfig, convolutional: bool
) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` (None = plain fp32); ``convolutional``: the built
    model has conv layers."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown train.precision {name!r}", f"use one of: {', '.join(PRECISIONS)}")
    if name == "fp32":
        return None
    if name == "bf16":
        if not bf16_allowed(model):
            raise ConfigError(
                f"train.precision=bf16 is supported for model.name=vae with the gaussian posterior, "
                f"not this {model.name} model (flows and hierarchical layers compute log-densities "
                "inside the networks)",
                "use train.precision=fp32 (or auto)",
            )
        return torch.bfloat16
    if not bf16_allowed(model):
        return None
    if device.type == "cuda":  # MLPs: fp32 (on an H200 bf16 autocast made mnist-mlp 17% slower: casts
        # cost more than the small matmuls gain; benchmarks/results/throughput-gpu*.json)
        return torch.bfloat16 if convolutional and torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def compiler_available(device: torch.device) -> bool:
    """Inductor needs a C++ compiler for CPU code (GPU code is Triton)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and shutil.which(os.environ.get("CXX", "g++")) is not None


def pick_compile(name: bool | str, device: torch.device, total_steps: int) -> bool:
    """``train.compile`` (true/on, false/off, auto): auto = on for CUDA, and on CPU for runs of at
    least CPU_COMPILE_MIN_STEPS."""
    name = {True: "on", False: "off"}.get(name, name) if isinstance(name, bool) else name
    if name not in SWITCHES:
        raise ConfigError(f"unknown train.compile {name!r}", "use auto, true or false")
    if name == "off" or sys.platform == "win32":
        return False
    if name == "on":
        if not compiler_available(device):
            raise ConfigError(
                f"train.compile=on needs a C++ compiler for {device.type} code and none was found",
                "install g++ (or set CXX), or use train.compile=off",
            )
        return True
    if device.type == "cuda":
        return True
    return device.type == "cpu" and total_steps >= CPU_COMPILE_MIN_STEPS and compiler_available(device)


def fused_adam_supported(device: torch.device) -> bool:
    """The single-kernel Adam exists for CUDA and CPU parameters."""
    return device.type in ("cuda", "cpu")


@dataclass(frozen=True)
class Policy:
    """How training runs on its device; ``describe()`` says it in one line."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    compile: bool = False
    channels_last: bool = False
    fused_optimizer: bool = False
    compile_reason: str = ""  # why compile is on or off (train.compile=auto decides by device and steps)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def precision(self) -> str:
        """``fp32`` or e.g. ``bfloat16 autocast``."""
        return "fp32" if self.amp_dtype is None else f"{str(self.amp_dtype).split('.')[-1]} autocast"

    def describe(self) -> str:
        parts = [str(self.device), self.precision, "compiled" if self.compile else "eager"]
        if self.channels_last:
            parts.append("channels-last")
        if self.fused_optimizer:
            parts.append("fused Adam")
        return ", ".join(parts)

    def record(self, step: int, threads: int) -> dict[str, Any]:
        """What a training session starting at ``step`` runs with, for the run folder's policy.json."""
        return {
            "started_at_step": step,
            "device": str(self.device),
            "precision": self.precision,
            "compiled": self.compile,
            "compiled_from_step": step if self.compile else None,
            "compile_reason": self.compile_reason,
            "channels_last": self.channels_last,
            "fused_optimizer": self.fused_optimizer,
            "threads": threads,
        }


def compile_reason(name: bool | str, device: torch.device, total_steps: int, compiled: bool) -> str:
    """Why ``pick_compile`` decided ``compiled``: the CPU step threshold is invisible otherwise."""
    name = {True: "on", False: "off"}.get(name, name) if isinstance(name, bool) else name
    if name != "auto":
        return f"train.compile={name}"
    if not compiled and sys.platform == "win32":
        return "train.compile=auto: not on Windows"
    if device.type == "cuda":
        return "train.compile=auto: on for CUDA"
    if device.type != "cpu":
        return f"train.compile=auto: off for {device.type}"
    if total_steps < CPU_COMPILE_MIN_STEPS:
        return (f"train.compile=auto: a CPU run compiles at >= {CPU_COMPILE_MIN_STEPS:,} steps, "
                f"this one has {total_steps:,}")
    if not compiled:
        return "train.compile=auto: no C++ compiler found for CPU code"
    return f"train.compile=auto: a CPU run of {total_steps:,} steps (>= {CPU_COMPILE_MIN_STEPS:,})"


def make_policy(
    train: TrainConfig, model_cfg: PartConfig, device: torch.device, total_steps: int, model: nn.Module
) -> Policy:
    """Decide precision, compilation, memory format and optimizer kernel for this run."""
    convolutional = any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())
    compiled = pick_compile(train.compile, device, total_steps)
    return Policy(
        device=device,
        amp_dtype=pick_precision(train.precision, device, model_cfg, convolutional),
        compile=compiled,
        channels_last=convolutional and device.type == "cuda",
        fused_optimizer=fused_adam_supported(device),
        compile_reason=compile_reason(train.compile, device, total_steps, compiled),
    )


def build_optimizer(
    params: Iterator[nn.Parameter], lr: float, weight_decay: float, policy: Policy
) -> torch.optim.Adam:
    """Adam; the fused single-kernel version where the device has one (same update rule)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=policy.fused_optimizer or None)


def _to_fp32(module: nn.Module, inputs: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor):  # the usual case, without tree_map's walk
        return output.float() if output.is_floating_point() else output
    return tree_map(lambda t: t.float() if torch.is_tensor(t) and t.is_floating_point() else t, output)


def fp32_heads(model: nn.Module) -> None:
    """Cast the encoder's and decoder's outputs to fp32 (a no-op outside autocast): the posterior,
    the likelihood, the KL and their reductions then never see bf16."""
    for name in ("encoder", "decoder"):
        net = getattr(model, name, None)
        if isinstance(net, nn.Module) and not getattr(net, "_vaekit_fp32_out", False):
            net.register_forward_hook(_to_fp32)
            net._vaekit_fp32_out = True


class Forward:
    """The model's training forward pass under the policy: autocast, and compiled when asked.

    A model that fails to compile falls back to eager with a warning (its first call raised before
    any state changed, so the step is simply run again)."""

    def __init__(self, module: nn.Module, policy: Policy) -> None:
        self.policy = policy
        self.eager = module
        self.fn: Callable[..., Any] = torch.compile(module) if policy.compile else module

    def __call__(self, *args: Any) -> Any:
        with self.policy.autocast():
            if self.fn is self.eager:
                return self.fn(*args)
            try:
                return self.fn(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
                if not _is_compile_error(e):
                    raise
                print(f"warning: torch.compile failed ({type(e).__name__}); training eagerly",
                      file=sys.stderr)
                self.fn = self.eager
                return self.fn(*args)


def _is_compile_error(e: Exception) -> bool:
    return type(e).__module__.startswith(("torch._dynamo", "torch._inductor"))


def prepare_model(model: nn.Module, policy: Policy) -> nn.Module:
    """Put the model in the policy's memory format and precision boundary (in place)."""
    if policy.channels_last:
        model.to(memory_format=torch.channels_last)
    if policy.amp_dtype is not None:
        fp32_heads(model)
    return model


def prepare_batch(x: torch.Tensor, policy: Policy) -> torch.Tensor:
    """A batch in the policy's memory format."""
    if policy.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def tune_backends(device: torch.device) -> None:
    """Switches that only make the same computation faster."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cpu":
        keep_freed_memory()


def denormals_flushed() -> bool:
    """Whether this thread's float arithmetic flushes denormals to zero (FTZ/DAZ), by trying it."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Flush denormal floats (below 1.2e-38 in fp32) to zero on CPU while training, then restore.

    The IWAE objective's normalized importance weights make most gradient rows that small, and x86
    arithmetic on denormals is so slow that a k = 50 step took 8x longer (1.5 s vs 0.19 s for the
    two-layer MNIST model on one thread). The values flushed are below any gradient that moves a
    weight. Scoped, because it is process state other code (numpy, hypothesis) relies on."""
    if device.type != "cpu":
        yield
        return
    was = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was)


@cache
def keep_freed_memory() -> bool:
    """glibc only: serve blocks below 64 MB from the heap and return free heap to the system only
    beyond 256 MB. Every step allocates the same large temporaries (weight gradients, bf16 weight
    copies); reusing their pages instead of faulting fresh ones in is ~6-10% of a CPU step of the
    MNIST MLP. True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


__all__ = [
    "Forward",
    "Policy",
    "build_optimizer",
    "cpu_has_fast_bf16",
    "denormals_flushed",
    "flush_denormals",
    "make_policy",
    "prepare_batch",
    "prepare_model",
]
