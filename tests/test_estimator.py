"""vaekit.VAE, the scikit-learn estimator: parameters, transforms, log-likelihood, outliers, pipelines,
grid search and save/load, on scikit-learn's 8x8 digits (values / 16, in [0, 1])."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils import estimator_checks

import vaekit
from vaekit.applications import anomaly
from vaekit.data.transforms import eval_view
from vaekit.errors import CheckpointError, ConfigError, DataError
from vaekit.estimator import VAE
from vaekit.evaluation import importance_sample

SMALL = {"latent_dim": 2, "epochs": 3, "importance_samples": 20}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return d.data / 16, d.target


@pytest.fixture(scope="module")
def fitted(digits, one_thread) -> VAE:
    return VAE(contamination=0.1, **SMALL).fit(digits[0])


def view(x: np.ndarray) -> torch.Tensor:
    """The digits-mlp preset's evaluation view: binarized once with data.binarize_seed 0."""
    return eval_view(torch.from_numpy(x.astype(np.float32)), "dynamic", 0)


def test_top_level_name_is_the_estimator():
    assert vaekit.VAE is VAE and vaekit.VAE is not vaekit.models.VAE
    assert "VAE" in dir(vaekit)


def test_params_round_trip_and_clone():
    est = VAE(latent_dim=3, config={"objective.beta": 2.0}, contamination=0.05)
    params = est.get_params()
    assert params["latent_dim"] == 3 and params["config"] == {"objective.beta": 2.0}
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(latent_dim=5, epochs=2) is est
    assert est.get_params()["latent_dim"] == 5 and est.get_params()["epochs"] == 2


@pytest.mark.parametrize("check", [
    "check_no_attributes_set_in_init", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params", "check_estimator_cloneable", "check_estimator_repr",
    "check_estimators_unfitted", "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
    "check_valid_tag_types",
])
def test_scikit_learn_checks_that_need_no_fit(check):
    getattr(estimator_checks, check)("VAE", VAE())


def test_init_stores_params_and_fit_checks_them(digits):
    est = VAE(contamination=0.7, preset="no-such-preset")  # accepted until fit
    with pytest.raises(ConfigError, match="contamination"):
        est.fit(digits[0])
    with pytest.raises(ConfigError, match="unknown preset"):
        VAE(preset="no-such-preset").fit(digits[0])
    with pytest.raises(ConfigError, match="importance_samples"):
        VAE(importance_samples=0).fit(digits[0])
    with pytest.raises(ConfigError, match="conditional"):
        VAE(config={"model.conditional": True}).fit(digits[0])


def test_unfitted_methods_raise_not_fitted(digits):
    est = VAE()
    for call in (lambda: est.transform(digits[0]), lambda: est.inverse_transform(np.zeros((2, 2))),
                 lambda: est.sample(2), lambda: est.score_samples(digits[0]), lambda: est.score(digits[0]),
                 lambda: est.predict(digits[0]), lambda: est.save("never-written")):
        with pytest.raises(NotFittedError):
            call()


def test_bad_values_get_the_data_error(digits):
    with pytest.raises(DataError, match=r"float data must lie in \[0, 1\]"):
        VAE().fit(digits[0] * 16)
    x = digits[0].copy()
    x[3, 5] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite values in rows \[3\]"):
        VAE().fit(x)


def test_fitted_attributes_and_shapes(fitted, digits):
    x = digits[0]
    assert fitted.n_features_in_ == 64 and fitted.example_shape_ == (64,)
    assert fitted.run_dir_.joinpath("config.json").is_file()
    z = fitted.transform(x)
    assert z.shape == (len(x), 2) and np.isfinite(z).all()
    assert list(fitted.get_feature_names_out()) == ["vae0", "vae1"]
    back = fitted.inverse_transform(z)
    assert back.shape == x.shape and back.min() >= 0 and back.max() <= 1
    s = fitted.sample(5, random_state=1)
    assert s.shape == (5, 64)
    np.testing.assert_array_equal(s, fitted.sample(5, random_state=1))
    assert not np.array_equal(s, fitted.sample(5, random_state=2))


def test_inverse_transform_of_transform_is_the_reconstruction(fitted, digits):
    x = digits[0][:100]
    want = fitted.model_.reconstruct(view(x)).numpy()
    np.testing.assert_allclose(fitted.inverse_transform(fitted.transform(x)), want, rtol=1e-5, atol=1e-6)


def test_score_samples_is_the_importance_sampled_log_likelihood(fitted, digits):
    x = digits[0][:300]
    ll = fitted.score_samples(x)
    want = importance_sample(fitted.model_, view(x), k=20, seed=0).log_px.numpy()
    np.testing.assert_allclose(ll, want, rtol=0, atol=1e-9)
    assert fitted.score(x) == pytest.approx(ll.mean())
    # the K-sample importance estimate lies above the ELBO on average (Jensen), and a binary
    # view has probability at most 1: log p(x) <= 0
    elbo = fitted.model_.elbo(view(x)).double().numpy()
    assert ll.mean() > elbo.mean()
    assert (ll < 0).all()


def test_feature_count_mismatch_is_a_value_error(fitted, digits):
    with pytest.raises(ValueError, match="32 features per example, but this VAE was fitted on 64"):
        fitted.transform(digits[0][:, :32])
    with pytest.raises(DataError, match="NaN"):
        fitted.score_samples(np.full((2, 64), np.nan))


def test_predict_flags_the_contamination_share_of_the_training_data(fitted, digits):
    x = digits[0]
    d = fitted.decision_function(x)
    p = fitted.predict(x)
    assert set(np.unique(p)) == {-1, 1}
    np.testing.assert_array_equal(p == -1, d < 0)
    np.testing.assert_array_equal(fitted.predict_outlier(x), p == -1)
    share = (p == -1).mean()
    assert 0.1 - 2 / len(x) <= share <= 0.1
    # the default score is the latent density: -log r(mu(x)) with r fitted to the training codes
    codes = fitted.transform(x)
    np.testing.assert_allclose(d, -fitted.latent_density_.nll(codes) - fitted.offset_)


def test_one_anomaly_score_matches_the_full_set(fitted, digits):
    x = view(digits[0][:200])
    every = anomaly.anomaly_scores(fitted.model_, x, k=20, seed=0, density=fitted.latent_density_)
    for name in anomaly.SCORES:
        one = anomaly.anomaly_score(name, fitted.model_, x, k=20, seed=0, density=fitted.latent_density_)
        np.testing.assert_array_equal(one, every[name])
    with pytest.raises(ConfigError, match="needs a density"):
        anomaly.anomaly_score("latent_density", fitted.model_, x)


def test_numpy_and_torch_image_inputs_agree(digits, one_thread):
    x = digits[0][:600].reshape(-1, 8, 8)
    est = VAE(**SMALL).fit(torch.from_numpy(x).float())
    assert est.example_shape_ == (8, 8) and est.model_.event_shape == (1, 8, 8)
    np.testing.assert_array_equal(est.transform(x.astype(np.float32)), est.transform(torch.from_numpy(x)))
    np.testing.assert_array_equal(est.score_samples(x), est.score_samples(torch.from_numpy(x)))
    assert est.inverse_transform(est.transform(x)).shape == x.shape
    assert est.sample(3, random_state=0).shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"shape \(64,\)"):
        est.transform(x.reshape(-1, 64))


def test_pipeline_scaler_vae_logistic_regression(digits, one_thread):
    raw, y = load_digits(return_X_y=True)
    train, test = slice(0, 1300), slice(1300, None)
    pipe = Pipeline([("scale", MinMaxScaler(clip=True)), ("vae", VAE(latent_dim=8, epochs=30)),
                     ("clf", LogisticRegression(max_iter=2000))])
    pipe.fit(raw[train], y[train])
    assert pipe.named_steps["vae"].n_features_in_ == 64
    assert pipe.score(raw[test], y[test]) > 0.6  # ten classes: chance is 0.1


def test_grid_search_picks_latent_dim_by_held_out_log_likelihood(digits, one_thread):
    x = digits[0][:800]
    split = [(np.arange(0, 600), np.arange(600, 800))]
    base = VAE(epochs=2, importance_samples=10)
    search = GridSearchCV(base, {"latent_dim": [1, 4]}, cv=split, refit=False).fit(x)
    scores = search.cv_results_["split0_test_score"]
    assert search.best_index_ == int(np.argmax(scores))
    best = search.cv_results_["params"][search.best_index_]
    held_out = clone(base).set_params(**best).fit(x[:600]).score(x[600:])
    assert scores[search.best_index_] == pytest.approx(held_out, abs=1e-6)


def test_save_and_load_restore_an_equal_estimator(fitted, digits, tmp_path):
    x = digits[0][:200]
    out = fitted.save(tmp_path / "vae")
    suffixes = {p.suffix for p in out.iterdir() if p.is_file()}
    assert ".safetensors" in suffixes and ".json" in suffixes and not suffixes & {".pt", ".pkl", ".pickle"}
    back = VAE.load(out)
    assert back.get_params() == fitted.get_params()
    assert back.offset_ == fitted.offset_ and back.n_features_in_ == 64
    np.testing.assert_array_equal(back.transform(x), fitted.transform(x))
    np.testing.assert_array_equal(back.score_samples(x), fitted.score_samples(x))
    np.testing.assert_array_equal(back.decision_function(x), fitted.decision_function(x))
    fitted.save(out)  # a saved estimator is replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a saved estimator"):
        fitted.save(tmp_path / "other")
    with pytest.raises(CheckpointError, match="holds no saved estimator"):
        VAE.load(tmp_path / "other")
    (out / "estimator.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        VAE.load(out)


def test_run_folders_temporary_or_given(digits, tmp_path, one_thread):
    x = digits[0][:300]
    est = VAE(latent_dim=2, epochs=1).fit(x)
    temporary = est.run_dir_
    assert (temporary / "model.safetensors").is_file()
    twin = copy.deepcopy(est)  # shares the folder: it lives while one of them does
    del est
    gc.collect()
    assert (twin.run_dir_ / "model.safetensors").is_file()
    del twin
    gc.collect()
    assert not temporary.exists()
    kept = VAE(latent_dim=2, epochs=1, run_dir=tmp_path / "run").fit(x)
    assert kept.run_dir_ == tmp_path / "run" and (tmp_path / "run" / "model.safetensors").is_file()
    kept.save(tmp_path / "run")  # into its own run folder: the estimator files are added
    assert VAE.load(tmp_path / "run").latent_dim == 2
    kept.set_params(latent_dim=3).fit(x)  # refitting replaces the run in the folder, and that save
    assert vaekit.load(tmp_path / "run").latent_dim == 3
    with pytest.raises(CheckpointError, match="holds no saved estimator"):
        VAE.load(tmp_path / "run")
