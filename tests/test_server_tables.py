"""The explorer on a table run: the map coloured by a column, latents decoded into rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the explorer needs the serve extra (fastapi, uvicorn)")
pd = pytest.importorskip("pandas", reason="tables need the tables extra (pandas)")
from fastapi.testclient import TestClient  # noqa: E402

import vaekit  # noqa: E402
from vaekit.api import load_split  # noqa: E402
from vaekit.cli import main  # noqa: E402
from vaekit.data.table_codec import decode  # noqa: E402
from vaekit.runs.folder import load, read_config  # noqa: E402
from vaekit.server import create_app  # noqa: E402


def train_table(base: Path) -> Path:
    """A table preset run (2 epochs) on 300 seeded rows: a numeric, a categorical and a boolean column."""
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    frame = pd.DataFrame({
        "size": np.round(rng.normal(10, 2, n) + (colour == "red") * 5, 2),
        "colour": colour,
        "ok": rng.random(n) < 0.3,
    })
    path = base / "t.csv"
    frame.to_csv(path, index=False)
    run = base / "run"
    assert main(["--quiet", "train", "--preset", "table", "--data", f"csv:{path}", "--out", str(run),
                 "--train.epochs", "2", "--train.progress", "false"]) == 0
    return run


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    return train_table(tmp_path_factory.mktemp("table-explorer"))


@pytest.fixture(scope="module")
def client(table_run) -> TestClient:
    return TestClient(create_app(table_run))


def test_info_lists_the_columns(client):
    info = client.get("/info").json()
    cols = {c["name"]: c for c in info["columns"]}
    assert list(cols) == ["size", "colour", "ok"]
    assert cols["colour"]["categories"] == ["blue", "green", "red"] and cols["size"]["categories"] is None


def test_map_colours_by_a_column_with_the_decoded_rows(client, table_run):
    m = client.get("/map").json()
    assert m["columns"] == ["size", "colour", "ok"] and m["values"] is None and m["color_by"] is None
    n = len(m["index"])
    x, _ = load_split(table_run, m["split"])
    rows = decode(x[m["index"]].double().numpy(), read_config(table_run)[1].schema.columns)

    c = client.get("/map", params={"color_by": "colour"}).json()
    assert c["color_by"] == "colour" and len(c["values"]) == len(c["color"]) == n
    assert c["values"] == rows["colour"].tolist()
    labels = ["blue", "green", "red"]
    assert [labels[k] for k in c["color"]] == c["values"]

    s = client.get("/map", params={"color_by": "size"}).json()
    np.testing.assert_allclose(s["values"], rows["size"].to_numpy())
    assert s["color"] == s["values"]

    b = client.get("/map", params={"color_by": "ok"}).json()
    assert b["values"] == rows["ok"].tolist() and all(isinstance(v, bool) for v in b["values"])
    assert b["color"] == [int(v) for v in b["values"]]  # False is category 0, True 1


def test_unknown_column_is_refused(client):
    r = client.get("/map", params={"color_by": "weight"})
    assert r.status_code == 404
    assert "no column 'weight'" in r.json()["detail"] and "size, colour, ok" in r.json()["detail"]


def test_decode_gives_a_row_of_the_table(client, table_run):
    info = client.get("/info").json()
    z = [0.0] * info["latent_dim"]
    r = client.post("/decode", json={"z": z})
    assert r.status_code == 200, r.text
    body = r.json()
    row = body["row"]
    assert body["image"] is None and list(row) == ["size", "colour", "ok"]
    assert isinstance(row["size"], float) and row["colour"] in ("blue", "green", "red")
    assert isinstance(row["ok"], bool)
    # the same row as decoding the likelihood mean E[x|z] with the table codec
    mean = load(table_run).decode(torch.zeros(1, info["latent_dim"])).mean.detach().double().numpy()
    expect = decode(mean, read_config(table_run)[1].schema.columns).iloc[0]
    assert row["colour"] == expect["colour"] and row["ok"] == bool(expect["ok"])
    assert row["size"] == pytest.approx(float(expect["size"]))
    # a map point decodes to a row too
    p = client.post("/decode", json={"point": [0.0, 0.0]}).json()
    assert list(p["row"]) == ["size", "colour", "ok"]


def test_example_carries_its_row(client):
    m = client.get("/map", params={"color_by": "colour"}).json()
    ex = client.get(f"/examples/{m['index'][0]}").json()
    assert ex["image"] is None and ex["row"]["colour"] == m["values"][0]


def test_image_only_requests_are_refused_with_a_reason(client):
    for r in (client.get("/samples"), client.post("/traverse", json={}),
              client.post("/interpolate", json={"a": {"index": 0}, "b": {"index": 1}})):
        assert r.status_code == 422 and "table" in r.json()["detail"]


def test_color_by_on_an_image_run_is_refused(tmp_path):
    run = tmp_path / "img"
    vaekit.train(run, preset="digits-mlp", **{"train.epochs": 1, "train.progress": False,
                                              "model.net.hidden": [16]})
    r = TestClient(create_app(run)).get("/map", params={"color_by": "x"})
    assert r.status_code == 422 and "images" in r.json()["detail"]
