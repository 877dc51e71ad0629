"""``Trainer``: build a training session from a config and run the loop over it; ``Trainer.resume``
continues a run folder from its latest checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from vaekit.config import Config
from vaekit.data import DataSet
from vaekit.errors import CheckpointError
from vaekit.paths import refuse_outside_links
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import remove_stale_temps
from vaekit.training.loop import TrainingLoop
from vaekit.training.session import build_session


class Trainer(TrainingLoop):
    """Train ``cfg`` into ``out``. Use ``Trainer.resume(out)`` to continue an interrupted run."""

    def __init__(
        self, cfg: Config, out: str | Path, data: DataSet | None = None, overwrite: bool = False,
        *, resuming: bool = False,
    ) -> None:
        """Build the session (``resuming``: ``out`` already holds this run, as ``resume`` says) and
        hand it to the loop."""
        super().__init__(build_session(cfg, out, data, overwrite, resuming))

    @classmethod
    def resume(cls, out: str | Path, data: DataSet | None = None) -> Trainer:
        """Rebuild a trainer from a run folder's config and latest checkpoint. A run killed before
        its first checkpoint (nothing trained yet) starts from the beginning (the same seed gives
        the same run); a folder that holds a trained model but no usable checkpoint is refused, so
        a resume never silently retrains over a model and its metrics."""
        cfg, _ = rd.read_config(out)
        run = Path(out)
        refuse_outside_links(run)
        ckpt = run / rd.CHECKPOINT
        if ckpt.exists() and not ckpt.is_file():
            raise CheckpointError(
                f"{ckpt} is not a regular file, so the run cannot continue from it",
                f"put the run's checkpoint file back, or start again with 'vaekit train --config "
                f"{run / rd.CONFIG} --out NEW_DIR' (the files in {run} are kept)",
            )
        trained = [name for name in (rd.MODEL, rd.METRICS) if (run / name).exists()]
        if not ckpt.exists() and trained:
            raise CheckpointError(
                f"{run} holds a trained run ({', '.join(trained)}) but no {rd.CHECKPOINT}, so it "
                "cannot continue where it stopped",
                f"restore {rd.CHECKPOINT} (e.g. from a backup), or train again with 'vaekit train "
                f"--config {run / rd.CONFIG} --out NEW_DIR' (the files in {run} are kept)",
            )
        remove_stale_temps(run)
        trainer = cls(cfg, out, data=data, resuming=True)
        if ckpt.is_file():
            trainer.load_checkpoint()
        else:
            print(f"{out} has no checkpoint yet: starting from the beginning", file=sys.stderr)
        if trainer.world.main:
            trainer.trim_metrics()
        return trainer
