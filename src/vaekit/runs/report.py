"""report.md and evaluation.json: the Markdown report is re-rendered from the files in the run folder
(config, metrics, evaluation, pictures) whenever they change."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config import PartConfig, describe
from vaekit.nets import feature_map_size
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import atomic_write_text
from vaekit.runs.metrics import read_metrics, train_terms

EVALUATION = "evaluation.json"
# the report's evaluation table, in this order (nats per example, except bpd, counts and seed)
EVALUATION_KEYS = ("elbo", "recon", "kl", "nll", "nll_sem", "bpd", "active_units", "K", "n", "seed")
REPORT_EPOCHS = 12  # rows of the report's per-epoch table (metrics.jsonl holds them all)
EVALUATION_PLOTS = {
    "evaluation-iwae.png": "IWAE bound against k",
    "evaluation-kl.png": "KL per latent dimension",
}


def record_evaluation(out: Path, split: str, metrics: dict[str, Any]) -> None:
    """Merge one split's numbers into evaluation.json (the report reads it): keys already there and
    not in ``metrics`` (e.g. the NLL and IWAE bounds 'vaekit evaluate' added) are kept."""
    path = Path(out) / EVALUATION
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc[split] = {**doc.get(split, {}), **metrics}
    atomic_write_text(path, json.dumps(doc, indent=2))


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "n/a" if v is None else str(v)


def _evaluation_lines(evaluation: dict[str, Any]) -> list[str]:
    """The evaluation table, then per split its IWAE bounds, bits/dim convention and notes."""
    keys = [k for k in EVALUATION_KEYS if any(k in v for v in evaluation.values())]
    lines = ["## Final evaluation", "", "| split | " + " | ".join(keys) + " |"]
    lines.append("|---" * (len(keys) + 1) + "|")
    for split, vals in evaluation.items():
        lines.append(f"| {split} | " + " | ".join(_fmt(vals.get(k, "")) for k in keys) + " |")
    lines.append("")
    for split, vals in evaluation.items():
        if "iwae_bounds" in vals:
            bounds = ", ".join(f"L_{k} = {v:.3f}" for k, v in vals["iwae_bounds"].items())
            lines += [f"IWAE bounds on {split} from the same K = {vals['K']} samples (seed {vals['seed']}): "
                      f"{bounds}; nll = -L_K.", ""]
        if vals.get("bpd_convention"):
            lines += [f"Bits/dim on {split}: {vals['bpd_convention']}.", ""]
        for key, text in vals.get("notes", {}).items():
            lines += [f"Note ({split}, {key}): {text}.", ""]
    return lines


def _layer_sizes(m: PartConfig, event_shape: tuple[int, ...]) -> list[str]:
    """What each stochastic layer of a hierarchical model holds, top layer first."""
    sizes = [f"{d} units" for d in getattr(m, "latent_dims", [])]
    if getattr(m, "latent_channels", []):
        positions = math.prod(feature_map_size(event_shape, m.net.channels))
        sizes += [f"{c} latent maps ({c * positions} units)" for c in m.latent_channels]
    return sizes


def _layer_kl_lines(evaluation: dict[str, Any], sizes: list[str]) -> list[str]:
    """A table of KL per stochastic layer for the splits that have one (hierarchical models)."""
    rows = {split: v["kl_layers"] for split, v in evaluation.items() if v.get("kl_layers")}
    if not rows:
        return []
    n = len(sizes)
    heads = [f"z_{n - i}{' (top)' if i == 0 else ''}, {size}" for i, size in enumerate(sizes)]
    lines = ["## KL per stochastic layer", "", "| split | " + " | ".join(heads) + " |"]
    lines.append("|---" * (n + 1) + "|")
    lines += [f"| {split} | " + " | ".join(f"{v:.3f}" for v in kls) + " |" for split, kls in rows.items()]
    return [*lines, ""]


def epochs_to_show(records: list[dict[str, Any]], n: int = REPORT_EPOCHS) -> list[dict[str, Any]]:
    """At most n epoch records for the report: the first, the last, the best validation ELBO, and
    evenly spaced epochs between, in epoch order."""
    if len(records) <= n:
        return records
    best = max(range(len(records)), key=lambda i: records[i]["elbo"])
    keep = set(np.linspace(0, len(records) - 1, n - 1).round().astype(int).tolist()) | {best}
    return [records[i] for i in sorted(keep)]


def _policy_lines(out: Path) -> list[str]:
    """The speed policy each training session used (policy.json), one table row per session."""
    try:
        sessions = json.loads((out / rd.POLICY).read_text())["sessions"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    lines = ["## Speed policy", "",
             "| from step | device | threads | precision | compiled | why | fused Adam | step | why |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sessions:
        lines.append(
            f"| {r.get('started_at_step', '?')} | {r.get('device', '?')} | {r.get('threads', '?')} | "
            f"{r.get('precision', '?')} | {'yes' if r.get('compiled') else 'no'} | "
            f"{r.get('compile_reason', '')} | {'yes' if r.get('fused_optimizer') else 'no'} | "
            f"{'CUDA graph' if r.get('graph') else 'eager'} | {r.get('graph_reason', '')} |"
        )
    return [*lines, ""]


def _cell(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def training_table(records: list[dict[str, Any]]) -> list[str]:
    """The per-epoch table: every logged training term (loss, elbo, recon, kl, ...), the validation
    ELBO and its parts, and the seconds the epoch's steps took."""
    terms = train_terms(records)
    head = ["epoch", *(f"train {t}" for t in terms), "valid ELBO", "valid recon", "valid KL", "train seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in epochs_to_show(records):
        cells = [str(r["epoch"]), *(_cell(r.get(f"train_{t}")) for t in terms),
                 *(_cell(r.get(k)) for k in ("elbo", "recon", "kl")), _cell(r.get("train_time_s"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_report(out: Path) -> Path:
    """Write report.md from config.json, metrics.jsonl, evaluation.json and the pictures present."""
    out = Path(out)
    cfg, info = rd.read_config(out)
    records = read_metrics(out / rd.METRICS) if (out / rd.METRICS).is_file() else []
    evaluation = json.loads((out / EVALUATION).read_text()) if (out / EVALUATION).is_file() else {}
    m = cfg.model
    shape = info.schema.event_shape
    lines = [
        f"# vaekit run: {out.name}",
        "",
        f"Data **{info.name}** ({' x '.join(map(str, shape))}, binarize={cfg.data.binarize}); "
        f"model: {describe(m)}; objective {cfg.objective.name} (beta={cfg.objective.beta}, "
        f"k={cfg.objective.samples}); {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
        f"lr {cfg.train.lr}, seed {cfg.train.seed}.",
        "",
        "All numbers are in nats per example; the ELBO is a lower bound on log p(x).",
        "",
    ]
    if evaluation:
        lines += _evaluation_lines(evaluation)
    lines += _layer_kl_lines(evaluation, _layer_sizes(m, shape))
    if records:
        last = records[-1]
        lines += [
            "## Training",
            "",
            f"{last['epoch']} epochs, {last['step']} steps; last validation ELBO {last['elbo']:.3f} "
            f"(recon {last['recon']:.3f}, KL {last['kl']:.3f}); best validation ELBO "
            f"{max(r['elbo'] for r in records):.3f}.",
            "",
            *training_table(records),
        ]
        if len(records) > REPORT_EPOCHS:
            lines += ["", f"{REPORT_EPOCHS} of {len(records)} epochs shown (the first, the best, the last "
                      "and evenly spaced ones between); metrics.jsonl holds every epoch."]
        lines.append("")
    lines += _policy_lines(out)
    for title, name in (
        ("Learning curves", "curves.png"),
        ("Samples from the prior", "samples.png"),
        ("Reconstructions (odd rows: test data, even rows: reconstruction)", "reconstructions.png"),
    ):
        if (out / name).is_file():
            lines += [f"## {title}", "", f"![{title}]({name})", ""]
    if (out / "samples.csv").is_file():
        lines += ["## Synthetic rows", "", *_first_rows(out / "samples.csv"), "",
                  "samples.csv: rows drawn from the model (`vaekit sample RUN -n N -o rows.csv` for more)",
                  ""]
    for name in sorted(out.glob("evaluation-*.png")):
        title = EVALUATION_PLOTS.get(name.name, name.stem)
        lines += [f"## {title}", "", f"![{title}]({name.name})", ""]
    path = out / rd.REPORT
    atomic_write_text(path, "\n".join(lines))
    return path


def _first_rows(path: Path, n: int = 5) -> list[str]:
    """The first rows of a CSV as a Markdown table (csv module: the report needs no pandas)."""
    import csv

    with path.open(newline="") as f:
        rows = [r for _, r in zip(range(n + 1), csv.reader(f), strict=False)]
    if not rows:
        return []
    head, body = rows[0], rows[1:]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in body)]
