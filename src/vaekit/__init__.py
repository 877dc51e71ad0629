"""vaekit: variational autoencoders as composable parts (encoder, posterior, prior, decoder
likelihood, objective), with training, evaluation and exploration tools."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": "vaekit.api",
    "load": "vaekit.api",
    "evaluate": "vaekit.api",
    "encode": "vaekit.api",
    "load_split": "vaekit.api",
    "VAE": "vaekit.estimator",
    "Config": "vaekit.config",
    "DataSet": "vaekit.data",
    "VaekitError": "vaekit.errors",
}


def __getattr__(name: str) -> Any:
    """Import the public API on first use, so ``import vaekit.parts.distributions`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (``dir(vaekit)``), including the lazily imported ones."""
    return sorted(__all__)


__all__ = ["Config", "DataSet", "VAE", "VaekitError", "encode", "evaluate", "load", "load_split", "train",
           "__version__"]
