"""Seeded train/valid/test splits and the conversion of numpy arrays into ``Split`` objects."""

from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np
import torch

from vaekit.data.base import DataSet, Split
from vaekit.errors import ConfigError, DataError


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    """Refuse fractions that cannot split a data set (negative, NaN, or summing to 1 or more)."""
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise DataError(
                f"{name}={value!r} is not a fraction in [0, 1)", f"pass e.g. {name}=0.1"
            )
    if valid_fraction + test_fraction >= 1:
        raise DataError(
            f"valid_fraction + test_fraction = {valid_fraction + test_fraction:g} leaves no "
            "training data",
            "keep their sum below 1, e.g. 0.1 and 0.1",
        )


def split_sizes(
    n: int, valid_fraction: float, test_fraction: float, what: str
) -> tuple[int, int, int]:
    """Rows for (train, valid, test) out of ``n``; a non-zero fraction gets at least one row."""
    n_valid = max(1, round(n * valid_fraction)) if valid_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_valid - n_test < 1:
        raise DataError(
            f"{what} has only {n} examples, too few to split into train/valid/test with "
            f"valid_fraction={valid_fraction} and test_fraction={test_fraction}",
            "add more examples or lower the fractions",
        )
    return n - n_valid - n_test, n_valid, n_test


def split_indices(
    n: int, seed: int, valid_fraction: float, test_fraction: float, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays for train/valid/test from a permutation seeded by ``seed`` (each sorted)."""
    n_train, n_valid, _ = split_sizes(n, valid_fraction, test_fraction, what)
    order = np.random.default_rng(seed).permutation(n)
    parts = np.split(order, [n_train, n_train + n_valid])
    return tuple(np.sort(p) for p in parts)  # type: ignore[return-value]


def to_split(x: np.ndarray, y: np.ndarray | None = None) -> Split:
    """Wrap numpy arrays as a ``Split`` (labels become int64)."""
    x_t = torch.from_numpy(np.ascontiguousarray(x))
    y_t = None if y is None else torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return Split(x_t, y_t)


def take(x: np.ndarray, y: np.ndarray | None, idx: np.ndarray) -> Split:
    """The rows ``idx`` of ``x`` (and ``y``) as a ``Split``."""
    return to_split(x[idx], None if y is None else y[idx])


def select_classes(data: DataSet, classes: list[int], exclude: list[int]) -> DataSet:
    """``data`` with only the examples whose label is in ``classes`` (all when empty) and not in
    ``exclude``, in every split: how a detector is trained on normal classes only. The same rule for
    train, valid and test, so a run's validation split holds normal data too."""
    if not classes and not exclude:
        return data
    if data.train.y is None:
        raise ConfigError(f"data.classes / data.exclude_classes need labels, and {data.name!r} has none",
                          "drop data.classes and data.exclude_classes, or use a labelled data set")
    present = set(torch.cat([s.y for s in (data.train, data.valid, data.test) if s.y is not None]).tolist())
    for key, wanted in (("data.classes", classes), ("data.exclude_classes", exclude)):
        absent = sorted(set(wanted) - present)
        if absent:
            raise ConfigError(f"{key} names {absent}, not a label of {data.name!r}",
                              f"use labels among {sorted(present)}")
    keep = sorted((set(classes) or present) - set(exclude))
    if not keep:
        raise ConfigError(f"data.classes {classes} minus data.exclude_classes {exclude} leaves no class",
                          "keep at least one class")
    wanted_t = torch.tensor(keep)

    def part(s: Split) -> Split:
        if s.y is None:
            return s
        rows = torch.isin(s.y, wanted_t)
        return Split(s.x[rows], s.y[rows])

    return replace(data, train=part(data.train), valid=part(data.valid), test=part(data.test))
