"""The in-memory data set every loader returns: three splits of tensors plus what the model needs to
know about them (event shape, value levels, classes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


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
    kind: Literal["image", "table"]
    levels: int | None = 256
    num_classes: int | None = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def split(self, name: str) -> Split:
        if name not in ("train", "valid", "test"):
            from vaekit.errors import DataError

            raise DataError(
                f"unknown split {name!r}", "use one of: train, valid, test"
            )
        return getattr(self, name)
