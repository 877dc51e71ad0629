"""``vaekit.VAE``: a scikit-learn estimator around a vaekit run (fit, transform, score, outliers).

    from vaekit import VAE
    vae = VAE(latent_dim=8, epochs=20).fit(X)      # X: [n, features] (or images) in [0, 1]
    z = vae.transform(X)                           # posterior means E_q[z|x]
    ll = vae.score_samples(X)                      # importance-sampled log p(x), nats per example

The top-level name ``vaekit.VAE`` is this estimator; the torch module it wraps is
``vaekit.models.VAE`` (the fitted one is ``model_``). The estimator sees X as vaekit's evaluation sees
a split (``vaekit.data.transforms.eval_view``): 8-bit values are divided by 255, and with a binarizing
preset (the default ``digits-mlp`` binarizes) X is binarized once with ``data.binarize_seed``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from vaekit import api
from vaekit.applications import anomaly
from vaekit.config import Config, make_config
from vaekit.data.arrays import as_examples, as_values
from vaekit.data.npz import from_arrays
from vaekit.data.transforms import eval_view
from vaekit.errors import CheckpointError, ConfigError, DataError
from vaekit.evaluation import importance_sample
from vaekit.models.inputs import as_tensor
from vaekit.runs.folder import read_config

ESTIMATOR_FILE = "estimator.json"  # the estimator's parameters and threshold, beside the run's files
DENSITY_FILE = "latent-density.safetensors"  # the latent-density mixture of the outlier score
FORMAT = 1
# the named hyper-parameters and the config keys they set
NAMED_KEYS = {"latent_dim": "model.latent_dim", "epochs": "train.epochs", "batch_size": "train.batch_size",
              "lr": "train.lr"}


class FeatureCountError(DataError, ValueError):
    """Examples with another number of values than the fitted ones (a ValueError, as in scikit-learn)."""


class _TemporaryRun:
    """A temporary run folder, removed when this object is garbage collected."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="vaekit-estimator-"))
        self._remove = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)

    def __deepcopy__(self, memo: dict) -> _TemporaryRun:
        """Copies of an estimator share its folder, which lives as long as one of them does."""
        return self


class VAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, OutlierMixin, BaseEstimator):
    """A variational autoencoder as a scikit-learn estimator: transformer, density model and outlier
    detector (``vaekit.VAE``; the torch module is ``vaekit.models.VAE``, fitted as ``model_``).

    Parameters: ``preset`` (``vaekit presets``; None: the config defaults only), ``latent_dim``,
    ``epochs``, ``batch_size``, ``lr`` (None: the preset's), ``seed`` (training, data split,
    importance sampling), ``config`` (any other config keys, dotted: ``{"model.likelihood": "gaussian"}``;
    the named parameters win over it), ``importance_samples`` (K of ``score_samples``), ``contamination``
    (the share of the training data ``predict`` flags), ``run_dir`` (None: a temporary folder, removed
    when the estimator is garbage collected; a folder: the run is trained there, replacing a run there),
    ``verbose`` (print the training progress on stderr).

    Fitted: ``model_`` (eval mode), ``config_``, ``run_dir_``, ``n_features_in_`` (values per example),
    ``example_shape_`` (one example's shape as given), ``latent_density_`` and ``offset_`` (the
    outlier threshold). ``fit`` holds out ``data.valid_fraction`` of X (seeded) for validation.
    """

    def __init__(
        self,
        preset: str | None = "digits-mlp",
        latent_dim: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        config: dict[str, Any] | None = None,
        importance_samples: int = 100,
        contamination: float = 0.01,
        run_dir: str | os.PathLike | None = None,
        verbose: bool = False,
    ) -> None:
        self.preset = preset
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.config = config
        self.importance_samples = importance_samples
        self.contamination = contamination
        self.run_dir = run_dir
        self.verbose = verbose

    # -- fitting ------------------------------------------------------------------------------------

    def _make_config(self) -> Config:
        """The run's config: the preset, then ``config``'s keys, then the named parameters."""
        if self.config is not None and not isinstance(self.config, dict):
            raise ConfigError(
                f"config must be a dict of dotted config keys, got {type(self.config).__name__}",
                'pass e.g. config={"model.likelihood": "gaussian"}')
        overrides = dict(self.config or {})
        for name, key in NAMED_KEYS.items():
            if getattr(self, name) is not None:
                overrides[key] = getattr(self, name)
        overrides["train.seed"] = self.seed
        if not self.verbose:
            overrides["train.progress"] = False
        cfg = make_config(None, self.preset, overrides)
        if cfg.model.conditional:
            raise ConfigError("the estimator models p(x) without labels, but model.conditional is set",
                              "train a conditional VAE with vaekit.train(..., data=(x, y))")
        return cfg

    def _check_params(self) -> None:
        k = self.importance_samples
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"importance_samples must be a positive integer, got {k!r}",
                              "pass e.g. importance_samples=100")
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 < c <= 0.5:
            raise ConfigError(f"contamination must be in (0, 0.5], got {c!r}",
                              "pass the share of outliers expected in the training data, e.g. 0.01")

    def fit(self, X: Any, y: Any = None) -> VAE:
        """Train a run on X (``y`` is ignored: it is there for pipelines) and calibrate ``offset_`` so
        that ``predict`` flags a share ``contamination`` of X."""
        self._check_params()
        cfg = self._make_config()
        x = _checked(X, "X")
        data = from_arrays(Path("X"), {"x_train": x}, cfg.train.seed, cfg.data.valid_fraction, 0.0)
        if self.run_dir is None:
            if getattr(self, "_temporary", None) is None:
                self._temporary = _TemporaryRun()
            out = self._temporary.path
        else:
            out = Path(self.run_dir)
            for name in (ESTIMATOR_FILE, DENSITY_FILE):  # a save there describes the run being replaced
                (out / name).unlink(missing_ok=True)
        with _quiet(not self.verbose):
            model = api.train(out, cfg, data=data, overwrite=True)
        self.model_, self.config_, self.run_dir_ = model, cfg, out
        self.example_shape_ = tuple(np.shape(X)[1:])
        self.n_features_in_ = math.prod(self.example_shape_)
        view = self._view(x)
        ref = anomaly.reference_subsample(view, seed=self.seed)
        self.latent_density_ = anomaly.LatentDensity(anomaly.posterior_means(model, *ref), seed=self.seed)
        self.offset_ = -anomaly.calibrate(self._anomaly(view), self.contamination)
        return self

    # -- the data boundary --------------------------------------------------------------------------

    def _view(self, x: np.ndarray) -> torch.Tensor:
        """Checked examples (``_checked``) as the model sees them at evaluation time."""
        return eval_view(torch.from_numpy(x), self.config_.data.binarize, self.config_.data.binarize_seed)

    def _input(self, X: Any, name: str = "X") -> torch.Tensor:
        """New examples, checked against the fitted ones, as the model sees them."""
        check_is_fitted(self, "model_")
        x = _checked(X, name)
        count = math.prod(x.shape[1:])
        if count != self.n_features_in_:
            raise FeatureCountError(
                f"{name} has {count} features per example, but this VAE was fitted on {self.n_features_in_} "
                f"(examples of shape {self.example_shape_})",
                f"pass {name} shaped like the data the estimator was fitted on",
            )
        if tuple(x.shape[1:]) != self.model_.event_shape:
            raise DataError(f"{name} has examples of shape {tuple(x.shape[1:])}; the model takes "
                            f"{self.model_.event_shape}", f"reshape {name} to {self.example_shape_}")
        return self._view(x)

    def _as_given(self, x: torch.Tensor) -> np.ndarray:
        """Model-layout examples [n, *event_shape] in the layout of the fitted X ([n, H, W] or
        channels-last images back from [n, C, H, W])."""
        a = x.detach().cpu().numpy()
        if len(self.example_shape_) == 2:
            return a[:, 0]
        if len(self.example_shape_) == 3 and self.example_shape_ != self.model_.event_shape:
            return a.transpose(0, 2, 3, 1)
        return a

    # -- transformer --------------------------------------------------------------------------------

    def transform(self, X: Any) -> np.ndarray:
        """Posterior means E_q[z|x], [n, latent_dim]."""
        x = self._input(X)
        return anomaly.posterior_means(self.model_, x)

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """The likelihood means E[x|z] of latents Z [n, latent_dim], shaped like the fitted X."""
        check_is_fitted(self, "model_")
        return self._as_given(self.model_.decode(Z).mean)

    @property
    def _n_features_out(self) -> int:
        """Columns of ``transform`` (for ``get_feature_names_out``: vae0, vae1, ...)."""
        return self.model_.latent_dim

    @torch.no_grad()
    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """``n_samples`` draws z ~ p(z) decoded to likelihood means, shaped like the fitted X
        (``random_state``: a seed for the draws; None: torch's global generator)."""
        check_is_fitted(self, "model_")
        device = next(self.model_.parameters()).device
        g = None if random_state is None else torch.Generator(device).manual_seed(int(random_state))
        return self._as_given(self.model_.sample(int(n_samples), generator=g))

    # -- density ------------------------------------------------------------------------------------

    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) per example in nats, importance-sampled with K = ``importance_samples`` posterior
        samples (``vaekit.evaluation.importance_sample``, seeded by ``seed`` and the row index)."""
        x = self._input(X)
        return importance_sample(self.model_, x, k=self.importance_samples, seed=self.seed).log_px.numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """The mean log-likelihood of X in nats (what GridSearchCV maximizes by default)."""
        return float(np.mean(self.score_samples(X)))

    # -- outliers -----------------------------------------------------------------------------------

    def _anomaly(self, x: torch.Tensor) -> np.ndarray:
        """The project's default anomaly score (``anomaly.DEFAULT_SCORE``) of model-view examples."""
        return anomaly.anomaly_score(anomaly.DEFAULT_SCORE, self.model_, x, k=self.importance_samples,
                                     seed=self.seed, density=self.latent_density_)

    def decision_function(self, X: Any) -> np.ndarray:
        """Normality minus ``offset_``: -(anomaly score) - ``offset_``, negative for outliers (as in
        scikit-learn's outlier detectors)."""
        return -self._anomaly(self._input(X)) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers (``decision_function`` below 0)."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def predict_outlier(self, X: Any) -> np.ndarray:
        """True where ``predict`` says -1 (an outlier)."""
        return self.predict(X) == -1

    # -- files --------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the run folder (config.json, model.safetensors, ...) to ``path`` with the estimator's
        parameters and threshold (``estimator.json``) and latent density (safetensors); no pickle.
        An estimator saved there before is replaced; a folder holding other files is refused."""
        from safetensors.numpy import save_file

        check_is_fitted(self, "model_")
        path = Path(path)
        if not (path.exists() and path.resolve() == Path(self.run_dir_).resolve()):
            if path.is_dir() and any(path.iterdir()):
                if not (path / ESTIMATOR_FILE).is_file():
                    raise ConfigError(f"{str(path)!r} already holds files that are not a saved estimator",
                                      "save to a new or empty folder")
                shutil.rmtree(path)
            shutil.copytree(self.run_dir_, path)
        params = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in self.get_params().items()}
        doc = {"format": FORMAT, "params": params, "offset": self.offset_, "score": anomaly.DEFAULT_SCORE,
               "example_shape": list(self.example_shape_)}
        (path / ESTIMATOR_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        save_file(self.latent_density_.arrays(), str(path / DENSITY_FILE))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> VAE:
        """The estimator ``save`` wrote to ``path`` (its model on the CPU; ``run_dir_`` is ``path``)."""
        from safetensors.numpy import load_file

        path = Path(path)
        if not (path / ESTIMATOR_FILE).is_file():
            raise CheckpointError(f"{str(path)!r} holds no saved estimator ({ESTIMATOR_FILE} is missing)",
                                  "give the folder that VAE.save wrote")
        try:
            doc = json.loads((path / ESTIMATOR_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path / ESTIMATOR_FILE} is not readable JSON ({e})",
                                  "save the estimator again with VAE.save") from None
        written = (doc.get("format"), doc.get("score")) if isinstance(doc, dict) else None
        if written != (FORMAT, anomaly.DEFAULT_SCORE):
            raise CheckpointError(f"{path / ESTIMATOR_FILE} was written by another vaekit version, or is "
                                  "damaged", "fit and save the estimator again with this version")
        est = cls(**doc["params"])
        est.model_ = api.load(path)
        est.config_, _ = read_config(path)
        est.run_dir_ = path
        est.example_shape_ = tuple(doc["example_shape"])
        est.n_features_in_ = math.prod(est.example_shape_)
        est.latent_density_ = anomaly.LatentDensity.from_arrays(load_file(str(path / DENSITY_FILE)))
        est.offset_ = float(doc["offset"])
        return est

    def __sklearn_tags__(self):
        """scikit-learn's tags, plus: image-shaped (3-D and 4-D) arrays are accepted."""
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def _checked(X: Any, name: str) -> np.ndarray:
    """X (numpy array, tensor, list) as checked examples: [n, D] tables or [n, C, H, W] images, uint8 or
    float32 in [0, 1] (``vaekit.data.arrays``: NaN and out-of-range values get a DataError)."""
    x, _ = as_examples(name, as_tensor(X, name).detach().cpu().numpy())
    x, _, _ = as_values(name, x)
    return np.ascontiguousarray(x)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Send stderr (training's progress lines) to the null device while ``enabled``."""
    if not enabled:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        yield


__all__ = ["VAE", "FeatureCountError"]
