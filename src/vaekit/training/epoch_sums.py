"""The epoch's running sums of the loss and the objective's named terms, kept on the device with one
kernel a step (no host read until someone asks)."""

from __future__ import annotations

import torch

RESERVED = ("loss", "time_s")  # the trainer's own names in metrics.jsonl (train_loss, train_time_s)


def check_terms(terms: dict[str, torch.Tensor], n: int) -> None:
    """Refuse an objective's terms that the trainer cannot sum: its own names, or a shape other than
    per example [n] or one batch value []."""
    for name, value in terms.items():
        if name in RESERVED:
            raise ValueError(f"an objective's term may not be named {name!r}: the trainer logs its own")
        if value.shape not in ((), (n,)):
            raise ValueError(
                f"the objective's term {name!r} has shape {tuple(value.shape)}; a term is per example "
                f"[{n}] or one value for the batch []"
            )


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
        self._at: dict[tuple[int, ...], torch.Tensor] = {}  # where ``absorb`` adds a StepTotals' values

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
        check_terms(terms, n)
        missing = self._terms - terms.keys()
        if missing:
            raise ValueError(f"the objective stopped returning the terms {sorted(missing)}")
        self._add_names([name for name in terms if name not in self._terms])
        self._checked = True

    def _add_names(self, new: list[str]) -> None:
        """Sum ``new`` names too, from zero (after folding the rows kept)."""
        if new:
            total = self.total()
            self.sums = torch.cat([total[:-1], total.new_zeros(len(new)), total[-1:]])
            self.names += new
            self._terms |= set(new)

    @torch.no_grad()
    def absorb(self, totals: StepTotals) -> None:
        """Add what a captured step summed on the device (``StepTotals``) and zero it, on the device."""
        if totals.values is None:
            return
        self._add_names([name for name in totals.names[1:] if name not in self._terms])
        at = (*(self.names.index(name) for name in totals.names), len(self.names))
        if at not in self._at:  # made once an epoch: a copy to the device
            self._at[at] = torch.tensor(at, device=self.sums.device)
        self.sums.index_add_(0, self._at[at], totals.values)
        totals.values.zero_()

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


class StepTotals:
    """The sums of ``EpochSums`` kept by a captured training step: one float64 device vector
    [loss, terms..., examples] over the good steps, added to in place (a CUDA graph replays the same
    kernels on the same memory each step) and handed to ``EpochSums.absorb`` when the loop reads it."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.values: torch.Tensor | None = None

    @torch.no_grad()
    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], bad: torch.Tensor, n: int) -> None:
        """``EpochSums.add`` for one step, summed at once: a skipped step (``bad`` = 1) adds nothing."""
        if self.values is None:  # the first step, never a captured one: names and shapes are fixed here
            check_terms(terms, n)
            self.names = ["loss", *terms]
            self.values = torch.zeros(len(self.names) + 1, dtype=torch.float64, device=loss.device)
        row = torch.stack([loss.detach().expand(n), *(terms[k].detach().expand(n) for k in self.names[1:])])
        good = bad == 0
        sums = torch.cat([row.double().sum(1), row.new_full((1,), n, dtype=torch.float64)])
        self.values.add_(torch.where(good, sums, 0.0))
