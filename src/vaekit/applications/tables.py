"""Conditional sampling and imputation of table rows, by inference rather than rejection: the given
cells are observed entries of the encoded row, and the others come from p(x_mis | x_obs) under the
model (``vaekit.models.completion``; Metropolis-within-Gibbs, whose chain leaves p(z, x_mis | x_obs)
invariant, so every row keeps its condition exactly and no draw is thrown away).

- ``sample_where``: n rows with some columns fixed (``cut=Ideal,color=E``), the rest drawn: the last
  state of one chain per row.
- ``impute``: the empty cells of a user's table filled with the most likely value given the row's
  other cells (the chains' average of p(x_mis | z), decoded); an empty cell is imputed as present, so
  it gets a value even in a column that had missing cells in training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from vaekit.data.table_codec import decode, encode
from vaekit.errors import DataError
from vaekit.models.completion import complete
from vaekit.schema import Column

if TYPE_CHECKING:
    import pandas as pd

DRAW_STEPS = 100  # Metropolis-within-Gibbs steps per conditional draw


def _entry_mask(columns: tuple[Column, ...], values: set[str] = frozenset(), indicators: bool = False
                ) -> torch.Tensor:
    """Mask [width] of an encoded row: the value blocks of the columns named in ``values`` and, with
    ``indicators``, every missing indicator."""
    mask = []
    for c in columns:
        mask += [c.name in values] * c.value_width + [indicators] * int(c.missing)
    return torch.tensor(mask, dtype=torch.bool)


def encode_with_gaps(frame: pd.DataFrame, columns: tuple[Column, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded rows and the observed-entry mask of a table with empty cells: an empty cell's value block
    is unobserved and its missing indicator (if any) observed as 'present'."""
    gaps = {c.name: frame[c.name].isna().to_numpy() if c.name in frame.columns else None for c in columns}
    absent = [c.name for c in columns if gaps[c.name] is None]
    if absent:
        raise DataError(f"the table lacks the columns {', '.join(absent)} the model was trained on",
                        "give every training column (leave the cells to impute empty)")
    filled = frame.copy()
    for c in columns:
        gap = gaps[c.name]
        if gap.any() and c.type != "constant":
            filled[c.name] = filled[c.name].astype(object).where(~gap, _placeholder(c))
    x = encode(filled, columns)
    observed = np.ones_like(x, dtype=bool)
    at = 0
    for c in columns:
        gap = gaps[c.name]
        observed[gap, at : at + c.value_width] = False
        x[gap, at : at + c.value_width] = 0.0
        if c.missing:
            x[gap, at + c.value_width] = 0.0
        at += c.width
    return torch.from_numpy(x), torch.from_numpy(observed)


def _placeholder(c: Column) -> Any:
    """Any valid value of the column, to encode a row before its gap's block is blanked."""
    if c.discrete:
        return c.categories[0]
    if c.type == "datetime":
        import pandas as pd

        return pd.Timestamp(c.bounds[0], unit="s")
    return c.bounds[0]


def parse_where(text: str, columns: tuple[Column, ...]) -> dict[str, str]:
    """``col=value,col=value`` checked against the schema: known columns, known categories, numbers."""
    by = {c.name: c for c in columns}
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            raise DataError(f"--where part {part!r} is not column=value",
                            "write e.g. --where 'cut=Ideal,color=E'")
        if name not in by:
            raise DataError(f"--where names {name!r}, which is not a column of the model",
                            f"use one of: {', '.join(by)}")
        c = by[name]
        if c.discrete and value not in c.categories:
            raise DataError(f"--where {name}={value}: {value!r} is not a category of {name!r}",
                            f"use one of: {', '.join(c.categories[:30])}")
        if c.type == "constant":
            raise DataError(f"--where {name}: the column is always {c.categories[0]!r}", f"drop {name}")
        if c.numeric and c.type != "datetime":
            try:
                float(value)
            except ValueError:
                raise DataError(f"--where {name}={value}: {name!r} is numeric",
                                f"give a number for {name}") from None
        out[name] = value
    if not out:
        raise DataError("--where is empty", "write e.g. --where 'cut=Ideal,color=E'")
    return out


@torch.no_grad()
def sample_where(model: nn.Module, columns: tuple[Column, ...], n: int, where: dict[str, str],
                 steps: int = DRAW_STEPS) -> pd.DataFrame:
    """n rows whose ``where`` columns hold the given values, the other columns drawn from
    p(x_mis | x_obs) (one Metropolis-within-Gibbs chain of ``steps`` steps per row)."""
    import pandas as pd

    row = {c.name: [where[c.name]] if c.name in where else [None] for c in columns}
    frame = pd.DataFrame(row)
    for c in columns:  # a number given as text must be encoded as a number
        if c.name in where and c.numeric and c.type != "datetime":
            frame[c.name] = pd.to_numeric(frame[c.name])
    x, _ = encode_with_gaps(frame, columns)  # observed: the given columns' values, nothing else
    observed = _entry_mask(columns, set(where)).expand(n, -1)
    x = x.expand(n, -1).clone()
    drawn = complete(model, x, observed, method="mwg", rounds=steps, draw=True)
    return decode(drawn.numpy(), columns)


@torch.no_grad()
def impute(model: nn.Module, columns: tuple[Column, ...], frame: pd.DataFrame,
           method: str = "importance") -> pd.DataFrame:
    """``frame`` with its empty cells filled from p(x_mis | x_obs); the given cells are kept as given."""
    x, observed = encode_with_gaps(frame, columns)
    estimate = complete(model, x, observed, method=method)
    estimate[:, _entry_mask(columns, indicators=True)] = 0.0  # an imputed cell is present: it gets a value
    filled = decode(estimate.numpy(), columns)
    out = frame.copy()
    for c in columns:
        gap = frame[c.name].isna()
        if gap.any():
            merged = frame[c.name].astype(object).where(~gap, filled[c.name].astype(object))
            out[c.name] = merged.astype(filled[c.name].dtype) if c.dtype != "object" else merged
    return out


__all__ = ["DRAW_STEPS", "encode_with_gaps", "impute", "parse_where", "sample_where"]
