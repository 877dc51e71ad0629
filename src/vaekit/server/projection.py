"""2-D views of the latent space for the map, each with a way back from a map point to a latent z.

Identity when d = 2; PCA by default: p = (z - m) V^T with V the top two right singular vectors of the
centred means, and back z = m + p V (the point in the plane of the first two components); UMAP when
the ``umap`` package is installed and asked for (its ``inverse_transform`` goes back).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from vaekit.errors import ConfigError

PROJECTIONS = ("auto", "pca", "umap")


class Projection:
    """Interface: ``transform`` latents [N, d] -> map points [N, 2]; ``inverse`` map points -> latents."""

    method: str
    axes: tuple[str, str]
    linear: bool = True  # cheap enough to place every decoded z on the map

    def transform(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, p: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class Identity(Projection):
    """The two latent dimensions themselves."""

    method = "latent"
    axes = ("z0", "z1")

    def transform(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64)

    def inverse(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.float64)


class PCA(Projection):
    """Principal components by SVD of the centred latents."""

    method = "pca"

    def __init__(self, z: np.ndarray) -> None:
        z = np.asarray(z, dtype=np.float64)
        self.mean = z.mean(0)
        _, s, vt = np.linalg.svd(z - self.mean, full_matrices=False)
        k = min(2, vt.shape[0])  # a 1-D latent gets a flat second axis
        self.basis = np.zeros((2, z.shape[1]))
        self.basis[:k] = vt[:k]
        var = np.zeros(2)
        var[:k] = s[:k] ** 2
        ratio = var / (s**2).sum() if s.sum() > 0 else np.zeros(2)
        self.explained = [float(r) for r in ratio]
        self.axes = tuple(f"PC{i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(self.explained))

    def transform(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, dtype=np.float64) - self.mean) @ self.basis.T

    def inverse(self, p: np.ndarray) -> np.ndarray:
        return self.mean + np.asarray(p, dtype=np.float64) @ self.basis


class UMAP(Projection):
    """UMAP (McInnes et al. 2018) fitted on the map's latents; seeded."""

    method = "umap"
    axes = ("UMAP 1", "UMAP 2")
    linear = False

    def __init__(self, z: np.ndarray, seed: int = 0) -> None:
        import umap

        self.reducer = umap.UMAP(n_components=2, random_state=seed)
        self.reducer.fit(np.asarray(z, dtype=np.float32))

    def transform(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.reducer.transform(np.asarray(z, dtype=np.float32)), dtype=np.float64)

    def inverse(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(self.reducer.inverse_transform(np.asarray(p, dtype=np.float32)), dtype=np.float64)


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def fit_projection(z: np.ndarray, method: str = "auto", seed: int = 0) -> Projection:
    """The map's projection of latents z [N, d]: identity for d = 2, else UMAP (``auto`` with umap
    installed, or ``umap``) or PCA."""
    if method not in PROJECTIONS:
        raise ConfigError(f"unknown projection {method!r}", f"use one of: {', '.join(PROJECTIONS)}")
    if method == "umap" and not umap_available():
        raise ConfigError("the umap projection needs the 'umap-learn' package", "pip install umap-learn")
    if z.shape[1] == 2:
        return Identity()
    if method == "umap" or (method == "auto" and umap_available()):
        return UMAP(z, seed)
    return PCA(z)
