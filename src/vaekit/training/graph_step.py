"""The training step with no host synchronisation, replayed as one CUDA graph (``train.graph``).

``DeviceStep`` is the loop's step (batch gather, dynamic binarization, forward, loss, backward, the
guard's clipping and flag, fused Adam skipped on the device by that flag, the epoch sums) written so
that nothing in it waits for the device, branches on a device value or allocates differently from
one step to the next: the guard keeps its flags in device counters (``DivergenceGuard.count``) and
the sums in one device vector (``StepTotals``). ``CapturedStep`` runs it eagerly for a few steps
(warm-up: cuBLAS/cuDNN workspaces, the allocator, a compiled forward's compilation), captures one
full-batch step with ``torch.cuda.graph`` and from then on copies each batch's indices into the
captured index buffer and replays the graph: one launch a step instead of hundreds. The noise
(binarization bits, posterior draws) comes from the default CUDA generator, which CUDA graphs
advance on every replay, so replays draw fresh noise from the run's RNG stream.

The epoch's last, partial batch is not padded or dropped: it runs through the same ``DeviceStep``
eagerly (one uncaptured step an epoch). Padding would draw noise for the padded rows and mix them into
batch-level terms (the TC and MMD penalties), and dropping would train on fewer examples; either would
give other numbers than the eager loop, whose exact-resume and seed guarantees the graph keeps.

Captured kernels bake in what they read at capture: the learning rate (a float), the step number the
objective sees and the optimizer's state tensors. So a step is captured only once the objective no
longer reads the step number (``Objective.steady_from``), and ``reset`` drops the graph whenever those
change (a rollback reloads the optimizer state and lowers the learning rate).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn

from vaekit.data.transforms import random_bits, training_batch
from vaekit.parts.objectives import Objective
from vaekit.training.epoch_sums import StepTotals
from vaekit.training.guard import DivergenceGuard
from vaekit.training.policy import Policy, prepare_batch


def allow_tracing() -> None:
    """Let torch.compile trace the step with the binarization noise as one opaque call (how the tests
    check that the step has no graph break). Done on demand: registering imports torch._dynamo, 1.3 s
    that every command importing the data transforms paid when it was a decorator."""
    torch.compiler.allow_in_graph(random_bits)

WARMUP_STEPS = 3  # eager steps before the capture (torch's recipe: warm up on a side stream)

# the fused Adam kernel that Adam(fused=True).step() launches; None where this torch has none
_fused_adam: Callable[..., None] | None = getattr(torch, "_fused_adam_", None)


def capture_blocker(objective: Objective, distributed: bool, streaming: bool) -> str | None:
    """Why this run's parts keep its step from being one CUDA graph on any device (None: they do not;
    the device and the optimizer are ``policy.pick_graph``'s to judge). Every model's step can be
    captured: tests/test_graph_step.py traces the MLP, conv, hierarchical and IAF ones whole."""
    if distributed:
        return "DDP runs its gradient all-reduce from autograd hooks outside one graph"
    if streaming:
        return "train.streaming copies each batch from host memory"
    if getattr(objective, "steady_from", None) is None:
        return (f"the objective {type(objective).__name__} does not declare from which step it stops "
                "reading the step number (Objective.steady_from)")
    return None


def init_adam_state(opt: torch.optim.Optimizer) -> None:
    """Create fused Adam's state for every parameter with a gradient and no state, as its first
    ``step`` would (a device step count, zero moments): a captured step must not allocate it."""
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None and not opt.state[p]:
                opt.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }


def fused_adam_step(opt: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """``Adam(fused=True).step()`` with ``found_inf = bad``: the same three kernels (count the step,
    the fused update skipped where bad = 1, uncount it), without ``Optimizer.step``'s Python wrapper,
    which breaks a torch.compile graph and refuses CUDA-graph capture unless ``capturable``. Where
    this torch has no ``_fused_adam_``, or the optimizer has options the kernel call here does not
    pass, ``opt.step()``: the same update, and a capture of it fails, so ``CapturedStep`` goes on with
    the eager step."""
    if _fused_adam is None or not _plain_fused_adam(opt):
        opt.found_inf = bad
        opt.step()
        return
    init_adam_state(opt)  # the first step's (never a captured one)
    for group in opt.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        state = [opt.state[p] for p in params]
        steps = [s["step"] for s in state]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        _fused_adam(
            params, [p.grad for p in params], [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
            [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
            weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None,
            found_inf=bad,
        )
        torch._foreach_sub_(steps, [bad] * len(steps))


def _plain_fused_adam(opt: torch.optim.Optimizer) -> bool:
    """Adam(fused=True) with the options ``fused_adam_step`` passes (no amsgrad, maximize, decoupled
    decay, tensor betas)."""
    return type(opt) is torch.optim.Adam and all(
        g.get("fused") and not g.get("amsgrad") and not g.get("maximize") and not g.get("differentiable")
        and not g.get("decoupled_weight_decay") and not torch.is_tensor(g["betas"][0])
        for g in opt.param_groups
    )


def capture(fn: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """``fn``'s kernels recorded as one CUDA graph on the current device (recording runs nothing;
    ``replay()`` runs them). Host reads and synchronisations inside ``fn`` raise here."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


@contextlib.contextmanager
def side_stream() -> Iterator[None]:
    """Run the block on a fresh CUDA stream that starts after, and is waited for by, the current one:
    torch's recipe for the warm-up steps before a capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)


class DeviceStep:
    """One training step on a batch given by its indices into the resident training data, with no
    host read: ``__call__(idx, step)`` updates the parameters, the optimizer state, the guard's device
    counters and ``totals``. The same function the loop's eager step computes, in the same order."""

    def __init__(
        self, forward: Callable[..., Any], objective: Objective, opt: torch.optim.Optimizer,
        guard: DivergenceGuard, params: list[nn.Parameter], x_train: torch.Tensor,
        y_train: torch.Tensor | None, binarize: str, grad_clip: float, policy: Policy,
    ) -> None:
        self.forward, self.objective, self.opt, self.guard = forward, objective, opt, guard
        self.params = params
        self.x_train, self.y_train, self.binarize, self.grad_clip, self.policy = (
            x_train, y_train, binarize, grad_clip, policy)
        self.totals = StepTotals()

    def __call__(self, idx: torch.Tensor, step: int) -> None:
        xb = prepare_batch(training_batch(self.x_train.index_select(0, idx), self.binarize), self.policy)
        yb = None if self.y_train is None else self.y_train.index_select(0, idx)
        noise = getattr(self.objective, "noise", None)
        k = self.objective.samples
        out = self.forward(xb, yb, k) if noise is None else self.forward(noise(xb), yb, k, None, xb)
        loss, terms = self.objective(out, step)
        for p in self.params:
            p.grad = None
        loss.backward()
        bad = self.guard.flag(loss.detach(), self.params, self.grad_clip)
        fused_adam_step(self.opt, bad)
        self.guard.count(bad)
        self.totals.add(loss, terms, bad, idx.shape[0])


class CapturedStep:
    """``DeviceStep`` replayed as one CUDA graph for full batches (the partial last batch of an epoch,
    the warm-up and the objective's unsteady steps run it eagerly). A capture that fails falls back to
    the eager ``DeviceStep`` for the rest of the session with a one-line warning."""

    def __init__(self, step: DeviceStep, batch_size: int, steady_from: int) -> None:
        self.step, self.batch_size, self.steady_from = step, batch_size, steady_from
        self.graph: torch.cuda.CUDAGraph | None = None
        self.idx: torch.Tensor | None = None  # the captured index buffer
        self.warm = 0
        self.failed = False
        self.replays = 0  # steps run by replaying the graph (the captured one included)

    @property
    def totals(self) -> StepTotals:
        return self.step.totals

    def __call__(self, idx: torch.Tensor, step: int) -> None:
        if self.failed or idx.shape[0] != self.batch_size or step < self.steady_from:
            self.step(idx, step)
        elif self.graph is not None:
            self.idx.copy_(idx)
            self.graph.replay()
            self.replays += 1
        elif self.warm < WARMUP_STEPS:
            self._warm_up(idx, step)
        else:
            self._capture(idx, step)

    def _warm_up(self, idx: torch.Tensor, step: int) -> None:
        with side_stream():
            self.step(idx, step)
        self.warm += 1

    def _capture(self, idx: torch.Tensor, step: int) -> None:
        """Capture this step (recording runs nothing), then replay it once to run it."""
        init_adam_state(self.step.opt)
        self.idx = idx.clone()
        for p in self.step.params:  # the gradients are then allocated in the graph's own memory pool
            p.grad = None
        static = self.idx
        try:
            graph = capture(lambda: self.step(static, step))
        except RuntimeError as e:
            self.failed, self.idx = True, None
            why = (str(e).splitlines() or [type(e).__name__])[0]
            print(f"warning: capturing the training step as a CUDA graph failed ({why}); "
                  "training with the eager step", file=sys.stderr)
            self.step(idx, step)
            return
        self.graph = graph
        graph.replay()
        self.replays += 1

    def reset(self) -> None:
        """Forget the graph and the sums since the last read (after a rollback: new optimizer state, a
        lower learning rate, the epoch's sums from the checkpoint); the next full batch captures again."""
        self.graph, self.idx = None, None
        if self.totals.values is not None:
            self.totals.values.zero_()


__all__ = ["CapturedStep", "DeviceStep", "allow_tracing", "capture", "capture_blocker", "fused_adam_step", "init_adam_state",
           "side_stream"]
