"""Anomaly scores, detection metrics and class selection (data.classes / data.exclude_classes)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from vaekit.applications.anomaly import (
    LatentDensity,
    calibrate,
    compressed_nats,
    detection_metrics,
    fpr_at_recall,
    reference_subsample,
)
from vaekit.data import load_dataset
from vaekit.errors import ConfigError


def test_metrics_match_hand_computed_values():
    # scores 0.1 0.4 0.35 0.8 with labels 0 0 1 1: of the 4 (anomaly, normal) pairs, 3 are ordered
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    m = detection_metrics(scores, labels)
    assert m["auroc"] == pytest.approx(0.75)
    # ranked: 0.8 (anomaly, precision 1), 0.4 normal, 0.35 (anomaly, precision 2/3): AP = (1 + 2/3) / 2
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    # flagging both anomalies needs threshold 0.35, which flags 1 of the 2 normals
    assert m["fpr_at_95_recall"] == pytest.approx(0.5)
    assert fpr_at_recall(scores, labels, recall=0.5) == pytest.approx(0.0)


def test_metrics_refuse_one_class():
    with pytest.raises(ConfigError, match="both normal"):
        detection_metrics(np.array([1.0, 2.0]), np.array([0, 0]))


def test_calibrate_flags_the_requested_share():
    normal = np.arange(1000, dtype=float)
    t = calibrate(normal, 0.01)
    assert (normal > t).mean() == pytest.approx(0.009, abs=0.002)
    with pytest.raises(ConfigError, match="fpr"):
        calibrate(normal, 1.5)


def test_compressed_nats_is_zlib_length():
    x = torch.zeros(2, 1, 4, 4)
    x[1] = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    u8 = (x[1].clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes()
    got = compressed_nats(x)
    assert got[1] == pytest.approx(len(zlib.compress(u8, 9)) * 8 * math.log(2))
    assert got[0] < got[1]  # a blank image compresses better


def test_classes_select_every_split():
    data = load_dataset("digits", exclude_classes=[1, 7])
    for s in (data.train, data.valid, data.test):
        assert len(s) and not torch.isin(s.y, torch.tensor([1, 7])).any()
    full = load_dataset("digits")
    assert len(data.test) == int((~torch.isin(full.test.y, torch.tensor([1, 7]))).sum())
    only = load_dataset("digits", classes=[3, 4], exclude_classes=[4])
    assert set(only.train.y.tolist()) == {3}


def test_classes_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a label"):
        load_dataset("digits", classes=[12])
    with pytest.raises(ConfigError, match="leaves no class"):
        load_dataset("digits", classes=[3], exclude_classes=[3])
    path = tmp_path / "x.npz"
    np.savez(path, x_train=np.random.default_rng(0).random((30, 4)).astype(np.float32))
    with pytest.raises(ConfigError, match="need labels"):
        load_dataset(f"npz:{path}", exclude_classes=[1])


def test_latent_density_one_component_is_the_fitted_gaussian():
    """One component: the maximum-likelihood Gaussian, -log N(z; mean, cov) in closed form."""
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(4000, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 0.5, 0.2], [0.0, 0.0, 2.0]]) + 1.5
    z = rng.normal(size=(5, 3))
    mean, cov = codes.mean(0), np.cov(codes.T, bias=True) + 1e-4 * np.eye(3)
    d = z - mean
    want = 0.5 * (np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + np.log(np.linalg.det(cov))
                  + 3 * math.log(2 * math.pi))
    assert np.allclose(LatentDensity(codes, components=1).nll(z), want, atol=1e-6)


def test_latent_density_separates_codes_off_the_reference():
    rng = np.random.default_rng(1)
    normal = np.concatenate([rng.normal(-3, 0.3, (500, 2)), rng.normal(3, 0.3, (500, 2))])
    density = LatentDensity(normal)
    between, on = np.zeros((1, 2)), np.array([[3.0, 3.0]])
    assert density.nll(between)[0] > density.nll(on)[0] + 20  # the gap between the modes is empty
    with pytest.raises(ConfigError, match="reference examples"):
        LatentDensity(normal[:1])


def test_reference_subsample_is_seeded_and_bounded():
    x, y = torch.arange(50).reshape(25, 2), torch.arange(25)
    a, ya = reference_subsample(x, y, n=10, seed=3)
    b, _ = reference_subsample(x, y, n=10, seed=3)
    assert len(a) == 10 and torch.equal(a, b) and torch.equal(a[:, 0] // 2, ya)
    assert reference_subsample(x, y, n=100)[0] is x
