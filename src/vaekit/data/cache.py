"""Find a data set's files in its cache folder, downloading the missing ones."""

from __future__ import annotations

import os
from pathlib import Path

from vaekit.data.download import download
from vaekit.data.sources import Source


def cache_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding data set ``name``: ``data_dir`` itself when given, else
    ``$VAEKIT_DATA_DIR/<name>``, else ``~/.cache/vaekit/<name>``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    root = os.environ.get("VAEKIT_DATA_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "vaekit") / name


def ensure_files(source: Source, folder: Path, mirror: str | None = None) -> dict[str, Path]:
    """Paths of the files of ``source`` in ``folder``; missing ones are downloaded (sha256 checked).

    A file already there is used as it is, also in its un-gzipped form (``name`` without
    ``.gz``), so files obtained from any mirror can be dropped in by hand.
    """
    paths: dict[str, Path] = {}
    for file in source.files:
        path = folder / file.name
        plain = folder / file.name.removesuffix(".gz")
        if path.is_file():
            paths[file.name] = path
        elif file.name.endswith(".gz") and plain.is_file():
            paths[file.name] = plain
        else:
            paths[file.name] = download(source.url(file, mirror), path, file.sha256)
    return paths
