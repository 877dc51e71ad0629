"""The Python surface: train a run, load it back, evaluate and encode in a few calls.

    import vaekit
    model = vaekit.train("runs/digits", preset="digits-mlp", **{"train.epochs": 5})
    model = vaekit.load("runs/digits")
    z = model.encode(x).mean
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.config import DEFAULT_PRESET, Config, make_config, set_dotted
from vaekit.data import DataSet, load_configured, load_dataset
from vaekit.data.transforms import eval_view
from vaekit.evaluation import evaluate_model, save_evaluation_plots
from vaekit.models import VAE
from vaekit.runs import folder as rd
from vaekit.runs.report import record_evaluation, render_report
from vaekit.training.session import pick_device
from vaekit.training.trainer import Trainer

load = rd.load


def train(
    out: str | Path,
    config: Config | str | Path | None = None,
    preset: str | None = None,
    data: DataSet | str | np.ndarray | torch.Tensor | tuple | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> VAE:
    """Train a VAE into run folder ``out`` and return it (eval mode).

    ``config`` is a Config or a YAML/JSON file, ``preset`` a name from ``configs/`` (with neither,
    the default preset ``digits-mlp``); ``overrides`` are dotted keys (``**{"model.latent_dim": 8}``);
    ``data`` a spec string, a ready DataSet, a pandas DataFrame (a table: column types inferred,
    ``data.columns`` overrides), or examples as a numpy array / tensor (or ``(x, y)`` with labels):
    those are checked like an .npz file's ``x_train``; arrays and frames are split seeded
    (``train.seed``) into validation (``data.valid_fraction``) and test (10 %) rows.
    """
    if isinstance(config, Config):
        d = config.to_dict()
        for k, v in overrides.items():
            set_dotted(d, k, v)
        cfg = Config.from_dict(d)
    else:
        cfg = make_config(config, preset or (None if config else DEFAULT_PRESET), overrides)
    if isinstance(data, str):
        cfg.data.name = data
        data = None
    elif _is_frame(data):
        from vaekit.data.table import from_frame

        data = from_frame(data, "table", cfg.train.seed, cfg.data.valid_fraction, columns=cfg.data.columns)
    elif data is not None and not isinstance(data, DataSet):
        data = array_dataset(data, cfg.train.seed, cfg.data.valid_fraction)
    trainer = Trainer(cfg, out, data=data, overwrite=overwrite)
    trainer.fit()
    return trainer.model.eval()


def _is_frame(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pandas")


def array_dataset(data: Any, seed: int = 0, valid_fraction: float = 0.1) -> DataSet:
    """A DataSet from examples (numpy array, tensor or list) or ``(examples, labels)``."""
    from vaekit.data.npz import from_arrays
    from vaekit.errors import DataError

    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    arrays = {}
    for key, value in (("x_train", x), ("y_train", y)):
        if value is None:
            continue
        try:
            arrays[key] = value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        except (TypeError, ValueError) as e:
            raise DataError(f"data cannot be read as an array ({e})",
                            "pass a numpy array or tensor of examples, or a DataSet") from None
    return from_arrays(Path("data"), arrays, seed, valid_fraction)


def _run_data(run_dir: str | Path, spec: str | None = None) -> tuple[Config, DataSet]:
    cfg, _ = rd.read_config(run_dir)
    if spec is not None:  # new data to look at: every class, whatever the run was trained on
        return cfg, load_dataset(spec, cfg.data.data_dir, valid_fraction=cfg.data.valid_fraction)
    return cfg, load_configured(cfg.data)


def load_split(
    run_dir: str | Path, split: str = "test", spec: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A split of the run's data (or of ``spec``) as the model sees it at evaluation time."""
    cfg, data = _run_data(run_dir, spec)
    s = data.split(split)
    return eval_view(s.x, cfg.data.binarize, cfg.data.binarize_seed), s.y


def evaluate(
    run_dir: str | Path,
    split: str = "test",
    batch_size: int | None = None,
    seed: int = 0,
    nll_samples: int = 1000,
    sample_chunk: int | None = None,
    device: str = "auto",
    progress: bool = False,
    examples: int | None = None,
) -> dict[str, Any]:
    """ELBO, recon, KL, importance-sampled NLL (``nll_samples`` = K), bits/dim, IWAE bounds, active units
    and KL per dimension on a split, in nats per example (``vaekit.evaluation.evaluate_model``).

    Recorded into the run's evaluation.json and report with two figures (evaluation-iwae.png,
    evaluation-kl.png). ``batch_size`` examples x ``sample_chunk`` samples go through one forward call
    (by default about 1024 rows on a CPU); the same seed gives the same numbers for any chunk sizes.
    ``examples``: evaluate only the first N examples of the split (recorded as ``n``).
    """
    if examples is not None and examples < 1:
        from vaekit.errors import ConfigError

        raise ConfigError(f"--examples must be at least 1, got {examples}",
                          "give a positive number of examples")
    cfg, info = rd.read_config(run_dir)
    model = load(run_dir, pick_device(device))
    x, y = load_split(run_dir, split)
    if examples is not None:
        x, y = x[:examples], None if y is None else y[:examples]
    levels = 2 if cfg.data.binarize != "none" else info.schema.levels
    res = {"split": split, **evaluate_model(
        model, x, y, nll_samples, batch_size, sample_chunk, seed, levels, progress
    )}
    record_evaluation(Path(run_dir), split, res)
    save_evaluation_plots(run_dir, res)
    render_report(Path(run_dir))
    return res


def load_split_for(
    model: torch.nn.Module, run_dir: str | Path, split: str = "test", spec: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``load_split``, refused with a DataError when the examples (of other data, ``spec``) are not
    shaped like the ones ``model`` was trained on."""
    x, y = load_split(run_dir, split, spec)
    if tuple(x.shape[1:]) != tuple(model.event_shape):
        from vaekit.errors import DataError

        raise DataError(
            f"the data has examples of shape {tuple(x.shape[1:])}, the model expects "
            f"{tuple(model.event_shape)}",
            "use data shaped like the data the run was trained on",
        )
    return x, y


@torch.no_grad()
def encode(
    run_dir: str | Path, data: str | None = None, split: str = "test", batch_size: int = 1000,
    progress: bool = False,
) -> torch.Tensor:
    """Posterior means E_q[z|x], one row per example of the split (``progress``: lines or a bar on
    stderr, see :mod:`vaekit.progress`)."""
    from vaekit.progress import reporter

    model = load(run_dir)
    x, y = load_split_for(model, run_dir, split, data)
    rows = []
    bar = reporter(x.shape[0], f"encode {split}", unit="example", enabled=progress)
    for i in range(0, x.shape[0], batch_size):
        yb = None if y is None else y[i : i + batch_size]
        rows.append(model.encode(x[i : i + batch_size], yb).mean)
        bar.update(rows[-1].shape[0])
    bar.close()
    return torch.cat(rows)


@torch.no_grad()
def sample_rows(
    run_dir: str | Path, n: int, seed: int = 0, y: int | None = None, encoded: bool = False,
    where: str | dict[str, str] | None = None,
) -> Any:
    """``n`` synthetic rows of a table run as a pandas DataFrame with the training table's column names,
    dtypes, labels and ranges: z ~ p(z), then each column drawn from p(x|z) and decoded (``encoded``:
    the drawn rows as the model sees them, a tensor). ``where`` (``"cut=Ideal,color=E"`` or a dict)
    fixes columns and draws the others from p(x_mis | x_obs) (``vaekit.applications.tables``). The same
    seed gives the same table (byte for byte on a CPU)."""
    from vaekit.applications.tables import parse_where, sample_where
    from vaekit.data.table_codec import decode

    columns = _table_columns(run_dir)
    if where is not None:
        where = parse_where(where, columns) if isinstance(where, str) else parse_where(
            ",".join(f"{k}={v}" for k, v in where.items()), columns)
    model = load(run_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if where is not None:
            parts = [sample_where(model, columns, min(10_000, n - i), where) for i in range(0, n, 10_000)]
            return _concat(parts)
        rows = torch.cat([model.sample(min(10_000, n - i), y=y, mean=False) for i in range(0, n, 10_000)])
    return rows if encoded else decode(rows.numpy(), columns)


def _concat(frames: list[Any]) -> Any:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _table_columns(run_dir: str | Path) -> tuple:
    """The fitted columns of a table run; a ConfigError for a run of other data."""
    from vaekit.errors import ConfigError

    _, info = rd.read_config(run_dir)
    if info.schema.kind != "table" or not info.schema.columns:
        raise ConfigError(f"{run_dir} was not trained on a table, so it has no rows",
                          "use a run trained with --preset table on csv:PATH / parquet:PATH / a DataFrame")
    return info.schema.columns


@torch.no_grad()
def impute(run_dir: str | Path, data: Any, method: str = "importance", seed: int = 0) -> Any:
    """The table ``data`` (a DataFrame, or ``csv:PATH`` / ``parquet:PATH``) with its empty cells filled
    in from p(x_mis | x_obs) given each row's other cells; every given cell is kept as given."""
    from vaekit.applications.tables import impute as impute_rows
    from vaekit.data.table import FORMATS, read_table

    columns = _table_columns(run_dir)
    if isinstance(data, str):
        fmt, _, path = data.partition(":")
        if fmt not in FORMATS or not path:
            from vaekit.errors import DataError

            raise DataError(f"cannot read a table from {data!r}", "give csv:PATH or parquet:PATH")
        data = read_table(path, fmt)
    model = load(run_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return impute_rows(model, columns, data, method)
