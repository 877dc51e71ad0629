"""Table rows for the explorer: encoded rows decoded into the table's columns (``vaekit.data.table_codec``)
as JSON-ready dicts, and one column's values as numbers to colour the map by.

A discrete column colours by its category's index in the schema (the code the encoding one-hots), a
numeric one by its value (a datetime by seconds since 1970); a missing cell gives None.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from vaekit.data.table_codec import decode
from vaekit.schema import Column


def decode_rows(x: np.ndarray, columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    """Encoded rows [N, width] (or likelihood means) -> N dicts column name -> JSON value (numbers,
    booleans, labels, ISO dates, None for a missing cell)."""
    frame = decode(np.asarray(x, dtype=np.float64), columns)
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def column_info(columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    """Name, type and (discrete columns) category labels of each column, in table order."""
    return [{"name": c.name, "type": c.type, "categories": list(c.categories) if c.discrete else None}
            for c in columns]


def color_values(x: np.ndarray, rows: list[dict[str, Any]], columns: tuple[Column, ...], name: str) -> list[
        float | None]:
    """The number each row is coloured by for column ``name``: the category index from the argmax of
    the encoded block, or the decoded numeric value."""
    at = 0
    for c in columns:
        if c.name == name:
            break
        at += c.width
    absent = x[:, at + c.value_width] > 0.5 if c.missing else np.zeros(len(x), bool)
    if c.discrete:
        codes = x[:, at : at + c.value_width].argmax(1)
        return [None if a else int(k) for k, a in zip(codes, absent, strict=True)]
    if c.type == "constant":
        return [None if a else 0 for a in absent]
    values = [row[name] for row in rows]
    if c.type == "datetime":
        import pandas as pd

        stamps = pd.to_datetime(pd.Series(values), errors="coerce", format="mixed")
        return [None if pd.isna(s) else s.value / 1e9 for s in stamps]
    return [None if v is None else float(v) for v in values]
