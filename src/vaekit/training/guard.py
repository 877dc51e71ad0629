"""Divergence guard: what the training loop does when numbers stop being finite.

A step whose loss or gradient norm is NaN/inf is skipped (no optimizer update). After
``max_bad_steps`` such steps in a row the training loop goes back to its last checkpoint (which never
holds non-finite values) with the learning rate multiplied by ``lr_backoff``; after
``max_rollbacks`` rollbacks training stops with the DivergenceError of ``give_up``, which says what
to try.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from vaekit.errors import DivergenceError
from vaekit.training.speed import non_finite_flag


def params_finite(model: torch.nn.Module) -> bool:
    """True when every parameter and buffer of ``model`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


POLL_EVERY = 50  # steps between the host reads of the guard's counters (a GPU never waits per step)


class DivergenceGuard:
    """Flags non-finite steps and says when there are too many in a row to go on.

    Everything per step stays on the device: ``check`` returns the step's flag as a tensor (the fused
    optimizer skips its update when it is 1) and keeps it; ``poll`` reads the flags kept since the
    last poll to the host in one transfer and counts the runs of bad steps."""

    check_loss = True  # whether a non-finite loss alone marks a step bad (see SyncedGuard)

    def __init__(self, max_bad_steps: int, max_rollbacks: int, lr_backoff: float) -> None:
        self.max_bad_steps = max_bad_steps
        self.max_rollbacks = max_rollbacks
        self.lr_backoff = lr_backoff
        self.flags: list[torch.Tensor] = []  # one device scalar per step since the last poll
        self.bad_run = 0  # bad steps in a row up to the last poll (0: the last step read was good)
        self.counters: torch.Tensor | None = None  # ``count``'s device counters, when a step keeps them

    def check(self, loss: torch.Tensor, params: Iterable[torch.nn.Parameter], clip: float) -> torch.Tensor:
        """Clip the gradient norm to ``clip`` (0 = no clipping); 1.0 (on the device, no host read)
        when the gradient norm or, with ``check_loss``, the loss is not finite, else 0.0. The flag is
        kept for ``poll``."""
        bad = self.flag(loss, params, clip)
        self.flags.append(bad)
        return bad

    def flag(self, loss: torch.Tensor, params: Iterable[torch.nn.Parameter], clip: float) -> torch.Tensor:
        """``check``'s clipping and flag, without keeping the flag."""
        params = [p for p in params if p.grad is not None]
        if params and clip > 0:
            bad = (~torch.isfinite(torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))).float()
            if self.check_loss:
                bad = torch.maximum(bad, (~torch.isfinite(loss)).float())
        else:
            grads = [p.grad for p in params]
            checked = [*grads, loss.detach().float()] if self.check_loss else grads
            bad = non_finite_flag(checked) if checked else torch.zeros((), device=loss.device)
        return bad

    def count(self, bad: torch.Tensor) -> None:
        """Keep a step's flag in device counters updated in place, the form a captured step (one CUDA
        graph) can keep: [bad steps since the last poll, bad steps in a row now, the longest run since
        the last poll], with run = (run + 1) * bad. ``poll`` reads them as it reads ``flags``."""
        if self.counters is None:  # the first step is never captured (graph_step warms up eagerly)
            self.counters = torch.tensor([0.0, self.bad_run, self.bad_run], device=bad.device)
        c = self.counters
        run = (c[1] + 1) * bad
        c.copy_(torch.stack([c[0] + bad, run, torch.maximum(c[2], run)]))

    def poll(self) -> tuple[int, bool]:
        """(bad steps since the last poll, whether it is time to roll back); reads the device."""
        if self.counters is not None:
            return self._poll_counters()
        if not self.flags:
            return 0, self.bad_run >= self.max_bad_steps
        flags = torch.stack(self.flags).tolist()
        self.flags = []
        longest = self.bad_run
        for flag in flags:
            self.bad_run = self.bad_run + 1 if flag else 0
            longest = max(longest, self.bad_run)
        return int(sum(flags)), longest >= self.max_bad_steps

    def _poll_counters(self) -> tuple[int, bool]:
        """``poll`` for the flags ``count`` keeps: one read, then the counters start the next period."""
        skipped, run, longest = self.counters.tolist()
        self.counters[0] = 0.0
        self.counters[2] = run
        self.bad_run = int(run)
        return int(skipped), longest >= self.max_bad_steps

    def reset(self) -> None:
        """Forget the flags (after a rollback)."""
        self.flags = []
        self.bad_run = 0
        if self.counters is not None:
            self.counters.zero_()

    def reason(self, tripped: bool) -> str:
        """Why the loop rolls back: ``tripped`` by a run of bad steps, else non-finite parameters."""
        if tripped:
            return f"{self.max_bad_steps} or more steps in a row had a non-finite loss or gradient"
        return "the parameters became non-finite"

    def give_up(
        self, why: str, step: int, epoch: int, rollbacks: int, lr: float, out: Path
    ) -> DivergenceError:
        """The error that ends a run diverging again after ``max_rollbacks`` rollbacks: what to try."""
        return DivergenceError(
            f"training diverged at step {step} (epoch {epoch + 1}): {why}, after "
            f"{rollbacks} rollback(s) to the last good checkpoint with the learning rate "
            f"lowered to {lr:g}; the last good checkpoint in {out} is intact",
            f"try a lower learning rate (--train.lr {lr / 10:g}), gradient clipping "
            "(--train.grad_clip 1), a different likelihood scale for a Gaussian likelihood "
            "(--model.likelihood.scale fixed, a larger --model.likelihood.sigma) and check the "
            f"data for extreme values; start again with 'vaekit train --config "
            f"{out}/config.json --out NEW_DIR' plus those options",
        )
