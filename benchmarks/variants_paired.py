"""Pair two runs of variants.py made with the same command and seed (e.g. before and after a
refactor): the difference of every row's test ELBO and NLL, printed and saved.

    python variants_paired.py results/variants-5ep-before-refactor.json \
        results/variants-5ep-refactor.json results/variants-5ep-refactor-priors.json \
        --name variants-5ep-paired-refactor --note "..."

Files after the first are the "after" side; a later file's rows replace an earlier one's (a rerun of
some variants).
"""

from __future__ import annotations

import argparse
import json

from _common import save_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="results JSON of variants.py on the code before")
    ap.add_argument("after", nargs="+", help="results JSON(s) of variants.py on the code after")
    ap.add_argument("--name", default="variants-paired", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--note", default="", help="what the pairing shows, stored with the results")
    args = ap.parse_args()
    before = json.load(open(args.before))["results"]
    after: dict = {}
    for path in args.after:
        after.update(json.load(open(path))["results"])
    lines = ["| variant | test ELBO before | test ELBO after | difference | NLL before | NLL after "
             "| difference |", "|---|---|---|---|---|---|---|"]
    paired = {}
    for name, b in before.items():
        a = after[name]
        paired[name] = {"test_elbo_before": b["test_elbo"], "test_elbo_after": a["test_elbo"],
                        "test_elbo_diff": a["test_elbo"] - b["test_elbo"], "nll_before": b["nll"],
                        "nll_after": a["nll"], "nll_diff": a["nll"] - b["nll"]}
        d = paired[name]
        lines.append(f"| {name} | {b['test_elbo']:.4f} | {a['test_elbo']:.4f} | {d['test_elbo_diff']:+.4f} "
                     f"| {b['nll']:.3f} | {a['nll']:.3f} | {d['nll_diff']:+.3f} |")
    table = "\n".join(lines)
    print(table)
    save_result(args.name, {"inputs": [args.before, *args.after], "note": args.note, "paired": paired,
                            "table_markdown": table})


if __name__ == "__main__":
    main()
