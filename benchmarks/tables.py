"""Synthetic tables side by side: vaekit's table preset against SDV's TVAE, CTGAN and GaussianCopula
(PyPI sdv, their defaults), all fitted on the same training rows, scored on the same held-out rows.

Per table and method: SDMetrics' quality report as it computes it, and the fixed variant (every column
pair scored, numeric columns binned on the real rows' bins for both tables); machine-learning efficacy
(a gradient-boosted model trained on synthetic rows, tested on real held-out rows, against the same
model trained on the real training rows); privacy (SDMetrics' DCROverfittingProtection over --draws
subsample draws, mean and spread; the share of synthetic rows that copy a training row); fidelity
(rare training categories never generated, missing-value rates); training time and peak memory
(each method in its own process); held-out ELBO and importance-sampled NLL for vaekit. The real
training rows scored against the held-out rows are the ceiling row.

    pip install -e .[tables] sdv sdmetrics
    python benchmarks/tables.py --table wine
    python benchmarks/tables.py --table diamonds --rows 10000 --sdv-epochs 100
    python benchmarks/tables.py --markdown          # the README table from benchmarks/results/tables-*.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS, save_result

DIAMONDS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "diamonds.csv.gz"
# the prediction tasks of machine-learning efficacy: (target column, "regression" | "classification")
TASKS = {
    "diamonds": [("price", "regression"), ("cut", "classification")],
    "breast_cancer": [("target", "classification")],
    "wine": [("target", "classification")],
    "digits": [("target", "classification")],
}
METHODS = ("vaekit", "tvae", "ctgan", "gaussian_copula")


def load_table(name: str, rows: int | None, seed: int) -> pd.DataFrame:
    """The named table as a DataFrame (scikit-learn's are shipped; diamonds from ../shared/data)."""
    if name == "diamonds":
        frame = pd.read_csv(DIAMONDS).drop(columns="Unnamed: 0")
    else:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        frame = bunch.frame.copy()
        frame["target"] = frame["target"].map("c{}".format)  # a label, not a number
        if name == "digits":
            frame.columns = [c.replace("pixel_", "p") for c in frame.columns]
            frame = frame.astype({c: "int64" for c in frame.columns if c != "target"})
    if rows and rows < len(frame):
        frame = frame.sample(rows, random_state=seed)
    return frame.reset_index(drop=True)


def _fit_vaekit(train: pd.DataFrame, n: int, epochs: int | None, out: Path) -> pd.DataFrame:
    import vaekit
    from vaekit.api import sample_rows
    from vaekit.data.table import from_frame

    overrides = {"train.progress": False}
    if epochs:
        overrides["train.epochs"] = epochs
    # all the training rows the SDV synthesizers get, less the 10 % validation split (no test split)
    data = from_frame(train, "table", seed=0, valid_fraction=0.1, test_fraction=0.0)
    vaekit.train(out, preset="table", data=data, **overrides)
    return sample_rows(out, n, seed=0)


def _fit_sdv(kind: str, train: pd.DataFrame, n: int, epochs: int | None) -> pd.DataFrame:
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    metadata = Metadata.detect_from_dataframes({"table": train})
    if kind == "gaussian_copula":
        synth = GaussianCopulaSynthesizer(metadata)
    else:
        cls = TVAESynthesizer if kind == "tvae" else CTGANSynthesizer
        synth = cls(metadata, enable_gpu=False, **({"epochs": epochs} if epochs else {}))
    synth.fit({"table": train})
    rows = synth.sample(n)
    return rows["table"] if isinstance(rows, dict) else rows


def _run_method(method: str, train: pd.DataFrame, n: int, args: dict, out: str) -> None:
    """In a child process: fit, sample, and write the rows with the time and peak memory it took."""
    import torch

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    np.random.seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "vaekit":
            rows = _fit_vaekit(train, n, args["vaekit_epochs"], Path(out) / "run")
        else:
            rows = _fit_sdv(method, train, n, args["sdv_epochs"])
    seconds = time.perf_counter() - start
    rows.to_pickle(Path(out) / "rows.pkl")  # our own file, read back by the parent only
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (Path(out) / "cost.json").write_text(json.dumps({"train_s": seconds, "peak_mb": max(peak, base) / 1024,
                                                     "extra_mb": (peak - base) / 1024}))


def synthesize(method: str, train: pd.DataFrame, n: int, args: dict) -> tuple[pd.DataFrame, dict, Path]:
    out = Path(tempfile.mkdtemp(prefix=f"tables-{method}-"))
    p = mp.get_context("spawn").Process(target=_run_method, args=(method, train, n, args, str(out)))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"{method} failed (exit {p.exitcode})")
    return pd.read_pickle(out / "rows.pkl"), json.loads((out / "cost.json").read_text()), out


def _metadata(real: pd.DataFrame) -> dict:
    from sdv.metadata import Metadata

    return Metadata.detect_from_dataframes({"table": real}).to_dict()


def sdmetrics_quality(real: pd.DataFrame, synth: pd.DataFrame, metadata: dict) -> dict:
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synth, metadata["tables"]["table"], verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return {"overall": float(report.get_score()), "column_shapes": float(props["Column Shapes"]),
            "column_pair_trends": float(props["Column Pair Trends"])}


def _numeric(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].nunique() > 10]


def fixed_quality(real: pd.DataFrame, synth: pd.DataFrame, bins: int = 10) -> dict:
    """Column shapes as SDMetrics scores them, and every column pair's contingency similarity with numeric
    columns binned on the real rows' quantile bins for both tables."""
    from sdmetrics.column_pairs import ContingencySimilarity
    from sdmetrics.single_column import KSComplement, TVComplement

    numeric = _numeric(real)
    shapes = []
    for c in real.columns:
        metric = KSComplement if c in numeric else TVComplement
        shapes.append(metric.compute(real[c], synth[c]))
    binned_real, binned_synth = real.copy(), synth.copy()
    for c in numeric:
        edges = np.unique(np.nanquantile(real[c].astype(float), np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        binned_real[c] = pd.cut(real[c].astype(float), edges).astype(str)
        binned_synth[c] = pd.cut(synth[c].astype(float), edges).astype(str)
    for c in real.columns:
        binned_real[c] = binned_real[c].astype(str)
        binned_synth[c] = binned_synth[c].astype(str)
    cols = list(real.columns)
    pairs = [ContingencySimilarity.compute(binned_real[[a, b]], binned_synth[[a, b]])
             for i, a in enumerate(cols) for b in cols[i + 1 :]]
    shape, pair = float(np.mean(shapes)), float(np.mean(pairs)) if pairs else float("nan")
    return {"overall": (shape + pair) / 2, "column_shapes": shape, "column_pair_trends": pair,
            "pairs_scored": len(pairs)}


def ml_efficacy(train: pd.DataFrame, test: pd.DataFrame, tasks: list[tuple[str, str]]) -> dict:
    """Each task's score (R^2 or macro-F1) of a gradient-boosted model trained on ``train``, on ``test``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score

    out = {}
    for target, kind in tasks:
        x_tr, x_te = train.drop(columns=target), test.drop(columns=target)
        for c in x_tr.columns:
            if not pd.api.types.is_numeric_dtype(test[c]):
                cats = pd.CategoricalDtype(sorted(set(test[c].dropna().astype(str)) | set(
                    x_tr[c].dropna().astype(str))))
                x_tr[c], x_te[c] = x_tr[c].astype(str).astype(cats), x_te[c].astype(str).astype(cats)
        y_tr = train[target]
        if kind == "regression":
            model = HistGradientBoostingRegressor(random_state=0, categorical_features="from_dtype")
            model.fit(x_tr, y_tr.astype(float))
            out[f"{target}_r2"] = float(r2_score(test[target].astype(float), model.predict(x_te)))
        else:
            if y_tr.nunique() < 2:
                out[f"{target}_f1"] = 0.0
                continue
            model = HistGradientBoostingClassifier(random_state=0, categorical_features="from_dtype")
            model.fit(x_tr, y_tr.astype(str))
            pred = model.predict(x_te)
            out[f"{target}_f1"] = float(f1_score(test[target].astype(str), pred, average="macro"))
    return out


def privacy(train: pd.DataFrame, synth: pd.DataFrame, holdout: pd.DataFrame, metadata: dict,
            draws: int) -> dict:
    """DCROverfittingProtection over ``draws`` subsample draws (mean, std), and the share of synthetic
    rows identical to a training row."""
    from sdmetrics.single_table import DCROverfittingProtection

    rows = min(1000, len(synth) // 2, len(holdout))  # each draw subsamples without replacement
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(draws):
            np.random.seed(i)
            scores.append(DCROverfittingProtection.compute(train, synth, holdout, metadata, "table",
                                                           num_rows_subsample=rows, num_iterations=1))
    key = lambda f: f.astype(str).agg("|".join, axis=1)  # noqa: E731
    copies = float(key(synth).isin(set(key(train))).mean())
    return {"dcr_overfitting_protection": float(np.mean(scores)), "dcr_std": float(np.std(scores)),
            "dcr_draws": draws, "copy_share": copies}


def fidelity(train: pd.DataFrame, synth: pd.DataFrame) -> dict:
    """Rare training categories (< 1 % of rows) never generated, and the missing-rate error per column."""
    rare = never = 0
    for c in train.columns:
        if not pd.api.types.is_numeric_dtype(train[c]) or train[c].nunique() <= 10:
            share = train[c].astype(str).value_counts(normalize=True)
            for label in share[share < 0.01].index:
                rare += 1
                never += int(label not in set(synth[c].astype(str)))
    missing_error = float(np.abs(train.isna().mean() - synth.isna().mean()).max())
    return {"rare_categories": rare, "rare_never_generated": never, "max_missing_rate_error": missing_error}


def vaekit_heldout(run: Path, holdout: pd.DataFrame) -> dict:
    """Held-out ELBO and importance-sampled NLL in nats per row (K = 100)."""
    import torch

    import vaekit
    from vaekit.data.table_codec import encode
    from vaekit.runs.folder import read_config

    columns = read_config(run)[1].schema.columns
    model = vaekit.load(run)
    x = torch.from_numpy(encode(holdout, columns))
    torch.manual_seed(0)
    nll = float(-model.log_likelihood(x, k=100).mean())
    return {"heldout_elbo": float(model.elbo(x).mean()), "heldout_nll": nll}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", choices=list(TASKS), default="wine")
    p.add_argument("--rows", type=int, default=None, help="subsample the table to this many rows")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="methods to run; the others' rows are kept from the saved result of the same table")
    p.add_argument("--sdv-epochs", type=int, default=None, help="TVAE / CTGAN epochs (default: theirs, 300)")
    p.add_argument("--vaekit-epochs", type=int, default=None, help="default: the table preset's")
    p.add_argument("--draws", type=int, default=10, help="DCR subsample draws")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--markdown", action="store_true", help="print the README table from saved results")
    a = p.parse_args()
    if a.markdown:
        print(markdown())
        return
    frame = load_table(a.table, a.rows, 0)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frame))
    cut = int(0.8 * len(frame))
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    holdout = frame.iloc[order[cut:]].reset_index(drop=True)
    metadata = _metadata(frame)
    tasks = TASKS[a.table]
    saved = RESULTS / f"tables-{a.table}.json"
    doc = json.loads(saved.read_text()) if saved.is_file() else {}
    earlier = doc["results"] if doc.get("rows") == len(frame) else {}  # the same table, the same rows
    results: dict[str, Any] = {**earlier, "real (ceiling)": {
        "sdmetrics": sdmetrics_quality(train, holdout, metadata), "fixed": fixed_quality(train, holdout),
        "ml_efficacy": ml_efficacy(train, holdout, tasks),
    }}
    print(a.table, len(train), "training rows;", "ceiling", results["real (ceiling)"])
    args = {"threads": a.threads, "sdv_epochs": a.sdv_epochs, "vaekit_epochs": a.vaekit_epochs}
    for method in a.methods.split(","):
        synth, cost, out = synthesize(method, train, len(train), args)
        synth = synth[list(frame.columns)]
        row = {"cost": cost, "sdmetrics": sdmetrics_quality(train, synth, metadata),
               "fixed": fixed_quality(train, synth),
               "ml_efficacy": ml_efficacy(synth, holdout, tasks),
               "privacy": privacy(train, synth, holdout, metadata, a.draws),
               "fidelity": fidelity(train, synth)}
        if method == "vaekit":
            row["likelihood"] = vaekit_heldout(out / "run", holdout)
        results[method] = row
        print(method, json.dumps(row))
        save_result(f"tables-{a.table}", {"table": a.table, "rows": len(frame), "train_rows": len(train),
                                          "holdout_rows": len(holdout), "sdv_epochs": a.sdv_epochs or 300,
                                          "vaekit_epochs": a.vaekit_epochs, "results": results})


def markdown() -> str:
    """One row per table and method from benchmarks/results/tables-*.json."""
    lines = ["| table | method | quality (fixed) | quality (SDMetrics) | ML efficacy | DCR protection | "
             "copies | train s |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("tables-*.json")):
        doc = json.loads(path.read_text())
        for method, r in doc["results"].items():
            ml = ", ".join(f"{k} {v:.3f}" for k, v in r["ml_efficacy"].items())
            pr = r.get("privacy")
            dcr = f"{pr['dcr_overfitting_protection']:.3f} ± {pr['dcr_std']:.3f}" if pr else ""
            copies = f"{pr['copy_share']:.3f}" if pr else ""
            secs = f"{r['cost']['train_s']:.1f}" if "cost" in r else ""
            lines.append(f"| {doc['table']} ({doc['train_rows']:,} rows) | {method} | "
                         f"{r['fixed']['overall']:.3f} | {r['sdmetrics']['overall']:.3f} | {ml} | {dcr} | "
                         f"{copies} | {secs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
