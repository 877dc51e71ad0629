"""Checks that turn user-supplied arrays into what the models expect, or say exactly what is wrong.

Images end up [N, C, H, W], tables [N, D]; values end up uint8 (8-bit, 256 levels) or float32
in [0, 1]; labels end up int64 class indices.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vaekit.errors import DataError

Kind = Literal["image", "table"]
_CHANNELS = (1, 3, 4)
_SHOWN = 5  # how many offending rows an error message lists


def _rows(rows: np.ndarray) -> str:
    """``rows`` as 'rows [3, 17] (2 in all)' for a message."""
    return f"rows {rows[:_SHOWN].tolist()} ({rows.size} in all)"


def as_examples(name: str, x: np.ndarray) -> tuple[np.ndarray, Kind]:
    """Reshape to [N, C, H, W] (from [N, H, W], [N, H, W, C] or [N, C, H, W]) or keep [N, D]."""
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{name} has shape {x.shape}; expected [N, D] (table), [N, H, W], [N, H, W, C] or "
            "[N, C, H, W] (images)",
            f"reshape {name} so that its first axis indexes examples",
        )
    if x.shape[0] == 0:
        raise DataError(f"{name} has no rows (shape {x.shape})", f"put examples into {name}")
    if 0 in x.shape[1:]:
        raise DataError(
            f"{name} has shape {x.shape}: each example has no values",
            f"check how {name} was built",
        )
    if x.ndim == 2:
        return x, "table"
    if x.ndim == 3:
        return x[:, None], "image"
    if x.shape[3] in _CHANNELS:
        return x.transpose(0, 3, 1, 2), "image"
    if x.shape[1] in _CHANNELS:
        return x, "image"
    raise DataError(
        f"{name} has shape {x.shape}: neither its last axis (channels-last) nor its second axis "
        "(channels-first) has 1, 3 or 4 channels",
        f"store {name} as [N, H, W, C] with C in (1, 3, 4), or as [N, H, W] for grayscale",
    )


def as_values(name: str, x: np.ndarray) -> tuple[np.ndarray, str, int | None]:
    """Convert values to uint8 or float32; return (array, family, levels)."""
    kind = x.dtype.kind
    if kind == "b":
        return x.astype(np.float32), "binary", 2
    if kind in "ui":
        if x.dtype != np.uint8:
            lo, hi = x.min(), x.max()
            if lo < 0 or hi > 255:
                raise DataError(
                    f"{name} is {x.dtype} with values in [{lo}, {hi}]; integer data must be "
                    "8-bit values 0..255",
                    f"rescale {name} to 0..255 and store it as uint8, or as float in [0, 1]",
                )
            x = x.astype(np.uint8)
        return x, "uint8", 256
    if kind == "f":
        flat = x.reshape(len(x), -1)
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        if bad.size:
            raise DataError(
                f"{name} has NaN or infinite values in {_rows(bad)}",
                f"drop or repair those rows of {name} before saving",
            )
        lo, hi = float(flat.min()), float(flat.max())
        if lo < 0 or hi > 1:
            out = np.flatnonzero(((flat < 0) | (flat > 1)).any(axis=1))
            hint = (
                "divide by 255 (or store the 8-bit values as uint8)"
                if lo >= 0 and hi <= 255
                else "rescale, e.g. (x - x.min()) / (x.max() - x.min())"
            )
            raise DataError(
                f"{name} is float with values in [{lo:g}, {hi:g}] ({_rows(out)}); float data "
                "must lie in [0, 1]",
                f"{hint} so that {name} lies in [0, 1]",
            )
        return x.astype(np.float32), "float", None
    raise DataError(
        f"{name} has dtype {x.dtype}, which is not numeric image or table data",
        f"store {name} as uint8 (0..255) or float (0..1)",
    )


def as_labels(name: str, y: np.ndarray, n: int) -> np.ndarray:
    """Check one non-negative integer label per example and return them as int64."""
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{name} has shape {y.shape} but its images have {n} rows",
            f"store {name} as one integer label per example, shape ({n},)",
        )
    fix = f"store {name} as class indices 0..K-1 (e.g. np.unique(y, return_inverse=True)[1])"
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(f"{name} has non-integer labels in {_rows(bad)}", fix)
    elif y.dtype.kind not in "uib":
        raise DataError(f"{name} has dtype {y.dtype}, not integer labels", fix)
    if y.size and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
        bad = np.flatnonzero((y < 0) | (y > np.iinfo(np.int32).max))
        raise DataError(f"{name} has labels that are not class indices in {_rows(bad)}", fix)
    return y.astype(np.int64)
