"""Turn a data spec such as ``mnist`` or ``folder:~/faces`` into a DataSet.

Named data sets are loaders called as ``loader(data_dir=, seed=, valid_fraction=,
test_fraction=)``; prefixed specs (``npz:``, ``folder:``) are loaders called with the text after
the prefix first. ``register`` adds either kind.

``seed`` seeds only the permutation that carves splits for ``npz:`` and ``folder:`` data (keep
it fixed across runs so numbers stay comparable; do not pass the training seed). ``digits`` is
always split with seed 0; ``mnist``, ``fashion-mnist`` and ``cifar10`` use their standard
splits, and the fractions apply only where a split is carved.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaekit import registry
from vaekit.data.base import DataSet
from vaekit.data.cifar import load_cifar10
from vaekit.data.digits import load_digits_dataset
from vaekit.data.folder import load_folder
from vaekit.data.mnist import load_idx_dataset
from vaekit.data.npz import load_npz
from vaekit.data.splits import check_fractions, select_classes
from vaekit.data.table import load_table
from vaekit.errors import DataError

if TYPE_CHECKING:
    from vaekit.config import DataConfig

Loader = Callable[..., DataSet]

_BUILTIN: dict[str, Loader] = {
    "digits": lambda data_dir, seed, valid_fraction, test_fraction: load_digits_dataset(
        valid_fraction, test_fraction
    ),
    "mnist": lambda data_dir, **_: load_idx_dataset("mnist", data_dir),
    "fashion-mnist": lambda data_dir, **_: load_idx_dataset("fashion-mnist", data_dir),
    "cifar10": lambda data_dir, **_: load_cifar10(data_dir),
    "npz:": lambda path, data_dir, **kw: load_npz(path, **kw),
    "folder:": lambda path, data_dir, **kw: load_folder(path, **kw),
    "csv:": lambda path, data_dir, **kw: load_table(path, "csv", **kw),
    "parquet:": lambda path, data_dir, **kw: load_table(path, "parquet", **kw),
}
TABLE_PREFIXES = ("csv:", "parquet:")  # the sources that take data.columns


def _key(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(":") else name.replace("_", "-")


def register(name: str, loader: Loader, *, overwrite: bool = False) -> None:
    """Make ``load_dataset(name)`` call ``loader`` (a ``data`` part in ``vaekit.registry``); a name
    ending in ':' registers a prefix.

    A named loader is called as ``loader(data_dir=, seed=, valid_fraction=, test_fraction=)``,
    a prefix loader as ``loader(rest_of_spec, data_dir=, seed=, valid_fraction=,
    test_fraction=)``; both return a DataSet (whose ``schema`` says what the data is).
    """
    if not isinstance(name, str) or not _key(name).strip(":"):
        raise DataError(f"cannot register a data set under the name {name!r}", "use a short name")
    if not callable(loader):
        raise DataError(f"the loader for {name!r} is not callable", "pass a function")
    key = _key(name)
    if registry.has("data", key) and not overwrite:
        raise DataError(
            f"a data set named {key!r} is already registered",
            "pick another name, or pass overwrite=True to replace it",
        )
    registry.register("data", key, overwrite=True)(loader)


for _name, _loader in _BUILTIN.items():
    register(_name, _loader)


def _named() -> list[str]:
    return [n for n in registry.names("data") if not n.endswith(":")]


def _prefixes() -> list[str]:
    return [n for n in registry.names("data") if n.endswith(":")]


def available_datasets() -> list[str]:
    """The registered names, then the prefixed forms (``npz:PATH``, ``folder:PATH``, ...)."""
    return _named() + [f"{p}PATH" for p in _prefixes()]


def load_dataset(
    spec: str,
    data_dir: str | None = None,
    seed: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    classes: list[int] | None = None,
    exclude_classes: list[int] | None = None,
    columns: dict[str, Any] | None = None,
) -> DataSet:
    """Load the data set that ``spec`` names (see ``available_datasets()``), keeping only the labels in
    ``classes`` (all when empty) and not in ``exclude_classes`` in every split (``select_classes``);
    ``columns`` overrides a table's inferred column types (``csv:`` / ``parquet:`` only)."""
    check_fractions(valid_fraction, test_fraction)
    if columns and not (isinstance(spec, str) and spec.strip().lower().startswith(TABLE_PREFIXES)):
        raise DataError(f"data.columns describes table columns, but {spec!r} is not a table source",
                        "drop data.columns, or use csv:PATH / parquet:PATH")
    data = _load(spec, data_dir, seed, valid_fraction, test_fraction, columns)
    return select_classes(data, list(classes or []), list(exclude_classes or []))


def load_configured(cfg: DataConfig) -> DataSet:
    """The data set a run's ``data`` section describes: its source, folder, validation share and the
    classes it keeps (what training and every later look at the run's own data use)."""
    return load_dataset(cfg.name, cfg.data_dir, valid_fraction=cfg.valid_fraction, classes=cfg.classes,
                        exclude_classes=cfg.exclude_classes, columns=cfg.columns)


def _load(spec: str, data_dir: str | None, seed: int, valid_fraction: float, test_fraction: float,
          columns: dict[str, Any] | None = None) -> DataSet:
    options: dict[str, Any] = dict(
        data_dir=data_dir, seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction
    )
    if columns:
        options["columns"] = columns
    spec = spec.strip() if isinstance(spec, str) else spec
    if not isinstance(spec, str) or not spec:
        raise DataError(f"data spec {spec!r} is empty", _choices())
    for prefix in _prefixes():
        loader = registry.lookup("data", prefix)
        if spec.lower().startswith(prefix):
            rest = spec[len(prefix) :]
            if not rest:
                raise DataError(f"data spec {spec!r} has no path", f"write {prefix}PATH")
            return _checked(spec, loader(rest, **options))
    if _key(spec) in _named():
        return _checked(spec, registry.lookup("data", _key(spec))(**options))
    raise DataError(f"unknown data set {spec!r}", _suggestion(spec) + _choices())


def _checked(spec: str, result: object) -> DataSet:
    if not isinstance(result, DataSet):
        raise DataError(
            f"the loader registered for {spec!r} returned {type(result).__name__}, not a DataSet",
            "make the loader return vaekit.data.DataSet",
        )
    return result


def _suggestion(spec: str) -> str:
    close = difflib.get_close_matches(_key(spec), _named(), n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}? "
    path = Path(spec).expanduser()
    if path.is_dir():
        return f"for a folder of images write 'folder:{spec}'. "
    if path.suffix == ".npz":
        return f"for a numpy file write 'npz:{spec}'. "
    if path.name.endswith((".csv", ".csv.gz", ".tsv")):
        return f"for a table write 'csv:{spec}'. "
    if path.suffix == ".parquet":
        return f"for a table write 'parquet:{spec}'. "
    return ""


def _choices() -> str:
    return (
        f"use one of: {', '.join(_named())}; or a prefix: "
        f"{', '.join(f'{p}PATH' for p in _prefixes())}"
    )
