"""The epoch's running sums of the loss and the objective's named terms, kept on the device with one
kernel a step (no host read until someone asks)."""

from __future__ import annotations

import torch

RESERVED = ("loss", "time_s")  # the trainer's own names in metrics.jsonl (train_loss, train_time_s)


class EpochSums:
    """Sums over the examples of this epoch's good steps of the loss and of each term, and their
    count. ``add`` only stacks the step's values, one row per example; the masking of skipped steps
    (their values may be NaN) and the summing wait for ``total``, which the trainer calls when it reads
    them or polls the guard anyway.

    ``sums`` carries an interrupted epoch's sums by name (from a checkpoint). A term that first appears
    later (a checkpoint written before the objective had it) counts from then on."""

    def __init__(self, device: torch.device, sums: dict[str, float], seen: int) -> None:
        sums = {"loss": sums.get("loss", 0.0), **sums}  # the loss first, the terms after it
        self.names = list(sums)
        self.sums = torch.tensor([*sums.values(), seen], dtype=torch.float64, device=device)
        self.rows: list[torch.Tensor] = []  # [names, n] per step
        self.bad: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self._terms = set(self.names[1:])
        self._checked = False

    @torch.no_grad()
    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], bad: torch.Tensor, n: int) -> None:
        """A step over n examples: the loss (a batch mean), the objective's terms (each [n] per example
        or a 0-d batch value), ``bad`` its guard flag (1: skipped)."""
        if not self._checked or terms.keys() != self._terms:
            self._adopt(terms, n)
        row = [loss.detach().expand(n), *(terms[name].detach().expand(n) for name in self.names[1:])]
        self.rows.append(torch.stack(row))
        self.bad.append(bad)
        self.sizes.append(n)

    def _adopt(self, terms: dict[str, torch.Tensor], n: int) -> None:
        """Check a step's names and shapes; add the names not summed yet (after folding the rows kept)."""
        for name, value in terms.items():
            if name in RESERVED:
                raise ValueError(f"an objective's term may not be named {name!r}: the trainer logs its own")
            if value.shape not in ((), (n,)):
                raise ValueError(
                    f"the objective's term {name!r} has shape {tuple(value.shape)}; a term is per example "
                    f"[{n}] or one value for the batch []"
                )
        missing = self._terms - terms.keys()
        if missing:
            raise ValueError(f"the objective stopped returning the terms {sorted(missing)}")
        new = [name for name in terms if name not in self._terms]
        if new:
            total = self.total()
            self.sums = torch.cat([total[:-1], total.new_zeros(len(new)), total[-1:]])
            self.names += new
            self._terms |= set(new)
        self._checked = True

    @torch.no_grad()
    def total(self) -> torch.Tensor:
        """[sum per name (``names``)..., examples] over the good steps so far, on the device."""
        if self.rows:
            good = torch.stack(self.bad) == 0
            sizes = torch.tensor(self.sizes, device=self.sums.device)
            keep = torch.repeat_interleave(good, sizes, output_size=sum(self.sizes))
            values = torch.where(keep, torch.cat(self.rows, 1).double(), 0.0)
            self.sums += torch.cat([values.sum(1), (sizes * good).sum().double().view(1)])
            self.rows, self.bad, self.sizes = [], [], []
        return self.sums

    def by_name(self, total: torch.Tensor) -> tuple[dict[str, float], int]:
        """A ``total`` (this one's, or summed over ranks) as ({name: sum}, examples); reads the device."""
        values = total.tolist()
        return dict(zip(self.names, values[:-1], strict=True)), int(values[-1])
