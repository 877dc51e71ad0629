"""The in-memory data set every loader returns: three splits of tensors plus what the model needs to
know about them, its ``schema`` (kind, event shape, value levels, classes, columns, vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch

from vaekit.schema import Column, DataSchema


@dataclass
class Split:
    """One split. ``x``: [N, C, H, W] for images or [N, D] for tables; uint8 holds 8-bit values
    0..255, float32 holds values already in [0, 1]. ``y``: int64 labels [N] or None."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DataSet:
    """A named data set with train/valid/test splits.

    ``levels`` is the number of distinct values a dimension takes when the data is discrete
    (256 for 8-bit images, 17 for sklearn digits), None for continuous data; it is what bits/dim
    and discretized likelihoods need.
    """

    name: str
    train: Split
    valid: Split
    test: Split
    kind: Literal["image", "table", "sequence"]
    levels: int | None = 256
    num_classes: int | None = None
    columns: tuple[Column, ...] = ()  # a table's columns, when the source knows them
    vocabulary: tuple[str, ...] = ()  # a token sequence's vocabulary
    dropped: tuple[str, ...] = ()  # a table's columns the source dropped (an index column)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @cached_property
    def schema(self) -> DataSchema:
        """What the data is, as the parts check it and a run saves it; ``unit_interval`` from the
        values (8-bit data map to [0, 1]; floats are looked at)."""
        return DataSchema(self.kind, self.event_shape, self.levels, self._unit_interval(), self.num_classes,
                          self.columns, self.vocabulary)

    def _unit_interval(self) -> bool:
        for s in (self.train, self.valid, self.test):
            x = s.x
            if x.is_floating_point() and len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
                return False
        return True

    def split(self, name: str) -> Split:
        if name not in ("train", "valid", "test"):
            from vaekit.errors import DataError

            raise DataError(
                f"unknown split {name!r}", "use one of: train, valid, test"
            )
        return getattr(self, name)
