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
    "Config": "vaekit.config",
    "VaekitError": "vaekit.errors",
}


def __getattr__(name: str) -> Any:
    """Import the public API on first use, so ``import vaekit.distributions`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


__all__ = ["Config", "VaekitError", "encode", "evaluate", "load", "train", "__version__"]
