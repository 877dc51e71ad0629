"""What training runs with: device, precision and compilation, decided in this one place.

``make_policy`` reads ``train.precision``, ``train.compile`` and ``train.graph``, the hardware and
the built model once; the trainer only applies the result: bf16 autocast around the forward pass
(network outputs cast back to fp32 so the likelihood, the KL and every sum over pixels, latents or
samples run in fp32), torch.compile of the model, and whether each step is replayed as one CUDA
graph (``vaekit.training.graph_step``). These choices change the numbers a run computes (bf16
rounding, compiled kernels); the tricks that only compute the same numbers faster (fused Adam,
channels-last, allocator and denormal settings) are in ``vaekit.training.speed``.
"""

from __future__ import annotations

import contextlib
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

from vaekit.config import TrainConfig
from vaekit.errors import ConfigError
from vaekit.training import speed

PRECISIONS = ("auto", "fp32", "bf16")
SWITCHES = ("auto", "on", "off")
# On CPU, compilation (~30 s on a 2-core machine) pays back only on long runs (measured break-even
# for the MNIST MLP: ~50k steps).
CPU_COMPILE_MIN_STEPS = 50_000

# torch's private probe (it also asks Linux for permission to use the AMX tiles); None where this
# torch has none, and then /proc/cpuinfo answers
_init_amx: Callable[[], bool] | None = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)


@cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16)."""
    if _init_amx is not None and _init_amx():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_safe(model: nn.Module) -> bool:
    """Whether the built model declares that bf16 autocast leaves its densities in fp32 (its
    ``bf16_safe``): the composed VAE with the Gaussian posterior does; flows and hierarchical layers
    compute log-densities inside their networks and do not."""
    return bool(getattr(model, "bf16_safe", False))


def convolutional(model: nn.Module) -> bool:
    """Whether the model has convolution layers."""
    return any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())


def pick_precision(name: str, device: torch.device, model: nn.Module) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` (None = plain fp32) for the built ``model``."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown train.precision {name!r}", f"use one of: {', '.join(PRECISIONS)}")
    if name == "fp32":
        return None
    if name == "bf16":
        if not bf16_safe(model):
            raise ConfigError(
                f"train.precision=bf16 is supported for models that keep their densities outside the "
                f"networks (the vae with the gaussian posterior), not this {type(model).__name__} "
                f"(posterior {type(getattr(model, 'posterior', None)).__name__}: its log-densities "
                "are computed inside the networks)",
                "use train.precision=fp32 (or auto)",
            )
        return torch.bfloat16
    if not bf16_safe(model):
        return None
    if device.type == "cuda":  # MLPs: fp32 (on an H200 bf16 autocast made mnist-mlp 17% slower: casts
        # cost more than the small matmuls gain; benchmarks/results/throughput-gpu*.json)
        return torch.bfloat16 if convolutional(model) and torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def pick_graph(name: bool | str, device: torch.device, blocker: str | None) -> tuple[bool, str]:
    """``train.graph`` (true/on, false/off, auto): whether to replay each step as one CUDA graph, and
    why. auto and on both take it where it can run (CUDA, no ``blocker`` from
    ``graph_step.capture_blocker``); elsewhere the eager step runs and the reason says why."""
    name = {True: "on", False: "off"}.get(name, name) if isinstance(name, bool) else name
    if name not in SWITCHES:
        raise ConfigError(f"unknown train.graph {name!r}", "use auto, true or false")
    if name == "off":
        return False, "train.graph=off"
    if device.type != "cuda":
        return False, f"train.graph={name}: a CUDA graph needs a CUDA device, this run is on {device.type}"
    if blocker is not None:
        return False, f"train.graph={name}: {blocker}"
    return True, f"train.graph={name}: full batches replay one captured CUDA graph"


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


@dataclass(frozen=True)
class Policy:
    """How training runs on its device; ``describe()`` says it in one line."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    compile: bool = False
    channels_last: bool = False
    fused_optimizer: bool = False
    compile_reason: str = ""  # why compile is on or off (train.compile=auto decides by device and steps)
    graph: bool = False  # each full-batch step replayed as one CUDA graph (training/graph_step.py)
    graph_reason: str = ""  # why, or why the eager step runs

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
        if self.graph:
            parts.append("CUDA graph step")
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
            "graph": self.graph,
            "graph_reason": self.graph_reason,
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
    train: TrainConfig, device: torch.device, total_steps: int, model: nn.Module,
    graph_blocker: str | None = None,
) -> Policy:
    """Decide precision, compilation and the CUDA graph step for this run (``graph_blocker``: why the
    run's parts cannot be captured, from ``graph_step.capture_blocker``), and which speed tricks it
    takes (memory format, optimizer kernel)."""
    compiled = pick_compile(train.compile, device, total_steps)
    fused = speed.fused_adam(device)
    unfused = "the optimizer is not fused Adam (a skipped step is read on the host)"
    graph, graph_reason = pick_graph(train.graph, device, graph_blocker if fused else unfused)
    return Policy(
        device=device,
        amp_dtype=pick_precision(train.precision, device, model),
        compile=compiled,
        channels_last=speed.channels_last_pays(convolutional(model), device),
        fused_optimizer=fused,
        compile_reason=compile_reason(train.compile, device, total_steps, compiled),
        graph=graph,
        graph_reason=graph_reason,
    )


def build_optimizer(
    params: Iterator[nn.Parameter], lr: float, weight_decay: float, policy: Policy
) -> torch.optim.Adam:
    """Adam; the fused single-kernel version when the policy takes it (same update rule)."""
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
        speed.channels_last_model(model)
    if policy.amp_dtype is not None:
        fp32_heads(model)
    return model




def prepare_batch(x: torch.Tensor, policy: Policy) -> torch.Tensor:
    """A batch in the policy's memory format."""
    return speed.channels_last_batch(x) if policy.channels_last else x


__all__ = [
    "Forward",
    "Policy",
    "build_optimizer",
    "cpu_has_fast_bf16",
    "make_policy",
    "pick_graph",
    "pick_precision",
    "prepare_batch",
    "prepare_model",
]
