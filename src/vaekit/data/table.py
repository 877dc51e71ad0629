"""Tables as data: ``csv:PATH`` (also .csv.gz), ``parquet:PATH`` and pandas DataFrames from Python.

The rows are split seeded (``valid_fraction`` / ``test_fraction``), the column types inferred
(``vaekit.data.table_types``; ``data.columns`` overrides), an index column dropped, and the columns
fitted on the training rows and encoded (``vaekit.data.table_codec``); the DataSet's schema holds the
fitted columns, so a run can decode its samples into rows without the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaekit.data.base import DataSet
from vaekit.data.splits import split_indices, to_split
from vaekit.data.table_codec import encode, fit_columns
from vaekit.data.table_types import index_column, infer_types, pandas
from vaekit.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet")


def read_table(path: str | Path, fmt: str = "csv") -> pd.DataFrame:
    """The file as a DataFrame; a DataError naming the problem when it is missing, empty or unreadable."""
    pd = pandas()
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path} does not exist" if not path.exists() else f"{path} is not a file",
                        f"check the path after '{fmt}:'")
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty", "give a CSV file with a header row and data rows") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{path} cannot be read as {fmt} ({str(e).splitlines()[0]})",
                        f"check that it is a {fmt} file" + (" (comma-separated, header row)" if fmt == "csv"
                                                            else "")) from None
    except ImportError as e:
        raise DataError(f"reading {fmt} needs a package that is missing ({e})",
                        "pip install pyarrow") from None
    if frame.empty:
        raise DataError(f"{path} has no data rows", "give a table with a header row and data rows")
    return frame


def load_table(path: str, fmt: str = "csv", seed: int = 0, valid_fraction: float = 0.1,
               test_fraction: float = 0.1, columns: dict[str, Any] | None = None) -> DataSet:
    """A csv / parquet file as a table DataSet."""
    name = Path(path).name.split(".")[0] or "table"
    return from_frame(read_table(path, fmt), name, seed, valid_fraction, test_fraction, columns)


def from_frame(frame: pd.DataFrame, name: str = "table", seed: int = 0, valid_fraction: float = 0.1,
               test_fraction: float = 0.1, columns: dict[str, Any] | None = None) -> DataSet:
    """A DataFrame as a table DataSet (splits seeded by ``seed``)."""
    pd = pandas()
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"a table must be a pandas DataFrame, not {type(frame).__name__}",
                        "pass pandas.DataFrame(...)")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if len(set(frame.columns)) != frame.shape[1]:
        raise DataError("the table has duplicate column names", "give every column a distinct name")
    index = index_column(frame)
    if index is not None and columns and index in columns:  # data.columns names it: not an index to drop
        index = None
    if index is not None:
        frame = frame.drop(columns=index)
    types = infer_types(frame, columns)
    train_idx, valid_idx, test_idx = split_indices(len(frame), seed, valid_fraction, test_fraction,
                                                   f"table {name!r}")
    fitted = fit_columns(frame.iloc[train_idx], frame, types, seed)
    x = encode(frame, fitted)
    splits = [to_split(x[idx]) for idx in (train_idx, valid_idx, test_idx)]
    return DataSet(name, *splits, kind="table", levels=None, columns=fitted,
                   dropped=(index,) if index else ())


def describe_columns(data: DataSet) -> str:
    """One line per column: name, type, and its categories or modes (what ``vaekit train`` prints)."""
    lines = []
    for c in data.columns:
        if c.discrete:
            cats = ", ".join(c.categories[:6]) + (", ..." if len(c.categories) > 6 else "")
            detail = f"{len(c.categories)} categories ({cats})"
        elif c.type == "constant":
            detail = f"always {c.categories[0]!r} (not modelled)"
        else:
            detail = f"{len(c.modes)} modes, range [{c.bounds[0]:g}, {c.bounds[1]:g}]"
        lines.append(f"  {c.name}: {c.type}, {detail}" + (", with missing cells" if c.missing else ""))
    dropped = "".join(f"\n  {d}: dropped (it numbers the rows)" for d in data.dropped)
    return "\n".join(lines) + dropped


__all__ = ["FORMATS", "describe_columns", "from_frame", "load_table", "read_table"]
