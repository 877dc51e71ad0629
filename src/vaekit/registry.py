"""Find parts by name: ``register(kind, name)`` adds a part, ``lookup(kind, name)`` finds it.

Every likelihood, prior, posterior, net, model, objective and data source looks itself up here, so
a new part is one file plus a ``@register(...)`` line, inside the package or in a plugin module
outside it. Plugins are imported by module name (``plugins:`` in a config, ``--plugins`` on the
command line, saved with the run so ``vaekit load`` finds them again) or through the
``vaekit.plugins`` entry-point group of an installed package.

The built-in parts register when their packages are imported; ``lookup`` and ``names`` import
them first (by name, at run time), so this module sits below every part it finds.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from vaekit.errors import ConfigError

KINDS = ("likelihood", "prior", "posterior", "flow", "net", "model", "objective", "data")
# packages whose import registers the built-in parts
BUILTIN_PACKAGES = ("vaekit.parts", "vaekit.nets", "vaekit.models", "vaekit.data")
ENTRY_POINT_GROUP = "vaekit.plugins"

T = TypeVar("T")
_TABLE: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_loaded: set[str] = set()


def _check_kind(kind: str) -> None:
    if kind not in _TABLE:
        raise ConfigError(f"unknown part kind {kind!r}", "use one of: " + ", ".join(KINDS))


def register(kind: str, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
    """Decorator: make ``lookup(kind, name)`` return the decorated class or function."""
    _check_kind(kind)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"cannot register a {kind} under the name {name!r}", "use a short, non-empty name")

    def add(obj: T) -> T:
        table = _TABLE[kind]
        if name in table and table[name] is not obj and not overwrite:
            raise ConfigError(
                f"a {kind} named {name!r} is already registered ({_where(table[name])})",
                "pick another name, or pass overwrite=True to replace it",
            )
        table[name] = obj
        return obj

    return add


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def load_builtins() -> None:
    """Import the packages that register vaekit's own parts, and the installed plugins, once."""
    for package in BUILTIN_PACKAGES:
        if package not in _loaded:
            _loaded.add(package)
            importlib.import_module(package)
    if ENTRY_POINT_GROUP not in _loaded:
        _loaded.add(ENTRY_POINT_GROUP)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()


def load_plugins(modules: Iterable[str]) -> None:
    """Import plugin modules by name; their ``@register`` lines add their parts."""
    for module in modules:
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(
                f"cannot import the plugin module {module!r} ({e})",
                "put the module on PYTHONPATH (or install its package), or remove it from 'plugins'",
            ) from None
        _loaded.add(module)


def has(kind: str, name: str) -> bool:
    """Whether ``name`` is registered already (without importing the built-in packages first: for
    a package registering its own parts while it is imported)."""
    _check_kind(kind)
    return name in _TABLE[kind]


def names(kind: str) -> list[str]:
    """The registered names of one kind, sorted."""
    _check_kind(kind)
    load_builtins()
    return sorted(_TABLE[kind])


def lookup(kind: str, name: str) -> Any:
    """The part registered as ``name``; a ConfigError naming the closest names otherwise."""
    _check_kind(kind)
    load_builtins()
    table = _TABLE[kind]
    if name in table:
        return table[name]
    close = difflib.get_close_matches(str(name), list(table), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"unknown {kind} {name!r}",
        hint + "choose one of: " + ", ".join(sorted(table))
        + " (a plugin's parts appear once its module is listed under 'plugins')",
    )


__all__ = [
    "ENTRY_POINT_GROUP", "KINDS", "has", "load_builtins", "load_plugins", "lookup", "names", "register",
]
