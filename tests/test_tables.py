"""Tables: column types inferred from a CSV the test writes, the encoding's round trip, the per-column
likelihood against a hand computation and a normalization integral, and train -> sample -> CSV."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pd = pytest.importorskip("pandas")

from vaekit.cli import main as cli_main  # noqa: E402
from vaekit.data import load_dataset  # noqa: E402
from vaekit.data.table import from_frame  # noqa: E402
from vaekit.data.table_codec import decode, encode  # noqa: E402
from vaekit.errors import DataError  # noqa: E402
from vaekit.parts.likelihoods.table import TableLikelihood  # noqa: E402
from vaekit.schema import Column, DataSchema  # noqa: E402


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Every column type, missing cells, an index, a constant and a category seen in one row only."""
    rng = np.random.default_rng(seed)
    size = rng.choice(["S", "M", "L"], n)
    price = np.where(size == "L", 50.0, 10.0) + rng.normal(0, 1, n).round(2)
    rare = np.array(["common"] * n, dtype=object)
    rare[7] = "unique"
    frame = pd.DataFrame({
        "id": np.arange(n),
        "price": price,
        "count": rng.integers(0, 20, n),
        "size": size,
        "member": rng.choice(["yes", "no"], n),
        "when": pd.date_range("2024-01-01", periods=n, freq="D").astype(str),
        "country": "FR",
        "shop": rare,
    })
    frame.loc[rng.choice(n, 40, replace=False), "price"] = np.nan
    frame.loc[rng.choice(n, 30, replace=False), "size"] = None
    return frame


@pytest.fixture(scope="module")
def table():
    return from_frame(_frame(), columns={"size": {"type": "ordinal", "order": ["S", "M", "L"]}})


def test_types_are_inferred_the_index_dropped_and_overrides_apply(table):
    types = {c.name: c.type for c in table.columns}
    assert types == {"price": "continuous", "count": "integer", "size": "ordinal", "member": "boolean",
                     "when": "datetime", "country": "constant", "shop": "categorical"}
    assert table.dropped == ("id",)
    by = {c.name: c for c in table.columns}
    assert by["size"].categories == ("S", "M", "L") and by["size"].missing
    assert by["member"].categories == ("no", "yes") and not by["member"].missing
    assert by["shop"].categories == ("common", "unique")  # a category of one row is kept
    assert by["price"].missing and by["price"].step == 0.01 and len(by["price"].modes) >= 2
    assert table.schema.event_shape == (sum(c.width for c in table.columns),)


def test_encoding_round_trips_values_labels_missing_cells_and_dtypes(table):
    frame = _frame().drop(columns="id")
    back = decode(encode(frame, table.columns), table.columns)
    assert list(back.columns) == list(frame.columns)
    np.testing.assert_allclose(back["price"], frame["price"], atol=1e-9)  # NaN where NaN
    assert back["count"].dtype == frame["count"].dtype and (back["count"] == frame["count"]).all()
    assert back["size"].isna().equals(frame["size"].isna())
    assert (back["size"].dropna() == frame["size"].dropna()).all()
    assert (back[["member", "when", "country", "shop"]].astype(str) == frame[
        ["member", "when", "country", "shop"]].astype(str)).all().all()


def _loop_log_prob(columns: tuple[Column, ...], params: torch.Tensor, x: torch.Tensor,
                   log_scale: torch.Tensor) -> torch.Tensor:
    """The per-column log-likelihood written out column by column, for one row at a time."""
    out = []
    for p, row in zip(params, x, strict=True):
        total, xo, po, numeric = 0.0, 0, 0, 0
        for c in columns:
            w = c.value_width
            block = row[xo : xo + w]
            absent = c.missing and row[xo + w] > 0.5
            if c.discrete:
                if not absent:
                    total += float(F.log_softmax(p[po : po + w], -1)[int(block.argmax())])
                po += w
            elif c.numeric:
                m = len(c.modes)
                if not absent:
                    k = int(block[:m].argmax())
                    s = math.exp(max(float(log_scale[numeric, k]), math.log(1e-3)))
                    a, loc = float(block[m]), float(p[po + m + k])
                    total += float(F.log_softmax(p[po : po + m], -1)[k])
                    total += -0.5 * ((a - loc) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
                    total -= math.log(4 * c.modes[k][1])
                po += 2 * m
                numeric += 1
            if c.missing:
                logit = float(p[po])
                total += logit * float(absent) - math.log1p(math.exp(logit))
                po += 1
            xo += c.width
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_log_prob_equals_the_column_by_column_sum(table):
    torch.manual_seed(0)
    lik = TableLikelihood(table.schema)
    with torch.no_grad():
        lik.log_scale.normal_(-1, 0.5)
    x = table.train.x[:16]
    params = torch.randn(16, lik.layout.head)
    got = lik(params).log_prob(x).double()
    want = _loop_log_prob(table.columns, params, x, lik.log_scale.detach())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_a_numeric_head_is_a_density_of_the_value_itself():
    """One numeric column: integrating exp(log p) over the raw value v (both modes) gives 1, which only
    holds with the Jacobian log(4 std_m) of alpha = (v - mean_m) / (4 std_m)."""
    col = Column("v", "continuous", modes=((0.0, 2.0), (10.0, 0.5)), bounds=(-50.0, 50.0))
    schema = DataSchema("table", (3,), columns=(col,))
    lik = TableLikelihood(schema)
    params = torch.tensor([[0.3, -0.2, 0.1, -0.4]])
    v = np.linspace(-40, 40, 80001)
    frame = pd.DataFrame({"v": v})
    encoded = torch.from_numpy(encode(frame, (col,)))
    # every value in both modes: the joint p(m, v) summed over m is the marginal density of v
    total = 0.0
    for m in range(2):
        x = encoded.clone()
        x[:, :2] = F.one_hot(torch.full((len(v),), m), 2).float()
        x[:, 2] = torch.from_numpy((v - col.modes[m][0]) / (4 * col.modes[m][1])).float()
        with torch.no_grad():
            total += np.trapezoid(lik(params.expand(len(v), -1)).log_prob(x).exp().numpy(), v)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_samples_are_valid_encoded_rows(table):
    torch.manual_seed(1)
    lik = TableLikelihood(table.schema)
    rows = lik(torch.randn(500, lik.layout.head)).sample()
    offsets = table.schema.column_offsets()
    for c, at in zip(table.columns, offsets, strict=True):
        block = rows[:, at : at + c.value_width]
        absent = rows[:, at + c.value_width] if c.missing else torch.zeros(len(rows))
        onehot = block[:, : len(c.categories) or len(c.modes)]
        if c.value_width:
            assert torch.equal(onehot.sum(1), 1 - absent)  # one category / mode, none when missing
    assert decode(rows.numpy(), table.columns)["shop"].isin(["common", "unique"]).all()


def _write(tmp_path, frame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path


def test_train_then_sample_writes_rows_like_the_table_and_seeds_reproduce(tmp_path):
    path = _write(tmp_path, _frame(600))
    run = tmp_path / "run"
    assert cli_main(["--quiet", "train", "--preset", "table", "--data", f"csv:{path}", "--out", str(run),
                     "--train.epochs", "3", "--train.batch_size", "100", "--train.progress", "false"]) == 0
    assert list(pd.read_csv(run / "samples.csv").columns) == [c for c in _frame().columns if c != "id"]
    assert "## Synthetic rows" in (run / "report.md").read_text()
    a, b, c = (tmp_path / f"{n}.csv" for n in "abc")
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        args = ["--quiet", "sample", str(run), "-n", "300", "--seed", str(seed), "-o", str(out)]
        assert cli_main(args) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    rows, real = pd.read_csv(a), pd.read_csv(path)
    assert list(rows.columns) == [c for c in real.columns if c != "id"]
    assert rows["size"].dropna().isin(["S", "M", "L"]).all() and rows["member"].isin(["yes", "no"]).all()
    assert (rows["country"] == "FR").all() and rows["count"].dtype == np.int64
    assert rows["count"].between(0, 19).all() and rows["price"].dropna().between(*_range(real["price"])).all()
    assert rows["price"].isna().any() and not rows["price"].isna().all()


def _range(s):
    return float(s.min()), float(s.max())


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("a,b\n", "no data rows"),
    ("a,b\n1,\n2,\n3,\n", "only missing values"),
])
def test_bad_tables_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(f"csv:{path}")


def test_too_many_categories_and_unknown_override_names_are_refused(tmp_path):
    ids = pd.DataFrame({"user": [f"u{i}" for i in range(5000)], "v": np.arange(5000) % 7})
    with pytest.raises(DataError, match="5,000 distinct labels"):
        from_frame(ids)
    with pytest.raises(DataError, match="does not have: nope"):
        from_frame(ids, columns={"nope": "drop"})
    assert [c.name for c in from_frame(ids, columns={"user": "drop"}).columns] == ["v"]


def test_a_table_with_an_image_likelihood_is_refused_with_the_fix(tmp_path, capsys):
    path = _write(tmp_path, _frame(100))
    code = cli_main(["train", "--data", f"csv:{path}", "--out", str(tmp_path / "r"), "--train.epochs", "1"])
    assert code == 2 and "--preset table" in capsys.readouterr().err


def test_per_dimension_terms_sum_to_the_log_prob_and_split_by_column(table):
    torch.manual_seed(2)
    lik = TableLikelihood(table.schema)
    px = lik(torch.randn(8, lik.layout.head))
    x = table.train.x[:8]
    per = px.log_prob_per_dim(x)
    torch.testing.assert_close(per.sum(-1), px.log_prob(x))
    at = table.schema.column_offsets()[list(c.name for c in table.columns).index("size")]
    size = next(c for c in table.columns if c.name == "size")
    block = [c.name for c in table.columns if c.value_width].index("size")  # after price's and count's modes
    logits = px.cat_logits[:, block, :3]
    code = x[:, at : at + 3].argmax(1)
    present = x[:, at + 3] == 0
    want = torch.where(present, F.log_softmax(logits, -1).gather(1, code[:, None])[:, 0], 0.0)
    assert size.value_width == 3 and torch.allclose(per[:, at : at + 3].sum(1), want, atol=1e-5)


def _correlated(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """a ~ N(0, 1); b = 3a + small noise; kind says a's sign: every column predicts the others."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n).round(3)
    return pd.DataFrame({"a": a, "b": (3 * a + rng.normal(0, 0.1, n)).round(3),
                         "kind": np.where(a > 0, "up", "down"), "tag": rng.choice(["x", "y", "z"], n)})


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("table")
    path = tmp / "c.csv"
    _correlated().to_csv(path, index=False)
    run = tmp / "run"
    assert cli_main(["--quiet", "train", "--preset", "table", "--data", f"csv:{path}", "--out", str(run),
                     "--train.epochs", "15", "--train.batch_size", "25", "--model.latent_dim", "4",
                     "--train.progress", "false"]) == 0
    return run


def test_conditional_sampling_keeps_its_condition_and_matches_the_models_conditional(table_run, tmp_path):
    """Every row keeps the condition, and the other columns follow the model's own p(x_mis | x_obs): the
    share of rows with a > 0 matches rejection sampling from the unconditional model (which the
    Metropolis-within-Gibbs chain targets exactly), well above the unconditional share."""
    from vaekit.api import sample_rows

    out = tmp_path / "up.csv"
    assert cli_main(["--quiet", "sample", str(table_run), "-n", "1000", "--where", "kind=up,tag=z",
                     "-o", str(out)]) == 0
    rows = pd.read_csv(out)
    assert len(rows) == 1000 and (rows["kind"] == "up").all() and (rows["tag"] == "z").all()
    free = sample_rows(table_run, 12_000, seed=3)
    accepted = free[(free["kind"] == "up") & (free["tag"] == "z")]
    assert len(accepted) > 1000
    want, got = (accepted["a"] > 0).mean(), (rows["a"] > 0).mean()
    assert abs(got - want) < 0.05 and got > (free["a"] > 0).mean() + 0.2
    assert abs(rows["b"].mean() - accepted["b"].mean()) < 0.15


@pytest.mark.parametrize("where, message", [
    ("nope=1", "not a column"), ("kind=sideways", "not a category"), ("a=high", "is numeric"),
    ("kind", "not column=value"),
])
def test_bad_where_is_refused_with_the_choices(table_run, tmp_path, capsys, where, message):
    code = cli_main(["sample", str(table_run), "-n", "5", "--where", where, "-o", str(tmp_path / "x.csv")])
    assert code == 2 and message in capsys.readouterr().err


def test_impute_fills_gaps_from_the_other_cells_and_keeps_given_cells(table_run, tmp_path):
    truth = _correlated(300, seed=5)
    gaps = truth.copy()
    rng = np.random.default_rng(0)
    hide_a, hide_kind = rng.choice(300, 60, replace=False), rng.choice(300, 60, replace=False)
    gaps.loc[hide_a, "a"] = np.nan
    gaps.loc[hide_kind, "kind"] = None
    src, out = tmp_path / "gaps.csv", tmp_path / "filled.csv"
    gaps.to_csv(src, index=False)
    assert cli_main(["--quiet", "impute", str(table_run), "--data", f"csv:{src}", "-o", str(out)]) == 0
    filled = pd.read_csv(out)
    assert filled.notna().all().all() and list(filled.columns) == list(truth.columns)
    given = gaps.notna()
    assert (filled[given] == gaps[given]).sum().sum() == given.sum().sum()  # given cells untouched
    err = np.abs(filled.loc[hide_a, "a"] - truth.loc[hide_a, "a"]).mean()
    assert err < 0.4 * np.abs(truth["a"].mean() - truth.loc[hide_a, "a"]).mean()  # b tells a (0.26 measured)
    assert (filled.loc[hide_kind, "kind"] == truth.loc[hide_kind, "kind"]).mean() > 0.9
    assert cli_main(["impute", str(table_run), "--data", f"csv:{src}", "-o", str(src)]) == 2  # no overwrite


def test_column_overrides_from_the_command_line_make_an_ordinal_and_drop_a_column(tmp_path):
    path = _write(tmp_path, _frame(200))
    run = tmp_path / "run"
    assert cli_main(["--quiet", "train", "--preset", "table", "--data", f"csv:{path}", "--out", str(run),
                     "--data.columns.size.order", "[L, M, S]", "--data.columns.shop", "drop",
                     "--train.epochs", "1", "--train.progress", "false"]) == 0
    from vaekit.runs.folder import read_config

    columns = {c.name: c for c in read_config(run)[1].schema.columns}
    assert columns["size"].type == "ordinal" and columns["size"].categories == ("L", "M", "S")
    assert "shop" not in columns and "id" not in columns
