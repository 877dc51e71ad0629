"""The parts a model is composed of: likelihoods, priors, posteriors, flows and objectives.

A part is a class registered with ``vaekit.registry.register(kind, name)`` that declares its options
(``Config``, a dataclass subclass of ``vaekit.config.PartConfig``) and a ``build(cfg, schema, ...)``
that checks it fits the data and the other parts (ConfigError otherwise) and returns the part.
Importing this package registers the built-in ones.
"""

from vaekit.parts import likelihoods, objectives, posteriors, priors

__all__ = ["likelihoods", "objectives", "posteriors", "priors"]
