"""What the data is: the schema every data source returns with its examples and every run saves.

Parts read it to check that they fit (a Bernoulli likelihood needs values in [0, 1], a conv net an
image) and to size themselves (a per-column head needs each column's categories). It replaces the
loose ``event_shape, levels, num_classes`` arguments the parts were built from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vaekit.errors import CheckpointError

KINDS = ("image", "table", "sequence")
COLUMN_TYPES = ("continuous", "integer", "categorical", "ordinal", "boolean", "datetime", "constant")
NUMERIC_TYPES = ("continuous", "integer", "datetime")


def _positive_int(v: object) -> bool:
    """JSON gives 1e6 as a float: sizes must be true integers."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class Column:
    """One column of a table and how it is encoded for the model (``vaekit.data.table_codec``).

    ``categories``: the labels codes 0, 1, ... stand for (categorical / ordinal / boolean), or the one
    value of a constant column. ``modes``: (mean, std) of each mode of a numeric column's
    mode-specific normalization. ``bounds``: the numeric range seen in training, where decoded values
    are clipped. ``missing``: the column has a missing-value indicator. ``dtype``: the pandas dtype
    decoded rows get back; ``step``: the grid a numeric column's values lie on (0.01, a day).

    Encoded, a discrete column is a one-hot block of its categories, a numeric one a one-hot block of
    its modes then alpha = (v - mean_m) / (4 std_m), and a missing indicator (1 = missing) follows
    when ``missing``; a constant column takes no entries."""

    name: str
    type: Literal["continuous", "integer", "categorical", "ordinal", "boolean", "datetime", "constant"] = (
        "continuous")
    categories: tuple[str, ...] = ()
    modes: tuple[tuple[float, float], ...] = ()
    bounds: tuple[float, float] | None = None
    missing: bool = False
    dtype: str = ""
    step: float | None = None

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}; use one of {COLUMN_TYPES}")
        if self.discrete and len(self.categories) < 2:
            raise ValueError(f"column {self.name!r} ({self.type}) needs at least two categories")
        if self.type == "constant" and len(self.categories) != 1:
            raise ValueError(f"constant column {self.name!r} needs exactly its one value")
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        modes = tuple((float(m), float(s)) for m, s in self.modes)
        if any(not s > 0 for _, s in modes):
            raise ValueError(f"column {self.name!r}: every mode needs a positive std")
        object.__setattr__(self, "modes", modes)
        if self.bounds is not None:
            object.__setattr__(self, "bounds", (float(self.bounds[0]), float(self.bounds[1])))

    @property
    def discrete(self) -> bool:
        return self.type in ("categorical", "ordinal", "boolean")

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES

    @property
    def value_width(self) -> int:
        """Encoded entries of the value: categories, or modes + alpha (0 for a constant column)."""
        if self.discrete:
            return len(self.categories)
        return len(self.modes) + 1 if self.numeric else 0

    @property
    def width(self) -> int:
        """Encoded entries in all: the value block and the missing indicator."""
        return self.value_width + int(self.missing)


@dataclass(frozen=True)
class DataSchema:
    """kind (image [C, H, W] | table [D] | sequence [L] of token ids), the event shape of one example,
    ``levels`` (distinct values per dimension of discrete data: 256 for 8-bit images, None for
    continuous), ``unit_interval`` (values lie in [0, 1] as the model sees them), the number of label
    classes, and per kind: ``columns`` of a table, ``vocabulary`` of a sequence."""

    kind: Literal["image", "table", "sequence"]
    event_shape: tuple[int, ...]
    levels: int | None = None
    unit_interval: bool = True
    num_classes: int | None = None
    columns: tuple[Column, ...] = ()
    vocabulary: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        shape = list(self.event_shape)
        if not (1 <= len(shape) <= 3) or not all(_positive_int(s) for s in shape):
            raise ValueError(f"event_shape={shape} must be 1 to 3 positive integer sizes")
        object.__setattr__(self, "event_shape", tuple(int(s) for s in shape))
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        if self.kind not in KINDS:
            raise ValueError(f"unknown data kind {self.kind!r}; use one of {KINDS}")
        if self.kind == "image" and len(self.event_shape) != 3:
            raise ValueError(f"an image schema needs an event shape [C, H, W], got {self.event_shape}")
        if self.columns and (self.kind != "table" or self.encoded_width != self.event_shape[0]):
            raise ValueError(f"{len(self.columns)} columns ({self.encoded_width} encoded entries) do not "
                             f"describe a {self.kind} of shape {self.event_shape}")
        if self.kind == "sequence" and len(self.vocabulary) < 2:
            raise ValueError("a sequence schema needs a vocabulary of at least two tokens")
        for key in ("levels", "num_classes"):
            value = getattr(self, key)
            if value is not None and not _positive_int(value):
                raise ValueError(f"{key}={value!r} must be a positive integer or None")

    @classmethod
    def for_shape(cls, event_shape: tuple[int, ...], levels: int | None = None,
                  num_classes: int | None = None) -> DataSchema:
        """The schema of plain arrays: an image for [C, H, W], else a table of continuous columns."""
        kind = "image" if len(event_shape) == 3 else "table"
        return cls(kind, tuple(event_shape), levels, True, num_classes)

    @property
    def values(self) -> int:
        """Numbers in one example."""
        return math.prod(self.event_shape)

    @property
    def encoded_width(self) -> int:
        """Entries of one encoded table row: the columns' widths summed."""
        return sum(c.width for c in self.columns)

    def column_offsets(self) -> list[int]:
        """Where each column's block starts in an encoded row."""
        offsets, at = [], 0
        for c in self.columns:
            offsets.append(at)
            at += c.width
        return offsets

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_shape"] = list(self.event_shape)
        d["columns"] = [{**c, "categories": list(c["categories"]), "modes": [list(m) for m in c["modes"]],
                         "bounds": None if c["bounds"] is None else list(c["bounds"])} for c in d["columns"]]
        d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config.json") -> DataSchema:
        """The schema a run saved; a CheckpointError naming ``source`` when it is not one."""
        try:
            columns = tuple(Column(**c) for c in d.get("columns", ()))
            return cls(**{**d, "columns": columns})
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source} does not describe the data correctly ({e})",
                                  "restore config.json from a backup or retrain") from None


__all__ = ["COLUMN_TYPES", "KINDS", "NUMERIC_TYPES", "Column", "DataSchema"]
