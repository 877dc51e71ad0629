"""The divergence guard's on-device bookkeeping: flags, runs of bad steps across reads, skip counts."""

from __future__ import annotations

import pytest
import torch

from vaekit.training.distributed import SyncedGuard
from vaekit.training.guard import DivergenceGuard


def _param(grad: float) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.full((3,), grad)
    return p


@pytest.mark.parametrize(
    ("loss", "grad", "bad"),
    [(1.0, 1.0, 0.0), (float("nan"), 1.0, 1.0), (1.0, float("inf"), 1.0), (float("inf"), float("nan"), 1.0)],
)
def test_check_flags_non_finite_loss_or_gradients_without_a_host_read(loss, grad, bad):
    flag = DivergenceGuard(3, 1, 0.5).check(torch.tensor(loss), [_param(grad)], clip=0.0)
    assert isinstance(flag, torch.Tensor) and flag.shape == () and float(flag) == bad


def test_the_distributed_guard_judges_the_averaged_gradients_only():
    assert float(SyncedGuard(3, 1, 0.5).check(torch.tensor(float("nan")), [_param(1.0)], 0.0)) == 0.0


def test_check_clips_the_gradient_norm():
    p = _param(4.0)  # norm 4 * sqrt(3)
    DivergenceGuard(3, 1, 0.5).check(torch.tensor(1.0), [p], clip=1.0)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, rel=1e-5)


def _run(flags: list[int], max_bad: int, poll_at: set[int]) -> list[tuple[int, bool]]:
    guard, polls = DivergenceGuard(max_bad, 1, 0.5), []
    for i, f in enumerate(flags):
        guard.check(torch.tensor(1.0), [_param(float("nan") if f else 1.0)], 0.0)
        if i in poll_at:
            polls.append(guard.poll())
    return polls


def test_poll_counts_skipped_steps_and_trips_on_a_long_enough_run():
    assert _run([0, 1, 1, 0, 1, 1, 1, 0], 3, {7}) == [(5, True)]
    assert _run([1, 1, 0, 1, 1, 0], 3, {5}) == [(4, False)]


def test_a_run_of_bad_steps_is_counted_across_reads():
    # bad steps 2..5 are one run of 4, read in the middle: trips at the second read, not the first
    assert _run([0, 0, 1, 1, 1, 1, 0], 4, {3, 6}) == [(2, False), (2, True)]
    # after a read, the longest run restarts from the current one
    assert _run([1, 1, 1, 0, 0, 1], 3, {3, 5}) == [(3, True), (1, False)]
