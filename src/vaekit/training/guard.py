"""Divergence guard: what the training loop does when numbers stop being finite.

A step whose loss or gradient norm is NaN/inf is skipped (no optimizer update). After
``max_bad_steps`` such steps in a row the trainer goes back to its last checkpoint (which never
holds non-finite values) with the learning rate multiplied by ``lr_backoff``; after
``max_rollbacks`` rollbacks training stops with a DivergenceError that says what to try.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from vaekit.errors import DivergenceError

if TYPE_CHECKING:
    from vaekit.training.trainer import Trainer


def params_finite(model: torch.nn.Module) -> bool:
    """True when every parameter and buffer of ``model`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


class DivergenceGuard:
    """Counts non-finite steps and rolls a trainer back when there are too many in a row."""

    def __init__(self, max_bad_steps: int, max_rollbacks: int, lr_backoff: float) -> None:
        self.max_bad_steps = max_bad_steps
        self.max_rollbacks = max_rollbacks
        self.lr_backoff = lr_backoff
        self.bad_in_row = 0

    def loss_ok(self, loss: torch.Tensor) -> bool:
        return bool(torch.isfinite(loss))

    def grads_ok(self, params: Iterable[torch.nn.Parameter], clip: float) -> bool:
        """Clip the gradient norm to ``clip`` (0 = no clipping); True when the norm is finite."""
        params = [p for p in params if p.grad is not None]
        if not params:
            return True
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        return bool(torch.isfinite(norm))

    def step_done(self, ok: bool) -> bool:
        """Record whether a step was finite; True when it is time to roll back."""
        self.bad_in_row = 0 if ok else self.bad_in_row + 1
        return self.tripped

    @property
    def tripped(self) -> bool:
        return self.bad_in_row >= self.max_bad_steps

    def roll_back(self, trainer: Trainer) -> None:
        """Reload the last checkpoint with a lower learning rate, or raise DivergenceError."""
        live = trainer.state
        why = (
            f"{self.bad_in_row} steps in a row had a non-finite loss or gradient"
            if self.tripped
            else "the parameters became non-finite"
        )
        if live.rollbacks >= self.max_rollbacks:
            lr = trainer.opt.param_groups[0]["lr"]
            raise DivergenceError(
                f"training diverged at step {live.step} (epoch {live.epoch + 1}): {why}, after "
                f"{live.rollbacks} rollback(s) to the last good checkpoint with the learning rate "
                f"lowered to {lr:g}; the last good checkpoint in {trainer.out} is intact",
                f"try a lower learning rate (--train.lr {lr / 10:g}), gradient clipping "
                "(--train.grad_clip 1), a different likelihood scale for a Gaussian likelihood "
                "(--model.likelihood_scale fixed, a larger --model.likelihood_sigma) and check the "
                f"data for extreme values; start again with 'vaekit train --config "
                f"{trainer.out}/config.json --out NEW_DIR' plus those options",
            )
        scale = live.lr_scale * self.lr_backoff
        rollbacks, skipped, at_step = live.rollbacks + 1, live.skipped_steps, live.step
        trainer.load_checkpoint()
        restored = trainer.state
        for group in trainer.opt.param_groups:
            group["lr"] *= scale / restored.lr_scale
        restored.lr_scale, restored.rollbacks, restored.skipped_steps = scale, rollbacks, skipped
        self.bad_in_row = 0
        print(
            f"warning: {why} (step {at_step}); rolled back to the checkpoint of step {restored.step} "
            f"with the learning rate lowered to {trainer.opt.param_groups[0]['lr']:g} "
            f"(rollback {rollbacks} of at most {self.max_rollbacks})",
            file=sys.stderr,
        )
