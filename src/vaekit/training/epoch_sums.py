"""The epoch's running loss / reconstruction / KL sums, kept on the device with one kernel a step."""

from __future__ import annotations

import torch


class EpochSums:
    """Sums over the examples of this epoch's good steps of the loss, reconstruction term and KL, and
    their count. ``add`` only stacks the step's three scalars; the masking of skipped steps (their
    values may be NaN) and the summing wait for ``total``, which the trainer calls when it reads
    them or polls the guard anyway."""

    def __init__(self, device: torch.device, sums: list[float], seen: int) -> None:
        self.sums = torch.tensor([*sums, seen], dtype=torch.float64, device=device)
        self.terms: list[torch.Tensor] = []
        self.bad: list[torch.Tensor] = []
        self.sizes: list[int] = []

    @torch.no_grad()
    def add(
        self, loss: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor, bad: torch.Tensor, n: int
    ) -> None:
        """A step over n examples with batch means loss, recon, kl; ``bad`` its guard flag (1: skipped)."""
        self.terms.append(torch.stack([loss, recon, kl]))
        self.bad.append(bad)
        self.sizes.append(n)

    @torch.no_grad()
    def total(self) -> torch.Tensor:
        """[loss, recon, kl, examples] summed over the good steps so far, on the device."""
        if self.terms:
            good = torch.stack(self.bad) == 0
            sizes = torch.tensor(self.sizes, dtype=torch.float64, device=self.sums.device) * good
            terms = torch.where(good[:, None], torch.stack(self.terms).double(), 0.0) * sizes[:, None]
            self.sums += torch.cat([terms.sum(0), sizes.sum().view(1)])
            self.terms, self.bad, self.sizes = [], [], []
        return self.sums
