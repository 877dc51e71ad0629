"""Where vaekit writes: only inside the run folder a user chose (under fixed file names) and to
the one file a user names with ``-o``; downloads go under ``data.data_dir``. No file name is made
from a config value. A run folder that came from someone else may hold symbolic links pointing
elsewhere, and a write that followed one would land outside the folder, so such folders are
refused before anything is written into them."""

from __future__ import annotations

from pathlib import Path

from vaekit.errors import CheckpointError


def refuse_outside_links(folder: Path) -> None:
    """Raise CheckpointError if an entry of ``folder`` is a symbolic link leading out of it."""
    root = Path(folder).resolve()
    for p in sorted(Path(folder).iterdir()):
        if p.is_symlink() and not p.resolve().is_relative_to(root):
            raise CheckpointError(
                f"{p} is a symbolic link to {p.resolve()}, outside the run folder; vaekit writes its "
                "files only inside the run folder and will not follow it",
                f"remove the link ('rm {p}') or copy the run to a new folder",
            )
