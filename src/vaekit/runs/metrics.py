"""metrics.jsonl: one JSON record per epoch, appended as training goes and read back by the report,
the explorer and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaekit.runs.checkpoint import disk_full_as_error


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with disk_full_as_error(path), open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Metric records; a torn last line (crash mid-write) is ignored."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
