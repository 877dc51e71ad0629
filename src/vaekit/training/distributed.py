"""Data-parallel training on torch.distributed: one process per GPU (or per CPU share), started by
``torchrun``, which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.

Every rank derives the same epoch permutation from (seed, epoch) and takes its contiguous slice of
each global batch, so the world's batch is exactly the single-process batch; DistributedDataParallel
averages the gradients. Rank 0 alone writes the run folder; every rank evaluates (identical
parameters give identical numbers), so decisions such as early stopping agree without messages.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.training.guard import DivergenceGuard
from vaekit.training.interrupt import DeferredInterrupt, StepInterrupt

# Seeds of ranks > 0 are offset so that their posterior noise and binarization draws differ.
RANK_SEED_STRIDE = 1_000_003
INTERRUPT_CHECK_EVERY = 10  # steps between the ranks' agreement on a pending Ctrl-C


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs and writes files."""
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch of indices (sizes differ by at most one)."""
        return idx.tensor_split(self.size)[self.rank] if self.active else idx

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over the ranks (a new tensor; ``t`` is left alone)."""
        t = t.clone()
        if self.active:
            dist.all_reduce(t)
        return t

    def any(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` is true on any rank."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """``t`` from every rank, in rank order (same shape on all ranks)."""
        if not self.active:
            return [t]
        out = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(out, t)
        return out


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer",
                          "start distributed runs with torchrun, which sets it") from None


def world_from_env() -> World:
    """The World that torchrun's environment variables describe."""
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def setup(device: torch.device) -> World:
    """Join the process group when started by torchrun with WORLD_SIZE > 1 (NCCL for CUDA, gloo
    otherwise); a plain run returns rank 0 of 1 and touches nothing."""
    world = world_from_env()
    if not world.active:
        return world
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed", "run with a single process")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
        atexit.register(teardown)
    return world


def teardown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device, world: World) -> torch.device:
    """Each rank on a node drives its own GPU: cuda -> cuda:LOCAL_RANK."""
    if device.type != "cuda" or not world.active:
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"local rank {world.local_rank} has no GPU ({torch.cuda.device_count()} visible)",
            "start at most one process per GPU: torchrun --nproc_per_node=<number of GPUs>",
        )
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def seed_rank(seed: int, world: World) -> None:
    """Give ranks > 0 their own random stream (rank 0 keeps the single-process one); call after
    the model is built, so every rank starts from the same weights."""
    if world.rank > 0:
        torch.manual_seed(seed + RANK_SEED_STRIDE * world.rank)


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several ranks (gradients averaged
    during backward); the model itself otherwise."""
    if not world.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def rng_tensors(device: torch.device, world: World) -> dict[str, torch.Tensor]:
    """Random-generator states for a checkpoint: this process's, plus every rank's when distributed
    (each rank resumes its own stream). Collective: all ranks must call it."""
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    if world.active:
        for key in list(out):
            on = device if dist.get_backend() == "nccl" else torch.device("cpu")
            for r, state in enumerate(world.gather(out[key].to(on))):
                out[f"{key}.rank{r}"] = state.cpu()
    return out


def restore_rng(
    tensors: dict[str, torch.Tensor], device: torch.device, world: World, fallback_seed: int
) -> None:
    """Set this rank's generators from a checkpoint. A checkpoint of a single process restores
    rank 0; the other ranks start offset streams from ``fallback_seed``."""
    suffix = f".rank{world.rank}"
    cpu = tensors.get("rng.cpu" + suffix)
    if cpu is None and world.rank > 0:
        seed_rank(fallback_seed, world)
    else:
        torch.set_rng_state(tensors["rng.cpu"] if cpu is None else cpu)
    cuda = tensors.get("rng.cuda" + suffix, tensors.get("rng.cuda"))
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


class SyncedGuard(DivergenceGuard):
    """The divergence guard for several ranks: every rank runs backward (a NaN loss gives NaN
    gradients, which the all-reduce spreads), so the skip decision, made on the averaged gradients,
    is the same everywhere and no rank waits for another in a collective."""

    check_loss = False


class SyncedInterrupt(DeferredInterrupt):
    """Ctrl-C for several ranks: every INTERRUPT_CHECK_EVERY checks the ranks agree whether any of
    them was interrupted, so all stop after the same step and save one consistent checkpoint."""

    def __init__(self, world: World, device: torch.device) -> None:
        super().__init__()
        self.world = world
        self.device = device
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if self.calls % INTERRUPT_CHECK_EVERY == 0 and self.world.any(self.requested, self.device):
            raise StepInterrupt


def make_guard(world: World, max_bad_steps: int, max_rollbacks: int, lr_backoff: float) -> DivergenceGuard:
    cls = SyncedGuard if world.active else DivergenceGuard
    return cls(max_bad_steps, max_rollbacks, lr_backoff)


def make_interrupt(world: World, device: torch.device) -> DeferredInterrupt:
    return SyncedInterrupt(world, device) if world.active else DeferredInterrupt()


__all__ = [
    "World",
    "local_device",
    "make_guard",
    "make_interrupt",
    "restore_rng",
    "rng_tensors",
    "seed_rank",
    "setup",
    "teardown",
    "world_from_env",
    "wrap",
]
