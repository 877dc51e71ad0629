"""Atomic, pickle-free persistence: safetensors for tensors, JSON (in the safetensors header or a
side file) for everything else.

A write goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed over
the target: it either lands whole or leaves the previous file in place. Every tensor file carries a
SHA-256 checksum of its tensors and metadata, so a damaged file is refused instead of loaded.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaekit.errors import CheckpointError, DiskFullError

FORMAT_VERSION = 2  # 2: every linear weight [out, in] as nn.Linear; 1 kept the MLP nets' [in, out]
READABLE_VERSIONS = ("1", "2")
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what mkstemp(prefix=".NAME.", suffix=".tmp") makes
_NOT_VAEKIT = "vaekit reads only the model.safetensors / checkpoint.safetensors files it wrote itself"


@functools.cache
def _file_mode() -> int:
    """0o666 minus the umask: what open() would give a new file (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def as_disk_full(e: OSError, path: str | Path) -> DiskFullError | None:
    """The DiskFullError for an OSError that means 'no space left' (ENOSPC, EDQUOT), else None."""
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    name = Path(path).name
    # writes go to a temporary file renamed over the target, so a file there now is the old one
    kept = (f"the previous version of {name} is intact" if Path(path).is_file()
            else f"there was no earlier {name}, so nothing was lost")
    return DiskFullError(
        f"the disk is full: writing {path} failed ({e.strerror}); {kept}",
        "free some disk space (or use a folder on another disk) and run the command again; "
        "an interrupted training run continues with 'vaekit resume RUN_DIR'",
    )


@contextlib.contextmanager
def disk_full_as_error(path: Path) -> Iterator[None]:
    """Turn 'no space left' while writing ``path`` into a DiskFullError."""
    try:
        yield
    except OSError as e:
        full = as_disk_full(e, path)
        if full is None:
            raise
        raise full from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename over ``path``."""
    path = Path(path)
    with disk_full_as_error(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), _file_mode())
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def is_stale_temp(path: Path) -> bool:
    """A temporary file that an atomic write of a killed process left behind."""
    return bool(_TEMP.match(path.name)) and path.is_file()


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files that a killed process left behind in ``folder``; return them."""
    stale = [p for p in Path(folder).iterdir() if is_stale_temp(p)]
    for p in stale:
        p.unlink()
    return stale


def _digest(tensors: dict[str, torch.Tensor], fields: dict[str, str]) -> str:
    """SHA-256 over the header fields and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for k in sorted(fields):
        h.update(f"{k}={fields[k]}\0".encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    """Save tensors (contiguous CPU copies) with JSON-able metadata and a checksum in the header.

    Refuses (CheckpointError, nothing written) when a floating tensor holds NaN or inf, so a
    diverged model never replaces a good file.
    """
    path = Path(path)
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    for name, t in flat.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"refusing to write {path}: {name} holds NaN or infinite values; the previous "
                f"{path.name} is kept",
                "training diverged: lower train.lr, set train.grad_clip, or check the data",
            )
    fields = {"format_version": str(FORMAT_VERSION), "meta": json.dumps(meta or {}, sort_keys=True)}
    header = {**fields, "sha256": _digest(flat, fields)}
    atomic_write_bytes(path, _with_sorted_metadata(st_save(flat), header))


def _with_sorted_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    """A safetensors file with ``metadata`` added under sorted keys. safetensors writes its metadata
    from a hash map, whose order changes from one process to the next; this makes the same tensors
    and metadata always the same bytes. The tensor offsets count from the end of the header, so
    only the header changes."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    text = json.dumps({"__metadata__": dict(sorted(metadata.items())), **header}, separators=(",", ":"))
    text += " " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    raw = text.encode()
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


def _corrupt(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is {what}",
        "the file is damaged or not from vaekit: use an intact copy (e.g. from a backup) or retrain",
    )


def _data_size(header: object) -> int:
    """Bytes of tensor data a safetensors header promises (0 when it cannot say)."""
    try:
        return max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, TypeError, IndexError):
        return 0


def _header_fields(path: Path, data: bytes) -> dict[str, str]:
    """The vaekit fields of a safetensors header, checked before any tensor is parsed."""
    if len(data) < 8:
        raise _corrupt(path, f"truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if not 2 <= n <= len(data) - 8:
        raise _corrupt(path, "truncated or not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, UnicodeDecodeError):
        raise _corrupt(path, "not a safetensors file (its header is not JSON)") from None
    size = 8 + n + _data_size(header)
    if len(data) < size:
        raise _corrupt(path, f"truncated ({len(data)} of {size} bytes)")
    fields = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(fields, dict) or "format_version" not in fields:
        raise CheckpointError(
            f"{path} was not written by vaekit (its header has no vaekit fields)", _NOT_VAEKIT
        )
    if fields["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} was written by an incompatible vaekit (file format {fields['format_version']!r}; "
            f"this vaekit reads formats {', '.join(READABLE_VERSIONS)})",
            "load it with the vaekit version that wrote it, or retrain",
        )
    if not isinstance(fields.get("sha256"), str) or not isinstance(fields.get("meta"), str):
        raise _corrupt(path, "missing its checksum or metadata")
    return fields


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a file written by ``save_tensors``: its tensors and metadata, as stored."""
    tensors, meta, _ = load_versioned(path)
    return tensors, meta


def load_versioned(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], int]:
    """``load_tensors`` plus the file's format version (``runs.folder.upgrade_layout`` turns an older
    layout into today's); a missing, damaged or foreign file becomes a CheckpointError (nothing is
    ever unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist", "check the run folder, or train first")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror})", "check its permissions") from None
    fields = _header_fields(path, data)
    try:
        tensors = st_load(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 - the Rust parser's PanicException derives from BaseException
        raise _corrupt(path, f"corrupt ({type(e).__name__}: {e})") from None
    stored = fields.pop("sha256")
    if _digest(tensors, fields) != stored:
        raise _corrupt(path, "corrupt: its checksum does not match its contents")
    try:
        meta = json.loads(fields["meta"])
    except ValueError:
        raise _corrupt(path, "corrupt (its metadata is not JSON)") from None
    if not isinstance(meta, dict):
        raise _corrupt(path, "corrupt (its metadata is not a JSON object)")
    return tensors, meta, int(fields["format_version"])


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer state dict into named tensors + JSON (no pickle)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
