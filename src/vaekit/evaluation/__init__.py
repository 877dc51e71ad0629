"""Numbers a paper would report, computed over whole splits in batches."""

from vaekit.evaluation.elbo import evaluate_elbo

__all__ = ["evaluate_elbo"]
