"""Column types of a table, inferred from a pandas DataFrame (``data.columns`` overrides any): what
each column is before it is encoded (``vaekit.data.table_codec``).

Rules: bool dtype, or exactly two values that read as true/false (or 0/1 integers) -> boolean; an
ordered pandas Categorical -> ordinal; other strings / categoricals -> categorical; strings that
all parse as dates, and datetime dtypes -> datetime; integer values -> integer; other numbers ->
continuous; one value only -> constant. A leading column that only numbers the rows (0..n-1 or
1..n, or named like ``Unnamed: 0`` by a CSV index) is an index and is dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaekit.errors import DataError
from vaekit.schema import COLUMN_TYPES

if TYPE_CHECKING:
    import pandas as pd

MAX_CATEGORIES = 1000  # more distinct labels than this in a text column is refused (an id column?)
_TRUE_FALSE = ({"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"})


@dataclass(frozen=True)
class ColumnType:
    """A column's inferred (or given) type and, for ordinal columns, the categories in their order."""

    name: str
    type: str
    order: tuple[str, ...] = ()


def pandas() -> Any:
    """The pandas module, or a DataError saying how to install it (tables are an extra)."""
    try:
        import pandas as pd
    except ImportError:
        raise DataError("reading tables needs pandas, which is not installed",
                        "pip install 'vaekit[tables]'") from None
    return pd


def index_column(frame: pd.DataFrame) -> str | None:
    """The leading column when it only numbers the rows, else None."""
    if frame.shape[1] < 2 or len(frame) < 2:
        return None
    name, col = frame.columns[0], frame.iloc[:, 0]
    if str(name).startswith("Unnamed: 0") or str(name).lower() in ("index", ""):
        return str(name)
    pd = pandas()
    if not pd.api.types.is_integer_dtype(col) or col.isna().any():
        return None
    values = col.to_numpy()
    start = int(values[0])
    return str(name) if start in (0, 1) and (values == range(start, start + len(values))).all() else None


def infer_type(name: str, col: pd.Series) -> ColumnType:
    """The type of one column from its values (missing values ignored)."""
    pd = pandas()
    values = col.dropna()
    if values.empty:
        raise DataError(f"column {name!r} holds only missing values",
                        f"drop it, or set data.columns.{name}: drop")
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = tuple(str(c) for c in col.dtype.categories)
        if col.dtype.ordered:
            return ColumnType(name, "ordinal" if len(cats) > 1 else "constant", cats)
    distinct = values.nunique()
    if distinct == 1:
        return ColumnType(name, "constant")
    if pd.api.types.is_bool_dtype(col):
        return ColumnType(name, "boolean")
    if pd.api.types.is_datetime64_any_dtype(col):
        return ColumnType(name, "datetime")
    if pd.api.types.is_numeric_dtype(col):
        integral = pd.api.types.is_integer_dtype(col) or bool((values == values.round()).all())
        if integral and distinct == 2 and set(values.unique()) <= {0, 1}:
            return ColumnType(name, "boolean")
        return ColumnType(name, "integer" if integral else "continuous")
    text = values.astype(str)
    if distinct == 2 and {v.strip().lower() for v in text.unique()} in _TRUE_FALSE:
        return ColumnType(name, "boolean")
    if _dates(text):
        return ColumnType(name, "datetime")
    if distinct > MAX_CATEGORIES:
        raise DataError(f"column {name!r} has {distinct:,} distinct labels (more than {MAX_CATEGORIES:,}): "
                        "too many categories to model, and likely an identifier",
                        f"drop it (data.columns.{name}: drop) or, if it is numeric, set "
                        f"data.columns.{name}: continuous")
    return ColumnType(name, "categorical")


def _dates(text: pd.Series) -> bool:
    """Whether every value parses as a date (and the values are not plain numbers)."""
    pd = pandas()
    sample = text.iloc[:200]
    if pd.to_numeric(sample, errors="coerce").notna().any():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().all())


def infer_types(frame: pd.DataFrame, overrides: dict[str, Any] | None = None) -> list[ColumnType]:
    """Every column's type; ``overrides`` maps a name to a type, to ``drop``, or to
    ``{type: ordinal, order: [...]}``. Unknown names or types are refused."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {str(c) for c in frame.columns})
    if unknown:
        raise DataError(f"data.columns names columns the table does not have: {', '.join(unknown)}",
                        f"use the table's column names: {', '.join(map(str, frame.columns))}")
    out = []
    for name in map(str, frame.columns):
        given = overrides.get(name)
        if given is None:
            out.append(infer_type(name, frame[name]))
            continue
        spec = given if isinstance(given, dict) else {"type": given}
        kind = str(spec.get("type", ""))
        if kind == "drop":
            continue
        if kind not in COLUMN_TYPES:
            raise DataError(f"data.columns.{name}: unknown type {kind!r}",
                            f"use one of: {', '.join(COLUMN_TYPES)}, or drop")
        out.append(ColumnType(name, kind, tuple(str(c) for c in spec.get("order", ()))))
    if not out:
        raise DataError("the table has no columns left to model", "keep at least one column")
    return out


__all__ = ["MAX_CATEGORIES", "ColumnType", "index_column", "infer_type", "infer_types", "pandas"]
