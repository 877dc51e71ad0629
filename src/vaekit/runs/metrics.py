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


TRAIN_PREFIX = "train_"
NOT_TERMS = ("train_time_s",)  # train_-keys that are not the loss or an objective's term


def train_terms(records: list[dict[str, Any]]) -> list[str]:
    """The names of the loss and terms the records hold (``train_<name>`` keys), in order of first
    appearance: loss, then the objective's (e.g. elbo, recon, kl)."""
    names: dict[str, None] = {}
    for r in records:
        names |= {k[len(TRAIN_PREFIX):]: None for k in r if k.startswith(TRAIN_PREFIX) and k not in NOT_TERMS}
    return list(names)
