"""MNIST and Fashion-MNIST from their canonical IDX .gz files, with the IWAE paper's split.

Train is the first 5/6 of the 60k training file and valid the last 1/6 (exactly 50k/10k for
the real files; the same proportion for smaller files, e.g. test fixtures); test is t10k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaekit.data.base import DataSet
from vaekit.data.cache import cache_dir, ensure_files
from vaekit.data.idx import read_idx
from vaekit.data.sources import MNIST_FILES, SOURCES
from vaekit.data.splits import to_split
from vaekit.errors import DataError

NUM_CLASSES = 10


def valid_size(n_train_file: int) -> int:
    """Rows of the 60k-style training file that go to valid: the last sixth (10k of 60k)."""
    return n_train_file // 6


def load_idx_dataset(
    name: str, data_dir: str | Path | None = None, mirror: str | None = None
) -> DataSet:
    """Load ``mnist`` or ``fashion-mnist`` from data_dir or the cache, downloading if missing."""
    paths = ensure_files(SOURCES[name], cache_dir(name, data_dir), mirror)
    x_train, y_train = _pair(paths[MNIST_FILES[0]], paths[MNIST_FILES[1]])
    x_test, y_test = _pair(paths[MNIST_FILES[2]], paths[MNIST_FILES[3]])
    n_valid = valid_size(len(x_train))
    if n_valid == 0:
        raise DataError(
            f"{paths[MNIST_FILES[0]]} holds only {len(x_train)} images, too few for a valid split",
            "use the complete training file (60000 images)",
        )
    cut = len(x_train) - n_valid
    return DataSet(
        name=name,
        train=to_split(x_train[:cut], y_train[:cut]),
        valid=to_split(x_train[cut:], y_train[cut:]),
        test=to_split(x_test, y_test),
        kind="image",
        levels=256,
        num_classes=NUM_CLASSES,
    )


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 [N, 1, H, W] and labels as int64 [N], checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    fix = "use the canonical files (delete these to download them again)"
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path} holds {images.dtype} of shape {images.shape}, not uint8 images "
            "[N, H, W]",
            fix,
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path} holds shape {labels.shape} but {images_path} holds {len(images)} "
            "images; they must match one label per image",
            fix,
        )
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise DataError(
            f"{labels_path} has labels outside 0..{NUM_CLASSES - 1} at rows {bad[:5].tolist()}",
            fix,
        )
    return images[:, None], labels
