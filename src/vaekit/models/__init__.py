"""Model structures, each registered as a ``model`` part and built from its config and the data's
schema: ``vae`` (one latent vector) and ``hierarchical`` (top-down stochastic layers)."""

from vaekit import registry
from vaekit.config import PartConfig
from vaekit.models.hierarchical import HierarchicalVAE
from vaekit.models.vae import VAE
from vaekit.schema import DataSchema


def build_model(cfg: PartConfig, schema: DataSchema) -> VAE:
    """The model ``cfg.name`` names, assembled from its parts for data described by ``schema``."""
    return registry.lookup("model", cfg.name).build(cfg, schema)


__all__ = ["VAE", "HierarchicalVAE", "build_model"]
