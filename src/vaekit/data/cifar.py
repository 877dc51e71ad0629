"""CIFAR-10 from the canonical ``cifar-10-python.tar.gz``, read without trusting its pickles.

Train is data_batch_1..5 minus its last tenth (45k), valid that last tenth (5k), test is
test_batch (10k). An already extracted ``cifar-10-batches-py/`` folder in the cache is used too.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaekit.data.base import DataSet
from vaekit.data.cache import cache_dir, ensure_files
from vaekit.data.safe_pickle import safe_loads
from vaekit.data.sources import SOURCES
from vaekit.data.splits import to_split
from vaekit.errors import DataError

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
NUM_CLASSES = 10


def load_cifar10(data_dir: str | Path | None = None, mirror: str | None = None) -> DataSet:
    """Load CIFAR-10 as uint8 [N, 3, 32, 32], downloading the archive into the cache if missing."""
    folder = cache_dir("cifar10", data_dir)
    if (folder / FOLDER / TEST_BATCH).is_file():
        return _assemble(lambda member: (folder / FOLDER / member).read_bytes(), folder / FOLDER)
    archive = ensure_files(SOURCES["cifar10"], folder, mirror)[ARCHIVE]
    fix = f"delete {archive} and download it again"
    try:
        with tarfile.open(archive, "r:gz") as tar:

            def read(member: str) -> bytes:
                try:
                    f = tar.extractfile(f"{FOLDER}/{member}")
                except KeyError:
                    raise DataError(f"{archive} has no member {FOLDER}/{member}", fix) from None
                if f is None:
                    raise DataError(f"{archive}: {FOLDER}/{member} is not a file", fix)
                return f.read()

            return _assemble(read, archive)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive} is not a readable tar.gz archive ({e})", fix) from None


def _assemble(read: Callable[[str], bytes], where: Path) -> DataSet:
    """Build the DataSet from the six batches that ``read(member)`` returns as bytes."""
    parts = [_batch(read(m), f"{where}/{m}") for m in TRAIN_BATCHES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _batch(read(TEST_BATCH), f"{where}/{TEST_BATCH}")
    cut = len(x_train) - len(x_train) // 10
    if cut == len(x_train):
        raise DataError(f"{where} holds only {len(x_train)} training images", "use the full data")
    return DataSet(
        name="cifar10",
        train=to_split(x_train[:cut], y_train[:cut]),
        valid=to_split(x_train[cut:], y_train[cut:]),
        test=to_split(x_test, y_test),
        kind="image",
        levels=256,
        num_classes=NUM_CLASSES,
    )


def _batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] from one pickled batch."""
    batch = safe_loads(raw, source)
    fix = "use the original batches from the canonical cifar-10-python.tar.gz"
    if not isinstance(batch, dict):
        raise DataError(f"{source} holds a {type(batch).__name__}, not a batch dict", fix)
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{source} has no uint8 'data' array [N, 3072]", fix)
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{source}: 'data' has {data.shape[1]} values per row, not 3072", fix)
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        y = np.empty(0)
    if y.shape != (len(data),):
        raise DataError(f"{source}: 'labels' is not one integer per image", fix)
    bad = np.flatnonzero((y < 0) | (y >= NUM_CLASSES))
    if bad.size:
        raise DataError(f"{source}: labels outside 0..9 at rows {bad[:5].tolist()}", fix)
    return data.reshape(-1, 3, 32, 32), y
