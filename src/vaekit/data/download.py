"""Download one file with a sha256 check, atomically: ``dest`` is either absent or complete.

The bytes go to a temporary file next to ``dest`` (same file system, so ``os.replace`` is
atomic), hashed while written, fsynced, and moved into place only when the hash matches.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from vaekit.errors import DownloadError

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, sha256: str) -> bool:
    """Whether the file at ``path`` can be read and has the hash ``sha256``."""
    try:
        return file_sha256(path) == sha256
    except OSError:
        return False


def _manual_fix(url: str, dest: Path, sha256: str) -> str:
    return (
        f"check your network or mirror, or download {url} yourself and place it at {dest} "
        f"(cache folder {dest.parent}); vaekit uses a file found there as it is "
        f"(expected sha256 {sha256})"
    )


def download(url: str, dest: Path, sha256: str, timeout: float = 60) -> Path:
    """Fetch ``url`` into ``dest`` unless it is there with the right sha256; return ``dest``.

    Raises DownloadError on a network failure or a wrong checksum, leaving no partial file.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if dest.is_file() and _matches(dest, expected):
        return dest
    fix = _manual_fix(url, dest, expected)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DownloadError(f"cannot write into the cache folder {dest.parent}: {e}", fix) from None
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s -> %s", url, dest)
        with os.fdopen(fd, "wb") as out:
            got, size = _stream(url, out, timeout, fix)
            out.flush()
            os.fsync(out.fileno())
        if got != expected:
            raise DownloadError(
                f"checksum mismatch for {url} ({size} bytes): expected sha256 {expected}, got {got}",
                fix,
            )
        try:
            os.replace(tmp, dest)
        except OSError as e:
            raise DownloadError(f"cannot move the download into place at {dest}: {e}", fix) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(url: str, out, timeout: float, fix: str) -> tuple[str, int]:
    """Copy the body of ``url`` into ``out``; return its sha256 and byte count."""
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as e:
        e.close()
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}", fix) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"download of {url} failed: {reason}", fix) from None
    if announced is not None and announced.isdigit() and int(announced) != size:
        raise DownloadError(f"download of {url} was cut short: got {size} of {announced} bytes", fix)
    return digest.hexdigest(), size
