"""Data sets saved by the user as one ``.npz`` file of numpy arrays.

Arrays: ``x_train`` (required), ``x_valid``, ``x_test`` and optional ``y_train``/``y_valid``/
``y_test`` labels. A missing ``x_valid`` or ``x_test`` is carved out of ``x_train`` with a
permutation seeded by ``seed`` (``valid_fraction``/``test_fraction`` of its rows). The file is
opened with ``allow_pickle=False``: it can hold numbers only, never code.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from vaekit.data.arrays import as_examples, as_labels, as_values
from vaekit.data.base import DataSet
from vaekit.data.splits import split_indices, to_split
from vaekit.errors import DataError

SPLITS = ("train", "valid", "test")
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)
_SAVE_HINT = "np.savez(path, x_train=..., x_valid=..., x_test=..., y_train=..., ...)"


def load_npz(
    path: str | Path, seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> DataSet:
    """Load ``path`` into a DataSet, checking shapes, dtypes, ranges and finiteness."""
    path = Path(path).expanduser()
    return from_arrays(path, _read(path), seed, valid_fraction, test_fraction)


def from_arrays(
    path: Path, arrays: dict[str, np.ndarray], seed: int = 0, valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> DataSet:
    """A DataSet from named arrays as an .npz file holds them (``x_train``, optional ``x_valid``,
    ``x_test``, ``y_*``), with the same checks; missing splits are carved seeded from train.
    ``path`` names the source in messages and gives the data set its name."""
    if "x_train" not in arrays:
        raise DataError(
            f"{path} has no array x_train (found: {sorted(arrays) or 'none'})",
            f"save the training examples as x_train: {_SAVE_HINT}",
        )
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray | None] = {}
    kinds, families, levels = set(), {}, {}
    for split in SPLITS:
        key = f"x_{split}"
        if key not in arrays:
            if f"y_{split}" in arrays:
                raise DataError(
                    f"{path} has y_{split} but no {key}", f"add {key}, or drop y_{split}"
                )
            continue
        x, kind = as_examples(f"{path.name}:{key}", arrays[key])
        x, families[key], levels[key] = as_values(f"{path.name}:{key}", x)
        kinds.add(kind)
        xs[split] = x
        y = arrays.get(f"y_{split}")
        ys[split] = None if y is None else as_labels(f"{path.name}:y_{split}", y, len(x))
    _check_consistent(path, xs, families)
    _carve(path, xs, ys, seed, valid_fraction, test_fraction)
    return _assemble(path, xs, ys, kinds.pop(), levels["x_train"])


def _read(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the .npz file, refusing pickled objects."""
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an .npz file", f"use folder:{path} for images")
    if path.exists() and not path.is_file():
        raise DataError(f"{path} is not a regular file (a device, pipe or socket)",
                        "give the path of an .npz file after 'npz:'")
    if not path.is_file():
        raise DataError(f"{path} does not exist", "check the path after 'npz:'")
    with path.open("rb") as f:
        head = f.read(6)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # zip archive, or one .npy
        what = "a Python pickle (never loaded: it could run code)" if head[:1] == b"\x80" else (
            f"a file starting with {head!r}")
        raise DataError(f"{path} is not an npz archive: it is {what}", f"save it with {_SAVE_HINT}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise DataError(
            f"{path} is not a readable .npz file ({e})", f"save it with {_SAVE_HINT}"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array, not named arrays", f"save it with {_SAVE_HINT}"
        )
    arrays = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except _READ_ERRORS as e:
                raise DataError(
                    f"array {key} in {path} cannot be read ({e}); object arrays are refused "
                    "because loading them could run code",
                    f"save plain numeric arrays: {_SAVE_HINT}",
                ) from None
    return arrays


def _check_consistent(path: Path, xs: dict[str, np.ndarray], families: dict[str, str]) -> None:
    """All splits must share the example shape and the value type."""
    ref = xs["train"]
    for split, x in xs.items():
        if x.shape[1:] != ref.shape[1:]:
            raise DataError(
                f"{path}: x_{split} has examples of shape {x.shape[1:]} but x_train has "
                f"{ref.shape[1:]}",
                "store every split with the same example shape",
            )
        if families[f"x_{split}"] != families["x_train"]:
            raise DataError(
                f"{path}: x_{split} holds {families[f'x_{split}']} values but x_train holds "
                f"{families['x_train']}",
                "store every split with the same dtype (uint8 0..255, or float 0..1)",
            )


def _carve(
    path: Path,
    xs: dict[str, np.ndarray],
    ys: dict[str, np.ndarray | None],
    seed: int,
    valid_fraction: float,
    test_fraction: float,
) -> None:
    """Fill a missing valid and/or test split with seeded rows taken out of train."""
    missing = [s for s in ("valid", "test") if s not in xs]
    if not missing:
        return
    fv = valid_fraction if "valid" in missing else 0.0
    ft = test_fraction if "test" in missing else 0.0
    if fv == 0 and ft == 0:
        raise DataError(
            f"{path} lacks x_{' and x_'.join(missing)} and the fraction to carve it is 0",
            f"add x_{missing[0]} to the file or pass a non-zero fraction",
        )
    parts = split_indices(len(xs["train"]), seed, fv, ft, f"{path}:x_train")
    x, y = xs["train"], ys["train"]
    for split, idx in zip(SPLITS, parts, strict=True):
        if split == "train" or split in missing:
            xs[split] = x[idx]
            ys[split] = None if y is None else y[idx]


def _assemble(
    path: Path,
    xs: dict[str, np.ndarray],
    ys: dict[str, np.ndarray | None],
    kind: str,
    levels: int | None,
) -> DataSet:
    """The DataSet, once every split has labels or none has."""
    labeled = [s for s in SPLITS if ys[s] is not None]
    if labeled and len(labeled) != len(SPLITS):
        unlabeled = [f"y_{s}" for s in SPLITS if ys[s] is None]
        raise DataError(
            f"{path} has labels for some splits but lacks {', '.join(unlabeled)}",
            "give labels for every split, or none",
        )
    num_classes = None
    if labeled:
        num_classes = 1 + max(int(ys[s].max()) for s in SPLITS if ys[s].size)  # type: ignore[union-attr]
    splits = {s: to_split(xs[s], ys[s]) for s in SPLITS}
    return DataSet(
        name=path.stem,
        kind=kind,  # type: ignore[arg-type]
        levels=levels,
        num_classes=num_classes,
        **splits,
    )
