"""Where training stands: the counters saved (as JSON) inside every checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Where training stands; saved inside every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed within the current epoch
    step: int = 0  # optimizer steps taken
    best_elbo: float = -math.inf
    bad_epochs: int = 0
    skipped_steps: int = 0
    rollbacks: int = 0  # times the divergence guard went back to the last checkpoint
    lr_scale: float = 1.0  # learning-rate factor applied by those rollbacks
    epoch_sums: dict[str, float] = field(default_factory=dict)  # loss and terms summed over the epoch so far
    epoch_seen: int = 0  # examples behind epoch_sums

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> TrainState:
        """The state a checkpoint holds. Checkpoints before named terms kept the epoch's sums as a list
        [loss, recon, kl]: they become the names, with the ELBO's sum -(recon + kl)."""
        saved = dict(saved)
        sums = saved.get("epoch_sums", {})
        if isinstance(sums, list):
            loss, recon, kl = sums
            saved["epoch_sums"] = {"loss": loss, "elbo": -(recon + kl), "recon": recon, "kl": kl}
        elif not isinstance(sums, dict):
            raise TypeError(f"epoch_sums must be a dict of sums by name, got {type(sums).__name__}")
        return cls(**saved)
