"""Unpickle data files without letting them run code: only plain containers and numpy arrays.

CIFAR-10's python batches are (Python 2) pickles; ``pickle.load`` would execute whatever a
tampered file names. This unpickler resolves only the handful of globals a dict of numpy arrays
needs and refuses everything else.
"""

from __future__ import annotations

import codecs
import io
import pickle
import struct

import numpy as np

from vaekit.errors import DataError

try:  # numpy >= 2 moved the module; pickles written by either version name their own
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes; latin-1 only."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


_BUILTINS = {"dict": dict, "list": list, "bytes": bytes, "str": str, "int": int}
# overriding find_class skips pickle's Python 2 name mapping, so __builtin__ is listed as well
_ALLOWED = {
    **{(module, k): v for k, v in _BUILTINS.items() for module in ("builtins", "__builtin__")},
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _Refused(Exception):
    """A global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def safe_loads(raw: bytes, source: str) -> object:
    """Unpickle ``raw`` allowing only dict/list/bytes/str/int and numpy arrays; else DataError."""
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _Refused as e:
        raise DataError(
            f"{source} is a pickle that refers to {e}, which a data file has no reason to "
            "contain; vaekit refuses to load it (it could run code)",
            "use the original, unmodified file from the canonical URL",
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        struct.error,
        MemoryError,
    ) as e:
        raise DataError(
            f"{source} is not a readable pickle ({type(e).__name__}: {e})",
            "delete the file and download it again",
        ) from None
