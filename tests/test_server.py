"""The latent-space explorer's JSON API (FastAPI TestClient) on tiny runs trained once per session."""

from __future__ import annotations

import base64
import importlib.machinery
import io
import json
import math
import re
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi", reason="the explorer needs the serve extra (fastapi, uvicorn)")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

import vaekit  # noqa: E402
from vaekit.api import load_split  # noqa: E402
from vaekit.cli import main  # noqa: E402
from vaekit.errors import ConfigError  # noqa: E402
from vaekit.evaluation import evaluate_elbo  # noqa: E402
from vaekit.server import check_port, create_app  # noqa: E402
from vaekit.server.app import MAX_UPLOAD_BYTES, STATIC_DIR  # noqa: E402
from vaekit.server.projection import PCA, fit_projection  # noqa: E402

TINY = {"train.epochs": 2, "train.progress": False, "model.net.hidden": [32]}


def train_tiny(base: Path, name: str, **extra) -> Path:
    """A digits-mlp run (8 x 8 digits, latent 8) trained for 2 epochs; reused when already there."""
    out = base / name
    if not (out / "model.safetensors").is_file():
        vaekit.train(out, preset="digits-mlp", **{**TINY, **extra})
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.getbasetemp(), "explorer-run")


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.getbasetemp(), "explorer-cond-run", **{"model.conditional": True})


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    return TestClient(create_app(run_dir))


@pytest.fixture(scope="module")
def cond_client(cond_run) -> TestClient:
    return TestClient(create_app(cond_run))


@pytest.fixture(scope="module")
def model(run_dir):
    return vaekit.load(run_dir)


@pytest.fixture(scope="module")
def split(run_dir):
    return load_split(run_dir, "test")


def pixels(data_url: str) -> np.ndarray:
    """A PNG data URL back to floats in [0, 1], [H, W] (grey) or [H, W, 3]."""
    assert data_url.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return np.asarray(img, dtype=np.float64) / 255.0


def png_bytes(arr: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def upload(client: TestClient, path: str, data: bytes, ctype: str = "image/png", **params):
    return client.post(path, content=data, headers={"content-type": ctype}, params=params)


def detail(response) -> str:
    return response.json()["detail"]


# ---- info and map ----------------------------------------------------------------------------------


def test_info_orders_dimensions_by_their_mean_kl(client, model, split, run_dir):
    info = client.get("/info").json()
    assert info["latent_dim"] == 8 and info["event_shape"] == [1, 8, 8] and info["num_classes"] == 0
    assert info["activity_kind"] == "kl" and info["projection"] == "pca"
    # the mean KL per dimension, recomputed from the posterior of the map's examples
    idx = client.get("/map").json()["index"]
    q = model.encode(split[0][idx])
    mu, sigma = q.mean.detach().double(), q.stddev.detach().double()
    kl = (0.5 * (mu**2 + sigma**2 - 1) - torch.log(sigma)).mean(0).numpy()
    np.testing.assert_allclose(info["activity"], kl, rtol=1e-4, atol=1e-6)
    assert info["dim_order"] == [int(i) for i in np.argsort(-kl, kind="stable")]
    recorded = json.loads((run_dir / "evaluation.json").read_text())
    assert info["evaluation"]["test"]["elbo"] == pytest.approx(recorded["test"]["elbo"])
    assert info["config"]["model"]["net"]["hidden"] == [32]
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD_BYTES


def test_map_is_the_pca_of_the_posterior_means(client, model, split):
    from sklearn.decomposition import PCA as SkPCA

    m = client.get("/map").json()
    x, y = split
    assert len(m["x"]) == len(m["y"]) == len(m["index"]) == len(x)  # 180 test digits < the 2000 cap
    assert m["label"] == y[m["index"]].tolist()
    z = model.encode(x[m["index"]]).mean.detach().double().numpy()
    ref = SkPCA(2).fit(z)
    pts = np.stack([m["x"], m["y"]], 1)
    np.testing.assert_allclose(np.abs(pts), np.abs(ref.transform(z)), atol=1e-4)  # up to sign per axis
    info = client.get("/info").json()
    share = [float(a.split("(")[1].split("%")[0]) for a in info["axes"]]
    np.testing.assert_allclose(share, 100 * ref.explained_variance_ratio_, atol=0.51)


def test_map_caps_and_seeds_the_points(run_dir):
    a = create_app(run_dir, max_points=50).state.explorer
    b = create_app(run_dir, max_points=50).state.explorer
    assert len(a.indices) == 50 and a.indices.tolist() == b.indices.tolist()
    assert a.indices.tolist() == sorted(set(a.indices.tolist()))


# ---- examples and decode ------------------------------------------------------------------------


def test_example_is_encoded_and_placed_on_the_map(client, model, split):
    m = client.get("/map").json()
    i = m["index"][7]
    ex = client.get(f"/examples/{i}").json()
    x, y = split
    np.testing.assert_allclose(ex["z"], model.encode(x[i : i + 1]).mean[0].detach().numpy(), atol=1e-5)
    assert ex["label"] == int(y[i]) and ex["index"] == i
    np.testing.assert_allclose(ex["point"], [m["x"][7], m["y"][7]], atol=1e-5)
    np.testing.assert_allclose(pixels(ex["image"]), x[i, 0].numpy(), atol=1 / 255)


@pytest.mark.parametrize("index,status", [(10**6, 404), (-1, 404), ("abc", 422)])
def test_example_bad_index(client, index, status):
    r = client.get(f"/examples/{index}")
    assert r.status_code == status
    if status == 404:
        assert "0..179" in detail(r)


def test_decode_gives_the_likelihood_mean(client, model):
    z = torch.linspace(-1.5, 1.5, 8)
    r = client.post("/decode", json={"z": z.tolist()})
    assert r.status_code == 200
    expected = model.decode(z[None]).mean[0, 0].detach().numpy()
    np.testing.assert_allclose(pixels(r.json()["image"]), expected, atol=0.5 / 255 + 1e-6)


def test_decode_a_map_point_inverts_the_pca(client, model):
    point = [0.7, -0.4]
    r = client.post("/decode", json={"point": point}).json()
    np.testing.assert_allclose(r["point"], point, atol=1e-5)  # the decoded latent lies back on the spot
    ex = client.get(f"/examples/{client.get('/map').json()['index'][0]}").json()
    # z = mean + p V: moving along the map moves z within the top-2 principal plane only
    again = client.post("/decode", json={"point": ex["point"]}).json()
    a, b = np.array(r["z"]), np.array(again["z"])
    pca = client.app.state.explorer.projection
    resid = (a - b) - ((a - b) @ pca.basis.T) @ pca.basis
    np.testing.assert_allclose(resid, 0, atol=1e-5)


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"z": [0.0, 1.0]}, "latent space has 8 dimensions"),
        ({"z": [0.0] * 8, "point": [0, 0]}, "exactly one of 'z' and 'point'"),
        ({}, "exactly one of 'z' and 'point'"),
        ({"z": [1e6] + [0.0] * 7}, "|z_i| <= 1000"),
        ({"z": ["a"] + [0.0] * 7}, "z.0"),
        ({"point": [1.0]}, "point"),
        ({"point": [1e308, 1e308]}, "pick a point nearer the map"),  # was 200, z null (float32 overflow)
        ({"point": [5e4, 0.0]}, "|z_i| <= 1000"),  # was 200 with |z_i| ~ 27,000
        ({"z": [0.0] * 8, "label": 3}, "not conditional"),
        ({"z": [0.0] * 8, "colour": 3}, "colour"),
    ],
)
def test_decode_refuses_bad_requests(client, body, needle):
    r = client.post("/decode", json=body)
    assert r.status_code == 422
    assert needle in detail(r)


def test_decode_refuses_non_finite_and_non_json(client):
    r = client.post("/decode", content=b'{"z": [NaN, 0, 0, 0, 0, 0, 0, 0]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in detail(r)
    r = client.post("/decode", content=b"z=1", headers={"content-type": "application/json"})
    assert r.status_code == 422


# ---- uploads -----------------------------------------------------------------------------------


def test_encode_an_upload_matches_the_example(client):
    ex = client.get("/examples/5").json()
    png = base64.b64decode(ex["image"].split(",", 1)[1])  # binary digit: preprocessing leaves it as is
    r = upload(client, "/encode", png)
    assert r.status_code == 200
    np.testing.assert_allclose(r.json()["z"], ex["z"], atol=1e-5)
    np.testing.assert_allclose(r.json()["point"], ex["point"], atol=1e-5)
    assert all(s > 0 for s in r.json()["std"])


def test_upload_is_converted_to_the_models_input(client):
    # a large RGBA image: transparent -> black, resized to 8 x 8, binarized (values 0 or 1 only)
    rgba = np.zeros((80, 120, 4), np.uint8)
    rgba[20:60, 40:80] = [255, 255, 255, 255]
    seen = pixels(upload(client, "/encode", png_bytes(rgba, "RGBA")).json()["image"])
    assert seen.shape == (8, 8) and set(np.unique(seen)) <= {0.0, 1.0}
    assert seen[0].sum() == 0 and seen[4, 4] == 1.0
    white = png_bytes(np.full((30, 30), 255, np.uint8))
    assert pixels(upload(client, "/encode", white, invert="true").json()["image"]).sum() == 0
    grey16 = io.BytesIO()
    Image.fromarray(np.full((10, 10), 20000, np.uint16)).save(grey16, format="PNG")  # 16-bit, 31% grey
    seen16 = client.app.state.explorer.upload(grey16.getvalue())
    eight_bit = client.app.state.explorer.upload(png_bytes(np.full((10, 10), 78, np.uint8)))
    assert torch.equal(seen16, eight_bit)  # 20000 / 257 = 78: scaled like 8-bit, not clipped
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 255, 255)).save(jpeg, format="JPEG")
    assert pixels(upload(client, "/encode", jpeg.getvalue(), "image/jpeg").json()["image"]).min() == 1.0


def test_uploads_are_validated(client):
    big = png_bytes(np.zeros((5000, 5000), np.uint8))
    cases = [
        (b"", "image/png", 422, "empty"),
        (b"not an image", "image/png", 422, "not a readable image"),
        (b"GIF89a....", "image/gif", 422, "not a readable image"),
        (png_bytes(np.zeros((4, 4), np.uint8)), "text/plain", 415, "Content-Type"),
        (big, "image/png", 422, "pixels"),
        (b"x" * (MAX_UPLOAD_BYTES + 100_000), "image/png", 413, "larger than"),
    ]
    for path in ("/encode", "/reconstruct"):
        for data, ctype, status, needle in cases:
            r = upload(client, path, data, ctype)
            assert r.status_code == status, (path, ctype, r.text)
            assert needle in detail(r)
    small = png_bytes(np.zeros((8, 8), np.uint8))
    form = client.post("/encode", files={"file": ("d.png", small, "image/png")})
    assert form.status_code == 415 and "not a form" in detail(form)


def test_upload_limit_holds_without_content_length(client):
    def chunks():
        for _ in range(40):
            yield b"\0" * 65536  # 2.5 MB, sent chunked

    r = client.post("/encode", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "larger than" in detail(r)


def test_reconstruct_reports_elbo_and_importance_sampled_nll(client, model, split):
    x, y = split
    png = base64.b64decode(client.get("/examples/3").json()["image"].split(",", 1)[1])
    r = upload(client, "/reconstruct", png, k=200)
    assert r.status_code == 200
    res = r.json()
    ref = evaluate_elbo(model, x[3:4], None, batch_size=1, seed=0)
    assert res["elbo"] == pytest.approx(ref["elbo"], abs=1e-4)
    assert res["elbo"] == pytest.approx(-res["recon"] - res["kl"], abs=1e-4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ll = float(model.log_likelihood(x[3:4], k=200)[0])
    assert res["nll"] == pytest.approx(-ll, abs=1e-4) and res["k"] == 200
    assert res["bits_per_dim"] == pytest.approx(res["nll"] / (64 * math.log(2)))
    recon = model.reconstruct(x[3:4])[0, 0].numpy()
    np.testing.assert_allclose(pixels(res["reconstruction"]), recon, atol=0.5 / 255 + 1e-6)
    assert upload(client, "/reconstruct", png, k=200).json()["nll"] == res["nll"]  # seeded
    for k in (0, 10**6):
        bad = upload(client, "/reconstruct", png, k=k)
        assert bad.status_code == 422 and "k:" in detail(bad)


# ---- interpolate and samples --------------------------------------------------------------------


def test_interpolate_linear_and_spherical(client):
    e = np.eye(8)
    body = {"a": {"z": (2 * e[0]).tolist()}, "b": {"z": (2 * e[1]).tolist()}, "steps": 5}
    lin = client.post("/interpolate", json=body).json()
    sph = client.post("/interpolate", json={**body, "path": "spherical"}).json()
    zl, zs = np.array(lin["z"]), np.array(sph["z"])
    assert len(lin["images"]) == 5 and lin["t"] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(zl[[0, -1]], [2 * e[0], 2 * e[1]], atol=1e-6)
    np.testing.assert_allclose(np.diff(zl, axis=0), np.tile((2 * e[1] - 2 * e[0]) / 4, (4, 1)), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(zs, axis=1), 2.0, atol=1e-5)  # stays on the circle
    np.testing.assert_allclose(zs[2], np.sqrt(2) * (e[0] + e[1]), atol=1e-5)
    assert len(lin["points"]) == 5


def test_interpolate_between_examples(client):
    i, j = client.get("/map").json()["index"][:2]
    r = client.post("/interpolate", json={"a": {"index": i}, "b": {"index": j}, "steps": 3}).json()
    zi, zj = client.get(f"/examples/{i}").json()["z"], client.get(f"/examples/{j}").json()["z"]
    np.testing.assert_allclose(r["z"][0], zi, atol=1e-5)
    np.testing.assert_allclose(r["z"][1], (np.array(zi) + zj) / 2, atol=1e-5)
    assert r["label"] is None


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({"steps": 1}, 422, "steps"),
        ({"steps": 33}, 422, "steps"),
        ({"path": "cubic"}, 422, "path"),
        ({"a": {"index": 0, "z": [0.0] * 8}}, 422, "exactly one of 'index' and 'z'"),
        ({"a": {"index": 999}}, 404, "no example #999"),
        ({"b": {"z": [0.0] * 3}}, 422, "8 dimensions"),
        ({"label": 2}, 422, "not conditional"),
    ],
)
def test_interpolate_refuses_bad_requests(client, body, status, needle):
    r = client.post("/interpolate", json={"a": {"index": 0}, "b": {"index": 1}, **body})
    assert r.status_code == status and needle in detail(r)


def test_traverse_moves_one_unit_per_row_in_kl_order(client, model, split):
    info = client.get("/info").json()
    r = client.post("/traverse", json={"top": 3, "range": 2, "steps": 5, "index": 4}).json()
    assert [row["dim"] for row in r["rows"]] == info["dim_order"][:3]
    activity = [info["activity"][d] for d in info["dim_order"][:3]]
    assert [row["activity"] for row in r["rows"]] == pytest.approx(activity)
    assert r["values"] == pytest.approx([-2, -1, 0, 1, 2]) and r["activity_kind"] == "kl"
    base = model.encode(split[0][4:5]).mean[0].detach()
    for row in r["rows"]:
        z = base.expand(5, 8).clone()
        z[:, row["dim"]] = torch.linspace(-2, 2, 5)
        np.testing.assert_allclose(row["z"], z, atol=1e-5)
        decoded = model.decode(z).mean.detach()[:, 0].numpy()
        np.testing.assert_allclose([pixels(im) for im in row["images"]], decoded, atol=1 / 255 + 1e-6)
    listed = client.post("/traverse", json={"dims": [5, 0], "steps": 2}).json()  # from the prior mean
    assert [row["dim"] for row in listed["rows"]] == [5, 0]
    np.testing.assert_allclose(listed["rows"][0]["z"], [[0, 0, 0, 0, 0, -3, 0, 0], [0, 0, 0, 0, 0, 3, 0, 0]])


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({"dims": [8]}, 422, "traversable units are 0..7"),
        ({"dims": [1, 1]}, 422, "twice"),
        ({"range": 0}, 422, "range"),
        ({"steps": 17}, 422, "steps"),
        ({"index": 999}, 404, "no example #999"),
        ({"label": 1}, 422, "not conditional"),
    ],
)
def test_traverse_refuses_bad_requests(client, body, status, needle):
    r = client.post("/traverse", json=body)
    assert r.status_code == status and needle in detail(r)


def test_samples_are_seeded(client):
    a = client.get("/samples", params={"n": 5, "seed": 3}).json()
    assert len(a["images"]) == 5 and a["labels"] is None and a["columns"] == 3
    assert a == client.get("/samples", params={"n": 5, "seed": 3}).json()
    assert a["images"] != client.get("/samples", params={"n": 5, "seed": 4}).json()["images"]
    bad = (({"n": 0}, "n:"), ({"n": 257}, "n:"), ({"seed": -1}, "seed"), ({"label": 1}, "conditional"))
    for params, needle in bad:
        r = client.get("/samples", params=params)
        assert r.status_code == 422 and needle in detail(r)


# ---- a conditional model --------------------------------------------------------------------------


def test_conditional_samples_one_row_per_class(cond_client):
    full = cond_client.get("/samples", params={"n": 3, "seed": 1}).json()
    assert len(full["images"]) == 30 and full["columns"] == 3
    assert full["labels"] == [c for c in range(10) for _ in range(3)]
    four = cond_client.get("/samples", params={"n": 3, "seed": 1, "label": 4}).json()
    assert four["images"] == full["images"][12:15] and four["labels"] == [4, 4, 4]  # the same latents
    assert cond_client.get("/samples", params={"n": 3, "label": 10}).status_code == 422
    r = cond_client.get("/samples", params={"n": 30})
    assert r.status_code == 422 and "more than 256" in detail(r)


def test_conditional_model_needs_and_uses_labels(cond_client, cond_run):
    model = vaekit.load(cond_run)
    x, y = load_split(cond_run, "test")
    z = [0.0] * 8
    r = cond_client.post("/decode", json={"z": z})
    assert r.status_code == 422 and "conditional model" in detail(r)
    assert cond_client.post("/decode", json={"z": z, "label": 10}).status_code == 422
    for c in (2, 7):
        img = pixels(cond_client.post("/decode", json={"z": z, "label": c}).json()["image"])
        expected = model.decode(torch.zeros(1, 8), torch.tensor([c])).mean[0, 0].detach().numpy()
        np.testing.assert_allclose(img, expected, atol=0.5 / 255 + 1e-6)
    ex = cond_client.get("/examples/4").json()
    assert ex["label"] == int(y[4])
    np.testing.assert_allclose(ex["z"], model.encode(x[4:5], y[4:5]).mean[0].detach().numpy(), atol=1e-5)
    r = cond_client.post("/interpolate", json={"a": {"index": 4}, "b": {"index": 5}, "steps": 2}).json()
    assert r["label"] == int(y[4])
    png = base64.b64decode(ex["image"].split(",", 1)[1])
    assert upload(cond_client, "/encode", png).status_code == 422
    z4 = upload(cond_client, "/encode", png, label=int(y[4])).json()["z"]
    np.testing.assert_allclose(z4, ex["z"], atol=1e-5)
    assert upload(cond_client, "/reconstruct", png, label=int(y[4]), k=10).status_code == 200


# ---- the page, the schema and the boundaries -------------------------------------------------------


def test_openapi_documents_the_api(client):
    doc = client.get("/openapi.json").json()
    for path in ("/decode", "/encode", "/interpolate", "/samples", "/map", "/info", "/reconstruct",
                 "/examples/{index}"):
        assert path in doc["paths"], path
    assert "image/*" in doc["paths"]["/encode"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN


def test_page_and_assets_are_served_and_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css", "index.html"):
        assert client.get(f"/static/{name}").status_code == 200
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//""", text)
        assert "@import" not in text
        assert not re.search(r"""fetch\(\s*["'`]https?:""", text)


def test_no_files_outside_the_static_folder(client):
    for path in ("/static/../explorer.py", "/static/%2e%2e/explorer.py", "/static/..%2fapp.py",
                 "/static//etc/passwd", "/config.json", "/model.safetensors"):
        r = client.get(path)
        assert r.status_code == 404, path


def test_requests_naming_another_host_are_refused(run_dir):
    c = TestClient(create_app(run_dir, max_points=20, allowed_hosts=["127.0.0.1", "localhost"]))
    assert c.get("/info").status_code == 400  # the test client says Host: testserver
    assert c.get("/info", headers={"host": "127.0.0.1:8000"}).status_code == 200


# ---- projections and the command line ---------------------------------------------------------------


def test_projections_and_their_inverses():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5)) * [3, 2, 0.1, 0.1, 0.1]
    pca = fit_projection(z, "auto")
    assert isinstance(pca, PCA) and pca.explained[0] > pca.explained[1] > 0.3
    p = rng.normal(size=(4, 2))
    np.testing.assert_allclose(pca.transform(pca.inverse(p)), p, atol=1e-10)
    two = fit_projection(z[:, :2], "auto")
    assert two.method == "latent" and np.array_equal(two.transform(z[:, :2]), z[:, :2])
    one = fit_projection(z[:, :1], "pca")
    assert np.allclose(one.transform(z[:, :1])[:, 1], 0) and one.inverse(p).shape == (4, 1)
    with pytest.raises(ConfigError, match="projection"):
        fit_projection(z, "tsne")


def test_umap_is_used_when_installed(monkeypatch, run_dir):
    class FakeUMAP:  # stands in for umap.UMAP: a fixed linear map, so the numbers can be checked
        def __init__(self, n_components, random_state):
            self.w = np.eye(8)[:2]

        def fit(self, z):
            self.embedding_ = z @ self.w.T
            return self

        def transform(self, z):
            return z @ self.w.T

        def inverse_transform(self, p):
            return p @ self.w

    fake = types.ModuleType("umap")
    fake.UMAP = FakeUMAP
    fake.__spec__ = importlib.machinery.ModuleSpec("umap", None)
    monkeypatch.setitem(sys.modules, "umap", fake)
    c = TestClient(create_app(run_dir, max_points=30))
    assert c.get("/map").json()["projection"] == "umap"
    r = c.post("/decode", json={"point": [0.5, -1.0]}).json()
    assert r["z"] == pytest.approx([0.5, -1.0] + [0.0] * 6) and r["point"] is None


def test_umap_asked_for_but_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ConfigError, match="umap-learn"):
        fit_projection(np.zeros((10, 4)), "umap")


def test_cli_serve_fails_early_on_a_taken_port(run_dir, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot listen"):
            check_port("127.0.0.1", port)
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0


@pytest.fixture(scope="module")
def live_server(run_dir):
    """The explorer served by a real uvicorn server on 127.0.0.1 (an ephemeral port), in a thread."""
    import threading

    import uvicorn

    app = create_app(run_dir)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        thread.join(0.02)
    assert server.started
    yield app, sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


def raw_request(port: int, head: bytes, body_parts=(), timeout: float = 20.0) -> tuple[int, bytes]:
    """Send ``head`` then ``body_parts`` on a fresh socket while reading the answer in parallel (the
    server may answer before the body is all sent); the status code and the whole answer. A socket
    timeout (the server hangs) fails the test."""
    import threading

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        def send_all() -> None:
            try:
                s.sendall(head)
                for part in body_parts:
                    s.sendall(part)
            except OSError:
                pass  # the server answered and closed the connection: stop sending

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _answer_complete(answer):
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        sender.join(timeout)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12]), answer


def _answer_complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return m is not None and len(body) >= int(m.group(1))


def chunked(parts) -> list[bytes]:
    """HTTP/1.1 chunked framing of ``parts``, with the closing empty chunk."""
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p] + [b"0\r\n\r\n"]


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_chunked_body_over_the_limit_is_refused_while_reading(live_server):
    from vaekit.server.app import MAX_BODY_BYTES

    _, port = live_server
    # a JSON latent of ~4 MB (twice the limit) sent chunked, so no Content-Length can be checked
    parts = [b'{"z": [0'] + [b", 0" * 21845] * 64 + [b"]}"]
    assert sum(map(len, parts)) > MAX_BODY_BYTES
    hdr = head("POST", "/decode", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    status, answer = raw_request(port, hdr, chunked(parts))
    assert status == 413 and b"larger than" in answer
    # a declared Content-Length over the limit: refused before any byte of the body is read
    status, _ = raw_request(port, head("POST", "/decode", {"Content-Length": str(MAX_BODY_BYTES + 1)}))
    assert status == 413
    ok, answer = raw_request(port, head("GET", "/info", {"Connection": "close"}))
    assert ok == 200 and b'"latent_dim":8' in answer


def _route_targets(app) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app; a mount (the static folder) as
    ``<mount>/{path:path}``."""
    targets = []
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        path = route.path if hasattr(route, "methods") else route.path + "/{path:path}"
        targets += [(m, path) for m in methods if m != "HEAD"]
    assert {"/decode", "/encode", "/static/{path:path}"} <= {p for _, p in targets}
    return targets


def _huge_chunked(total: int):
    """A chunked body of ``total`` bytes, made as it is sent (never held whole)."""
    block = b"%x\r\n%s\r\n" % (65536, b"7" * 65536)
    for _ in range(total // 65536):
        yield block
    yield b"0\r\n\r\n"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["z", "point", "label", "a", "b", "index", "steps", "path"]) | st.text(max_size=4),
        inner, max_size=5),
    max_leaves=20,
)
_HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
_TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_every_route_over_a_real_socket(live_server, data):
    """Random bodies, headers, queries and framings to every route of the app: each answer is a 2xx
    or a 4xx (never a 5xx or no answer: a hang fails on the socket timeout), the body limit holds
    whatever the framing, the process's peak memory stays bounded and the server answers normally
    afterwards (checked after every example)."""
    import resource
    from urllib.parse import quote

    from vaekit.server.app import MAX_BODY_BYTES

    app, port = live_server
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    method, template = data.draw(st.sampled_from(_route_targets(app)), label="route")
    path = template.replace("{index}", quote(str(data.draw(st.integers(-5, 10**6) | st.text(max_size=6)))))
    path = path.replace("{path:path}", quote(data.draw(st.sampled_from(["app.js", "../app.py", "x", ""]))))
    query = data.draw(st.dictionaries(st.sampled_from(["n", "k", "seed", "label", "invert", "q"]),
                                      st.integers(-10, 10**4).map(str) | st.text(max_size=5), max_size=3))
    if query:
        path += "?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())
    kind = data.draw(st.sampled_from(["json", "bytes", "big"]), label="body")
    body = {
        "json": lambda: json.dumps(data.draw(_JSON)).encode(),
        "bytes": lambda: data.draw(st.binary(max_size=2048)),
        "big": lambda: b"\x89PNG" + b"\0" * data.draw(st.integers(MAX_BODY_BYTES - 8, MAX_BODY_BYTES + 8)),
    }[kind]()
    headers = {"Content-Type": data.draw(st.sampled_from(
        ["application/json", "image/png", "image/jpeg", "text/plain", "multipart/form-data; boundary=x"])
        | _HEADER_VALUE)}
    headers.update(data.draw(st.dictionaries(_TOKEN.map(lambda t: "x-" + t), _HEADER_VALUE, max_size=3)))
    framing = data.draw(st.sampled_from(["length", "chunked", "none", "lie-low", "lie-high", "huge"]))
    if framing == "length":
        parts = [body]
        headers["Content-Length"] = str(len(body))
    elif framing == "chunked" or framing == "huge":
        headers["Transfer-Encoding"] = "chunked"
        pieces = data.draw(st.integers(1, 5))
        step = -(-len(body) // pieces) or 1
        parts = _huge_chunked(30 * 2**20) if framing == "huge" else chunked(
            [body[i : i + step] for i in range(0, len(body), step)])
    elif framing == "none":
        parts = []
    elif framing == "lie-low":  # declares fewer bytes than sent: the rest is a second, garbage request
        headers["Content-Length"] = str(data.draw(st.integers(0, len(body))))
        parts = [body]
    else:  # declares more than is sent: no answer is due until the rest arrives; the client gives up
        headers["Content-Length"] = str(len(body) + data.draw(st.integers(1, 1000)))
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(head(method, path, headers) + body)
        parts = None
    if parts is not None:
        status, answer = raw_request(port, head(method, path, headers), parts)
        assert 200 <= status < 500, answer[:300]
        if framing in ("chunked", "huge") and len(body) > MAX_BODY_BYTES or framing == "huge":
            assert status == 413, answer[:300]
    peak_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert peak_growth_mb < 256, f"peak memory grew by {peak_growth_mb:.0f} MB on one request"
    normal = json.dumps({"z": [0.0] * 8}).encode()
    ok, answer = raw_request(port, head("POST", "/decode", {"Content-Type": "application/json",
                                                            "Content-Length": str(len(normal))}), [normal])
    assert ok == 200 and b'"image":"data:image/png;base64,' in answer
    ok, answer = raw_request(port, head("GET", "/info", {}))
    assert ok == 200 and b'"latent_dim":8' in answer
