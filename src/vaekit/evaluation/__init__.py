"""Numbers a paper would report, computed over whole splits in batches."""

from vaekit.evaluation.diagnostics import active_units, dimension_activity, posterior_means
from vaekit.evaluation.elbo import evaluate_elbo
from vaekit.evaluation.likelihood import importance_sample, iwae_ks
from vaekit.evaluation.metrics import bits_per_dim, evaluate_model
from vaekit.evaluation.plots import save_evaluation_plots

__all__ = [
    "active_units",
    "bits_per_dim",
    "dimension_activity",
    "evaluate_elbo",
    "evaluate_model",
    "importance_sample",
    "iwae_ks",
    "posterior_means",
    "save_evaluation_plots",
]
