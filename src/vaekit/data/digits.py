"""scikit-learn's 8x8 handwritten digits: a data set small enough for tests and quick demos."""

from __future__ import annotations

import numpy as np

from vaekit.data.base import DataSet
from vaekit.data.splits import split_indices, take

SPLIT_SEED = 0  # fixed, so the split never depends on a training seed


def load_digits_dataset(valid_fraction: float = 0.1, test_fraction: float = 0.1) -> DataSet:
    """Digits as float32 [N, 1, 8, 8] = value/16 (17 levels), split with a permutation seeded 0."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    train, valid, test = split_indices(len(x), SPLIT_SEED, valid_fraction, test_fraction, "digits")
    return DataSet(
        name="digits",
        train=take(x, y, train),
        valid=take(x, y, valid),
        test=take(x, y, test),
        kind="image",
        levels=17,
        num_classes=10,
    )
