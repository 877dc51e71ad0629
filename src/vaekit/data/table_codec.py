"""A table's columns fitted once on the training rows, and the rows encoded for the model and decoded
back to a DataFrame with the original names, dtypes, category labels and ranges.

A discrete column becomes a one-hot block of its categories. A numeric column (continuous, integer,
datetime as seconds) gets the mode-specific normalization of TVAE (Xu et al. 2019): a variational
Gaussian mixture of its training values picks the modes (at most ``MAX_MODES``, those weighing more
than ``MIN_MODE_WEIGHT``); a value v is encoded as the one-hot of its most responsible mode m and
alpha = (v - mean_m) / (4 std_m). A column with missing cells gets an indicator (1 = missing) after
its block, whose value entries are then all 0. A constant column is kept in the schema only. Encoding
and decoding are vectorized over rows (numpy).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from vaekit.data.table_types import ColumnType, pandas
from vaekit.errors import DataError
from vaekit.schema import Column

if TYPE_CHECKING:
    import pandas as pd

MAX_MODES = 10
MIN_MODE_WEIGHT = 0.005
FIT_ROWS = 5_000  # training values a numeric column's mixture is fitted on (seeded subsample; 20,000 took
# 13x as long on diamonds' price for the same ten modes)
MAX_DECIMALS = 6
_FALSE_LIKE = {"false", "no", "n", "f", "0"}


def fit_columns(train: pd.DataFrame, full: pd.DataFrame, types: list[ColumnType], seed: int = 0) -> tuple[
        Column, ...]:
    """The encoded columns: categories from all rows (so held-out rows are encodable), modes and bounds
    from the training rows, a missing indicator where any row misses the value."""
    columns = []
    for t in types:
        col, values = full[t.name], full[t.name].dropna()
        missing = bool(col.isna().any())
        dtype = str(col.dtype)
        if t.type == "constant":
            columns.append(Column(t.name, "constant", (_label(values.iloc[0]),), missing=missing,
                                  dtype=dtype))
        elif t.type in ("categorical", "ordinal", "boolean"):
            columns.append(Column(t.name, t.type, _categories(t, values), missing=missing, dtype=dtype))
        else:
            v = _numbers(t, train[t.name].dropna())
            if not len(v):
                raise DataError(f"column {t.name!r} has no values in the training rows", "use more rows")
            columns.append(Column(t.name, t.type, modes=_modes(v, seed),
                                  bounds=(float(v.min()), float(v.max())), missing=missing,
                                  dtype=dtype, step=_step(t, v)))
    return tuple(columns)


def _label(value: Any) -> str:
    """A category label as the schema keeps it: 3.0 and 3 are both '3'."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _categories(t: ColumnType, values: pd.Series) -> tuple[str, ...]:
    labels = sorted({_label(v) for v in values.unique()}, key=_sort_key)
    if t.order:
        extra = sorted(set(labels) - set(t.order))
        if extra:
            raise DataError(f"column {t.name!r} holds labels its given order lacks: {', '.join(extra[:5])}",
                            f"list every label in data.columns.{t.name}.order")
        return t.order
    if t.type == "boolean":
        if len(labels) != 2:
            raise DataError(f"column {t.name!r} is boolean but holds {len(labels)} distinct values",
                            f"set data.columns.{t.name}: categorical")
        return tuple(sorted(labels, key=lambda s: s.strip().lower() not in _FALSE_LIKE))
    if len(labels) < 2:
        raise DataError(f"column {t.name!r} ({t.type}) has one label only",
                        f"set data.columns.{t.name}: drop")
    return tuple(labels)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then text."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _numbers(t: ColumnType, values: pd.Series) -> np.ndarray:
    """A numeric column as float64 (datetimes as seconds since 1970)."""
    pd = pandas()
    if t.type == "datetime":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = pd.to_datetime(values, errors="coerce", format="mixed")
        if stamps.isna().any():
            bad = values[stamps.isna()].iloc[0]
            raise DataError(f"column {t.name!r}: {bad!r} is not a date",
                            f"fix it, or set data.columns.{t.name}")
        return (stamps.astype("datetime64[ns]").astype("int64").to_numpy() / 1e9).astype(np.float64)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        bad = values[numbers.isna()].iloc[0]
        raise DataError(f"column {t.name!r} ({t.type}) holds {bad!r}, not a number",
                        f"fix the value, or set data.columns.{t.name}: categorical")
    return numbers.to_numpy(dtype=np.float64)


def _step(t: ColumnType, v: np.ndarray) -> float | None:
    """The grid every training value lies on, so decoded values look like the data: 10^-d for the fewest
    decimals d (up to MAX_DECIMALS) of a continuous column (carat 0.23, not 0.2317), a day, hour,
    minute or second for datetimes; None when there is none."""
    if t.type == "continuous":
        steps = [10.0**-d for d in range(MAX_DECIMALS + 1)]
    elif t.type == "datetime":
        steps = [86400.0, 3600.0, 60.0, 1.0]
    else:
        return None
    tol = 1e-9 * max(1.0, float(np.abs(v).max()))
    return next((s for s in steps if np.allclose(np.round(v / s) * s, v, rtol=0, atol=tol)), None)


def _modes(v: np.ndarray, seed: int) -> tuple[tuple[float, float], ...]:
    """(mean, std) of the modes of a variational Gaussian mixture fitted to v (as TVAE's transformer)."""
    from sklearn.mixture import BayesianGaussianMixture

    rng = np.random.default_rng(seed)
    fit = v if len(v) <= FIT_ROWS else rng.choice(v, FIT_ROWS, replace=False)
    spread = float(v.max() - v.min()) or max(abs(float(v[0])), 1.0)
    floor = 1e-3 * spread
    k = int(min(MAX_MODES, len(np.unique(fit))))
    if k < 2:
        return ((float(v.mean()), floor),)
    gm = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type="dirichlet_process",
                                 weight_concentration_prior=1e-3, max_iter=100, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a convergence warning changes nothing we use
        gm.fit(fit.reshape(-1, 1))
    keep = gm.weights_ > MIN_MODE_WEIGHT
    means, stds = gm.means_[keep, 0], np.sqrt(gm.covariances_[keep].reshape(-1))
    order = np.argsort(means)
    return tuple((float(m), float(max(s, floor))) for m, s in zip(means[order], stds[order], strict=True))


def encode(frame: pd.DataFrame, columns: tuple[Column, ...], seed: int = 0) -> np.ndarray:
    """Rows [N, sum of widths] float32 as the schema lays them out; unknown labels are refused."""
    missing_names = [c.name for c in columns if c.name not in frame.columns]
    if missing_names:
        raise DataError(f"the table lacks the columns {', '.join(missing_names)} the model was trained on",
                        "give a table with every training column (missing cells may be empty)")
    blocks = []
    for c in columns:
        if c.type == "constant":
            continue
        col = frame[c.name]
        absent = col.isna().to_numpy()
        if absent.any() and not c.missing:
            raise DataError(f"column {c.name!r} has missing cells, which the training data never had",
                            "fill them, or retrain on data with missing cells in that column")
        block = np.zeros((len(frame), c.value_width), np.float32)
        rows = np.flatnonzero(~absent)
        if c.discrete:
            labels = np.array([_label(v) for v in col.to_numpy()[rows]], dtype=object)
            code = {lab: i for i, lab in enumerate(c.categories)}
            unknown = sorted({lab for lab in labels if lab not in code})
            if unknown:
                raise DataError(f"column {c.name!r} holds labels the model does not know: "
                                f"{', '.join(unknown[:5])}",
                                f"use one of: {', '.join(c.categories[:20])}")
            block[rows, [code[lab] for lab in labels]] = 1.0
        else:
            v = _numbers(ColumnType(c.name, c.type), col.iloc[rows])
            means, stds = (np.array(a) for a in zip(*c.modes, strict=True))
            m = np.argmax(-0.5 * ((v[:, None] - means) / stds) ** 2 - np.log(stds), axis=1)
            block[rows, m] = 1.0
            block[rows, -1] = (v - means[m]) / (4 * stds[m])
        blocks.append(block)
        if c.missing:
            blocks.append(absent.astype(np.float32)[:, None])
    return np.concatenate(blocks, 1) if blocks else np.zeros((len(frame), 0), np.float32)


def decode(x: np.ndarray, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Encoded rows back to a DataFrame: the most likely category or mode of each block, values clipped
    to the training range, integers rounded, the original dtypes, missing cells where the indicator
    is above 1/2."""
    pd = pandas()
    x = np.asarray(x, dtype=np.float64)
    out: dict[str, Any] = {}
    at = 0
    for c in columns:
        block = x[:, at : at + c.value_width]
        absent = x[:, at + c.value_width] > 0.5 if c.missing else np.zeros(len(x), bool)
        at += c.width
        if c.type == "constant":
            out[c.name] = _typed(pd.Series([c.categories[0]] * len(x)), c, absent)
        elif c.discrete:
            out[c.name] = _typed(pd.Series(np.array(c.categories, dtype=object)[block.argmax(1)]), c, absent)
        else:
            means, stds = (np.array(a) for a in zip(*c.modes, strict=True))
            m = block[:, :-1].argmax(1)
            v = np.clip(means[m] + 4 * stds[m] * block[:, -1], *c.bounds)
            if c.step is not None:
                v = np.round(np.round(v / c.step) * c.step, max(0, round(-math.log10(c.step))))
            out[c.name] = _numeric(v, c, absent)
    return pd.DataFrame(out)


def _numeric(v: np.ndarray, c: Column, absent: np.ndarray) -> pd.Series:
    pd = pandas()
    if c.type == "datetime":
        s = pd.Series(pd.to_datetime(np.round(v * 1e9).astype("int64"), unit="ns"))
        s[absent] = pd.NaT
        if c.dtype.startswith("datetime64"):
            return s.astype(c.dtype)
        text = s.dt.strftime("%Y-%m-%d" if c.step == 86400.0 else "%Y-%m-%d %H:%M:%S")
        return text.where(~absent, None)
    if c.type == "integer":
        s = pd.Series(np.round(v).astype(np.int64))
        if absent.any():
            s = s.astype("Int64")
            s[absent] = pd.NA
            return s if c.dtype == "Int64" or not c.dtype.startswith("float") else s.astype(c.dtype)
        return s.astype(c.dtype) if c.dtype.startswith(("int", "Int", "uint", "float")) else s
    s = pd.Series(v)
    s[absent] = np.nan
    return s.astype(c.dtype) if c.dtype.startswith("float") else s


def _typed(labels: pd.Series, c: Column, absent: np.ndarray) -> pd.Series:
    """Category labels in the column's original dtype (numbers, booleans, categories or text)."""
    pd = pandas()
    dtype = c.dtype
    if dtype == "bool" or dtype == "boolean":
        s = labels.map({c.categories[0]: False, c.categories[-1]: True}) if c.discrete else labels == "True"
        s = s.astype("boolean") if absent.any() else s.astype(bool)
    elif dtype.startswith(("int", "Int", "uint", "float")):
        s = pd.to_numeric(labels)
        if absent.any() or dtype.startswith("float"):
            s = s.astype("float64" if dtype.startswith("float") else "Int64")
        else:
            s = s.astype(dtype)
    elif dtype == "category":
        s = pd.Series(pd.Categorical(labels, categories=list(c.categories), ordered=c.type == "ordinal"))
    elif dtype in ("str", "string"):
        s = labels.astype(dtype)
    else:
        s = labels.astype(object)
    if absent.any():
        s = s.copy()
        s[absent] = None if s.dtype == object else pd.NA
    return s


__all__ = ["FIT_ROWS", "MAX_MODES", "MIN_MODE_WEIGHT", "decode", "encode", "fit_columns"]
