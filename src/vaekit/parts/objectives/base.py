"""The objective contract's base class and the model description its checks use."""

from __future__ import annotations

import torch

from vaekit.parts.output import Output


class Objective:
    """Turns a model's ``Output`` into a loss to minimize and named terms to log.

    ``samples``: posterior draws per example the model makes for it (k). ``__call__(output, step)``
    returns (loss scalar, {name: per-example tensor [B] or a 0-d batch estimate}); the terms are
    for logging only, so they should be detached. ``steady_from`` declares when the step number stops
    mattering (a KL warm-up's end).
    """

    samples: int = 1
    # the step from which __call__ no longer depends on ``step`` and does the same tensor work at every
    # call, with no Python state of its own changing (None: not declared). A training step captured as
    # one CUDA graph (train.graph) replays one call's kernels, so it is used from this step on
    steady_from: int | None = None

    def __call__(self, output: Output, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


def describe_posterior(model: torch.nn.Module) -> str:
    """The model's posterior for an error message: its class name, or the model's when it has none."""
    posterior = getattr(model, "posterior", None)
    if posterior is None:
        return f"a {type(model).__name__}"
    return f"the {type(posterior).__name__} posterior"


__all__ = ["Objective", "describe_posterior"]
