"""Command line: ``vaekit train | resume | evaluate | sample | impute | reconstruct | encode | score |
denoise | complete | interpolate | traverse | serve``.

Thin by design: it parses arguments, calls the library and turns ``VaekitError`` into a short
message (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any

from vaekit.errors import ConfigError, DataError, VaekitError


def _field_help(cls: type) -> dict[str, str]:
    """The trailing comment of each field in a config dataclass's source (and its bases'): its help."""
    out: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        for line in inspect.getsource(klass).splitlines():
            m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def _config_options(cls: type, prefix: str) -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) of every option under a config class. A part section gives its
    name (key ``SECTION.name``) and the options of every registered part of its kind, each key once,
    saying which parts take it."""
    from vaekit import registry
    from vaekit.config import PartConfig

    hints, helps = typing.get_type_hints(cls), _field_help(cls)
    out: list[tuple[str, str, Any]] = []
    for f in dataclasses.fields(cls):
        key, kind = prefix + f.name, f.metadata.get("part")
        if kind:
            names = registry.names(kind)
            out.append((key + ".name", f"{helps.get(f.name, kind)}; choices: {' | '.join(names)}",
                        f.default_factory().name))
            options: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (help, {part taking it: default})
            for name in names:
                for sub, help_, value in _config_options(registry.lookup(kind, name).Config, key + "."):
                    options.setdefault(sub, (help_, {}))[1][name] = value
            for sub, (help_, defaults) in options.items():
                direct = sub.count(".") == key.count(".") + 1
                value = next(iter(defaults.values())) if len(set(map(repr, defaults.values()))) == 1 else \
                    "; ".join(f"{v} ({n})" for n, v in defaults.items())
                out.append((sub, f"{help_} [{', '.join(defaults)}]" if direct else help_, value))
        elif f.name == "name" and issubclass(cls, PartConfig):
            continue  # the section's own name: given above, with the choices
        elif dataclasses.is_dataclass(hints[f.name]):
            out += _config_options(hints[f.name], key + ".")
        else:
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((key, helps.get(f.name, ""), value))
    return out


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One --SECTION.KEY option per config key (a part's name also as --SECTION: '--model.prior vamp')."""
    from vaekit.config import Config

    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, help_, value in _config_options(Config, ""):
        section = key.rsplit(".", 1)[0] if "." in key else "run"
        if key.endswith(".name") and key.count(".") > 1:
            section = key.rsplit(".", 2)[0]
        if section not in groups:
            groups[section] = p.add_argument_group(f"{section} options")
        flags = [f"--{key}"]
        if key.endswith(".name") and key not in ("data.name", "objective.name"):
            flags.append(f"--{key[: -len('.name')]}")
        shown = "" if value is None else f" (default: {value})"
        groups[section].add_argument(*flags, dest=key, default=argparse.SUPPRESS, metavar="V",
                                     help=help_ + shown)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except where there is none to show (required, None, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or any(action.default is d for d in (None, False, argparse.SUPPRESS)):
            return action.help
        return super()._get_help_string(action)


QUIET_HELP = ("print only errors and the results asked for (evaluate's numbers): no progress, epoch lines, "
              "banners or notices")


def _say(ns: argparse.Namespace, message: str) -> None:
    """A confirmation on stdout ("... written to ..."), left out under --quiet."""
    if not ns.quiet:
        print(message)


def build_parser() -> argparse.ArgumentParser:
    from vaekit.config import DEFAULT_PRESET, presets

    p = argparse.ArgumentParser(
        prog="vaekit",
        description="Train, evaluate and use variational autoencoders.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a VAE into a run folder",
        description="Train a VAE. Options are the preset/config file's values overridden by "
        "dotted keys, e.g. --data mnist --model.latent_dim 16 --train.epochs 5. With neither "
        f"--preset nor --config the default preset {DEFAULT_PRESET} is used.",
        formatter_class=_HelpFormatter,
    )
    src = t.add_mutually_exclusive_group()
    src.add_argument("--config", help="YAML/JSON config file (a run's config.json works too)")
    src.add_argument("--preset", help=f"a ready config (default: {DEFAULT_PRESET}): {', '.join(presets())}")
    t.add_argument("--out", help="run folder to create (required unless --print-config)")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved config (preset/file + overrides) as JSON and exit")
    t.add_argument("--data", dest="data.name", default=argparse.SUPPRESS, metavar="SPEC",
                   help="short for --data.name")
    _add_config_options(t)

    r = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint",
                       description="Continue an interrupted run exactly where its last checkpoint "
                       "stopped (bitwise on CPU); a complete run is left as it is.",
                       formatter_class=_HelpFormatter)
    r.add_argument("run_dir", help="the run folder given as --out to 'vaekit train'")

    e = sub.add_parser("evaluate", help="ELBO, importance-sampled NLL, bits/dim, IWAE bounds, latent use",
                       description="Evaluate a run on a split (nats per example); the numbers go into "
                       "the run's evaluation.json and report.md with two figures.",
                       formatter_class=_HelpFormatter)
    e.add_argument("run_dir", help="the run folder to evaluate")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"],
                   help="the split to evaluate")
    e.add_argument("--examples", type=int, default=None, metavar="N",
                   help="evaluate only the first N examples of the split (default: all)")
    e.add_argument("--nll-samples", type=int, default=1000, metavar="K",
                   help="importance samples per example for -log p(x) (5000 to compare with papers)")
    e.add_argument("--batch-size", type=int, default=None,
                   help="examples per forward call (default: fill about 1024 rows on a CPU, 32768 on a GPU)")
    e.add_argument("--sample-chunk", type=int, default=None,
                   help="samples per forward call (default: as many as fit those rows, at most K)")
    e.add_argument("--seed", type=int, default=0,
                   help="seed of the posterior samples (same seed, same numbers for any chunk sizes)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("sample", help="draw samples from the model's prior",
                       description="Draw samples z ~ p(z) and decode them: a .png grid (images) or a "
                       ".npy array; for a table run, rows drawn from p(x|z) as .csv / .parquet with the "
                       "training columns (--where fixes some columns).", formatter_class=_HelpFormatter)
    s.add_argument("run_dir", help="the trained run folder")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("-o", "--output", required=True, help=".png grid or .npy array to write")
    s.add_argument("--seed", type=int, default=0, help="seed of the prior draws (same seed, same samples)")
    s.add_argument("--label", type=int, default=None, help="class to sample (conditional models)")
    s.add_argument("--draw", action="store_true",
                   help="draw x ~ p(x|z) instead of the likelihood mean (table rows are always drawn)")
    s.add_argument("--where", default=None, metavar="COL=VALUE,...",
                   help="table runs: fix these columns and draw the others given them (no rejection)")

    im = sub.add_parser("impute", help="fill the empty cells of a table from the model",
                        description="Fill every empty cell of a table with its most likely value given the "
                        "row's other cells, p(x_mis | x_obs) under a table run; given cells are kept.",
                        formatter_class=_HelpFormatter)
    im.add_argument("run_dir", help="the trained table run folder")
    im.add_argument("--data", required=True, help="csv:PATH or parquet:PATH, the table with gaps")
    im.add_argument("-o", "--output", required=True, help=".csv or .parquet file to write")
    im.add_argument("--method", default="importance", choices=["importance", "mwg", "pseudo-gibbs"],
                    help="how p(x_mis | x_obs) is computed (see vaekit complete)")
    im.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")

    c = sub.add_parser("reconstruct", help="write originals next to their reconstructions",
                       description="Encode the first N examples of a split and decode their posterior "
                       "means: a .png with originals and reconstructions in alternate rows, or a .npy "
                       "array [N, 2, ...].", formatter_class=_HelpFormatter)
    c.add_argument("run_dir", help="the trained run folder")
    c.add_argument("-o", "--output", required=True, help=".png grid or .npy array to write")
    c.add_argument("-n", type=int, default=32, help="number of examples")
    c.add_argument("--split", default="test", choices=["train", "valid", "test"],
                   help="the split the examples come from")

    n = sub.add_parser("encode", help="posterior means, one row per example, as .npy",
                       description="Write the posterior means E_q[z|x] of a split, one row per example, "
                       "as a .npy array (embeddings).", formatter_class=_HelpFormatter)
    n.add_argument("run_dir", help="the trained run folder")
    n.add_argument("--data", default=None, help="data spec (default: the run's data set)")
    n.add_argument("--split", default="test", choices=["train", "valid", "test"], help="the split to encode")
    n.add_argument("-o", "--output", required=True, help=".npy file to write")
    n.add_argument("--batch-size", type=int, default=1000, help="examples per forward call")

    sc = sub.add_parser("score", help="per-example anomaly scores (nats) as CSV, with AUROC when labelled",
                        description="Score each example of a split for anomaly (higher = more anomalous): "
                        "-ELBO, importance-sampled -log p(x), the input-complexity corrected score and the "
                        "density of the posterior mean under a mixture fitted to the training split's codes. "
                        "With anomaly labels print AUROC / AP / FPR@95 and write a ROC + histogram PNG "
                        "beside the CSV. --fpr calibrates a threshold on the (normal) validation split.",
                        formatter_class=_HelpFormatter)
    sc.add_argument("run_dir", help="the trained run folder")
    sc.add_argument("--data", default=None, help="data spec (default: the run's data set, every class)")
    sc.add_argument("--split", default="test", choices=["train", "valid", "test"], help="the split to score")
    sc.add_argument("--anomaly-classes", default=None,
                    help="comma-separated anomaly labels (default: those the run did not train on)")
    sc.add_argument("--fpr", type=float, default=None,
                    help="calibrate a threshold flagging this share of the normal validation data")
    sc.add_argument("--score", default=None, help="the score for metrics and threshold "
                    "(default: latent_density)")
    sc.add_argument("-k", "--samples", type=int, default=100, help="importance samples per example")
    sc.add_argument("-o", "--output", required=True, help=".csv file to write")
    from vaekit.data.corruption import MASK_HELP, NOISE_HELP
    from vaekit.models.completion import DEFAULT_METHOD, METHODS

    restorations = {
        "denoise": ("add noise to a split and restore it, scored against the noisy input",
                    "Corrupt the first N examples of a split with --noise and restore them as the mean of "
                    "p(x | z = E_q[z | noisy x])."),
        "complete": ("hide part of each example and fill it in, scored against baselines",
                     "Hide the entries --mask marks missing in the first N examples of a split and fill them "
                     "in from the model's p(x_missing | x_observed) (--method)."),
    }
    for name, (short, what) in restorations.items():
        d = sub.add_parser(
            name, help=short, formatter_class=_HelpFormatter,
            description=what + " Prints pixel MSE, PSNR and the log-likelihood of the reference entries "
            "for the restoration and the baselines (the corrupted input; for completion also the plain "
            "posterior-mean fill), and writes a .png grid (rows: corrupted / restored / original) or a .npy "
            "array [N, 3, ...] of the same (missing entries NaN).",
        )
        d.add_argument("run_dir", help="the trained run folder")
        if name == "denoise":
            d.add_argument("--noise", required=True, metavar="SPEC", help=NOISE_HELP)
        else:
            d.add_argument("--mask", required=True, metavar="SPEC", help=MASK_HELP)
            d.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS),
                           help="importance: self-normalized importance sampling with refinement rounds; "
                           "mwg: Metropolis-within-Gibbs (Mattei & Frellsen 2018); pseudo-gibbs: the same "
                           "chain accepting every move (Rezende et al. 2014)")
            d.add_argument("--samples", type=int, default=None, metavar="K",
                           help="draws per round (importance) or chains (Gibbs) per example; default: "
                           + ", ".join(f"{m} {k}" for m, (k, _) in METHODS.items()))
            d.add_argument("--steps", type=int, default=None, metavar="R",
                           help="rounds (importance) or steps per chain (Gibbs); default: "
                           + ", ".join(f"{m} {r}" for m, (_, r) in METHODS.items()))
        d.add_argument("-o", "--output", required=True, help=".png grid or .npy array to write")
        d.add_argument("--data", default=None, metavar="SPEC", help="data spec (default: the run's data set)")
        d.add_argument("--split", default="test", choices=["train", "valid", "test"],
                       help="the split the examples come from")
        d.add_argument("-n", type=int, default=32, help="number of examples")
        d.add_argument("--seed", type=int, default=0, help="seed of the corruption and of the sampling")
        d.add_argument("--json", action="store_true", help="print the numbers as one JSON object")

    from vaekit.applications.latent_walk import DIMS_HELP, PATHS

    i = sub.add_parser("interpolate", help="decode a path between two examples' latents",
                       description="Encode examples I and J of a split (posterior means), walk from one to "
                       "the other (linear, or slerp: along the great circle, which keeps the norm typical of "
                       "a Gaussian prior in high dimensions) and decode each point (likelihood mean): a "
                       "one-row .png with the two originals at the ends, or a .npy array [steps, ...] of the "
                       "decodings.", formatter_class=_HelpFormatter)
    w = sub.add_parser("traverse", help="vary one latent unit at a time, one row per unit, ordered by KL",
                       description="Decode a grid of latents: each row moves one unit from -range to +range "
                       "prior standard deviations around the prior mean (the prior's marginal moments for a "
                       "mixture prior; the top layer of a hierarchical model, the layers below at their "
                       "prior means), the other units at the base point: the prior mean, or example I's "
                       "posterior mean with --from. Rows are ordered by the units' mean KL on the split "
                       "(Var E_q[z|x] where the KL has no per-unit parts). Writes a .png with each row "
                       "labelled, or a .npy array [rows, steps, ...].", formatter_class=_HelpFormatter)
    i.add_argument("run_dir", help="the trained run folder")
    i.add_argument("--from", dest="start", type=int, required=True, metavar="I", help="the first example")
    i.add_argument("--to", dest="end", type=int, required=True, metavar="J", help="the last example")
    i.add_argument("--steps", type=int, default=10, help="decoded points on the path, both ends included")
    i.add_argument("--path", default="linear", choices=list(PATHS),
                   help="linear: the straight line; slerp: the great circle between the two codes")
    w.add_argument("run_dir", help="the trained run folder")
    w.add_argument("--dims", default="top:8", help=DIMS_HELP)
    w.add_argument("--range", dest="span", type=float, default=3.0, metavar="R",
                   help="each row spans -R .. +R prior standard deviations")
    w.add_argument("--steps", type=int, default=9, help="images per row")
    w.add_argument("--from", dest="start", type=int, default=None, metavar="I",
                   help="base point: example I's posterior mean (default: the prior mean)")
    for walk, split_help, label_default in (
        (i, "the split the examples come from", "example I's"),
        (w, "the split example I comes from and the KL order is taken on", "example I's, with --from"),
    ):
        walk.add_argument("-o", "--output", required=True, help=".png grid or .npy array to write")
        walk.add_argument("--split", default="test", choices=["train", "valid", "test"], help=split_help)
        walk.add_argument("--data", default=None, metavar="SPEC",
                          help="data spec (default: the run's data set)")
        walk.add_argument("--label", type=int, default=None,
                          help=f"class to decode with (conditional models; default: {label_default} class)")

    v = sub.add_parser("serve", help="open the latent-space explorer web page for a run",
                       description="Serve the latent-space explorer of a run: a web page with a map of "
                       "the latent space, sliders, interpolations and uploads, and its JSON API.",
                       formatter_class=_HelpFormatter)
    v.add_argument("run_dir", help="the trained run folder")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0 exposes it to the network)")
    v.add_argument("--port", type=int, default=8000, help="port to listen on")
    v.add_argument("--projection", default="auto", choices=["auto", "pca", "umap"],
                   help="2-D map of a latent with more than 2 dimensions (auto: UMAP if installed, else PCA)")

    sub.add_parser("presets", help="list the ready configs, one line each",
                   description="List the presets (--preset NAME) with what each trains.",
                   formatter_class=_HelpFormatter)
    for command in sub.choices.values():  # accept --debug after the sub-command too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
        command.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
    return p


def _overrides(ns: argparse.Namespace, rest: list[str]) -> dict[str, Any]:
    from vaekit.config import all_keys, parse_value

    columns, rest = _column_options(rest)
    if rest:
        bad = next((a for a in rest if a.startswith("--")), rest[0])
        key = bad.lstrip("-").split("=")[0]
        import difflib

        close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.5)
        raise ConfigError(
            f"unknown option {bad!r}",
            f"did you mean '--{close[0]}'?" if close else "see 'vaekit train --help' for the options",
        )
    return {**{k: parse_value(v) for k, v in vars(ns).items() if "." in k or k == "plugins"}, **columns}


def _column_options(rest: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``--data.columns.NAME TYPE`` and ``--data.columns.NAME.order [a, b]`` (a table's column names are
    not config keys known in advance), and the arguments left."""
    from vaekit.config import parse_value

    found, left, i = {}, [], 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("--data.columns.") and len(arg) > len("--data.columns."):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 >= len(rest):
                    raise ConfigError(f"{arg} needs a value", f"write {arg} TYPE (or drop)")
                value, i = rest[i + 1], i + 1
            found[key] = parse_value(value)
        else:
            left.append(arg)
        i += 1
    return found, left


def _closing_line(run_dir: str | Path) -> str:
    """The last line of train and resume: the test ELBO and where the run is."""
    path = Path(run_dir) / "evaluation.json"
    try:
        elbo = json.loads(path.read_text())["test"]["elbo"]
        result = f"test ELBO {elbo:.3f} nats per example; "
    except (OSError, ValueError, KeyError, TypeError):
        result = "no test split, so no test ELBO; "
    return f"{result}run written to {run_dir} (report: {Path(run_dir) / 'report.md'})"


def cmd_train(ns: argparse.Namespace, rest: list[str]) -> int:
    from vaekit.api import train
    from vaekit.config import DEFAULT_PRESET, make_config, save_json
    from vaekit.training.distributed import world_from_env

    if ns.print_config:
        preset = ns.preset or (None if ns.config else DEFAULT_PRESET)
        print(save_json(make_config(ns.config, preset, _overrides(ns, rest))))
        return 0
    if not ns.out:
        raise ConfigError("vaekit train needs --out", "name the run folder to create, e.g. --out runs/my-run")
    train(ns.out, config=ns.config, preset=ns.preset, overwrite=ns.overwrite, **_overrides(ns, rest))
    if world_from_env().main:  # under torchrun, one line, not one per rank
        _say(ns, _closing_line(ns.out))
    return 0


def cmd_resume(ns: argparse.Namespace) -> int:
    from vaekit.training.trainer import Trainer

    trainer = Trainer.resume(ns.run_dir)
    st = trainer.state
    if trainer.complete:
        how = "stopped early" if trainer.stopped_early else "all epochs done"
        print(f"{ns.run_dir} is already complete ({st.epoch} of {trainer.cfg.train.epochs} epochs, {how}): "
              "nothing to resume, no file changed", file=sys.stderr)
        return 0
    print(f"Resuming {ns.run_dir} at epoch {st.epoch + 1}/{trainer.cfg.train.epochs}, batch {st.batch}, "
          f"step {st.step}", file=sys.stderr)
    trainer.fit()
    if trainer.world.main:
        _say(ns, _closing_line(ns.run_dir))
    return 0


def cmd_evaluate(ns: argparse.Namespace) -> int:
    from vaekit.api import evaluate

    res = evaluate(ns.run_dir, split=ns.split, batch_size=ns.batch_size, seed=ns.seed,
                   nll_samples=ns.nll_samples, sample_chunk=ns.sample_chunk, device=ns.device,
                   progress=not ns.quiet, examples=ns.examples)
    if ns.json:
        print(json.dumps(res))
        return 0
    for k, v in res.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b:.4f}" if isinstance(b, float) else f"{a}: {b}" for a, b in v.items())
        elif isinstance(v, list):
            v = "[" + ", ".join(f"{b:.3f}" for b in v) + "]"
        print(f"{k:>24}: {v:.4f}" if isinstance(v, float) else f"{k:>24}: {v}")
    return 0


def _write_array(path: str, images, png: bool = True) -> None:
    import numpy as np

    from vaekit.viz import save_grid

    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        np.save(path, images.cpu().numpy())
    elif suffix == ".png" and png and images.dim() == 4:
        save_grid(images, path)
    else:
        raise ConfigError(
            f"cannot write {path!r}", "use a .npy file (or .png for image data)"
        )


def cmd_sample(ns: argparse.Namespace) -> int:
    import torch

    from vaekit.api import load
    from vaekit.models.sizes import FLOAT_BYTES, check_fits, event_values

    if ns.n < 1:
        raise ConfigError(f"-n must be >= 1 (the number of samples), got {ns.n}", "give e.g. -n 64")
    from vaekit.runs.folder import read_config

    if read_config(ns.run_dir)[1].schema.columns:
        return _sample_table(ns)
    model = load(ns.run_dir)
    values = ns.n * event_values(model.event_shape)
    check_fits(f"{ns.n:,} samples of shape {tuple(model.event_shape)} ({values:,} values, drawn, decoded "
               "and written)", 3 * values * FLOAT_BYTES, "cpu", "draw fewer samples (-n), in several calls")
    g = torch.Generator().manual_seed(ns.seed)
    images = model.sample(ns.n, y=ns.label, mean=not ns.draw, generator=g)
    _write_array(ns.output, images)
    _say(ns, f"{ns.n} samples written to {ns.output}")
    return 0


def _sample_table(ns: argparse.Namespace) -> int:
    """Synthetic rows of a table run, drawn from p(x|z): .csv / .parquet with the training columns, or
    .npy with the encoded rows."""
    from vaekit.api import sample_rows

    encoded = ns.output.lower().endswith(".npy")
    if not encoded:
        _check_table_output(ns.output)
    if encoded and ns.where:
        raise ConfigError("--where writes table rows", "write a .csv or .parquet file")
    rows = sample_rows(ns.run_dir, ns.n, ns.seed, ns.label, encoded=encoded, where=ns.where)
    if encoded:
        _write_array(ns.output, rows)
    else:
        _write_table(rows, ns.output)
    _say(ns, f"{ns.n} rows written to {ns.output}")
    return 0


def _check_table_output(path: str) -> None:
    """Refuse, before any work, a table output that is neither .csv (.csv.gz) nor .parquet."""
    if not path.lower().endswith((".csv", ".csv.gz", ".parquet")):
        raise ConfigError(f"cannot write table rows to {path!r}", "use a .csv or .parquet file (or .npy "
                          "for the encoded rows of vaekit sample)")


def _write_table(frame: Any, path: str) -> None:
    if path.lower().endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def cmd_impute(ns: argparse.Namespace) -> int:
    from vaekit.api import impute

    _check_table_output(ns.output)
    source = ns.data.partition(":")[2]
    if source and Path(ns.output).exists() and Path(source).resolve() == Path(ns.output).resolve():
        raise ConfigError(f"-o {ns.output} is the input table", "write the filled table to another file")
    filled = impute(ns.run_dir, ns.data, ns.method, ns.seed)
    _write_table(filled, ns.output)
    _say(ns, f"{len(filled)} rows written to {ns.output}")
    return 0


def cmd_reconstruct(ns: argparse.Namespace) -> int:
    import torch

    from vaekit.api import load, load_split
    from vaekit.viz import save_pairs

    model = load(ns.run_dir)
    x, y = load_split(ns.run_dir, ns.split)
    x, y = x[: ns.n], None if y is None else y[: ns.n]
    recon = model.reconstruct(x, y)
    if Path(ns.output).suffix.lower() == ".png" and x.dim() == 4:
        save_pairs(x, recon, ns.output, n=ns.n)
    else:
        _write_array(ns.output, torch.stack([x, recon], 1), png=False)
    _say(ns, f"{x.shape[0]} reconstructions written to {ns.output}")
    return 0


def cmd_encode(ns: argparse.Namespace) -> int:
    from vaekit.api import encode

    z = encode(ns.run_dir, data=ns.data, split=ns.split, batch_size=ns.batch_size, progress=not ns.quiet)
    if Path(ns.output).suffix.lower() != ".npy":
        raise ConfigError(f"cannot write {ns.output!r}", "encode writes a .npy file")
    import numpy as np

    np.save(ns.output, z.numpy())
    _say(ns, f"{z.shape[0]} x {z.shape[1]} posterior means written to {ns.output}")
    return 0


def cmd_score(ns: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.api import load, load_split
    from vaekit.applications import anomaly
    from vaekit.runs import folder as rd

    out = Path(ns.output)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"cannot write {ns.output!r}", "score writes a .csv file")
    name = ns.score or anomaly.DEFAULT_SCORE
    if name not in anomaly.SCORES:
        raise ConfigError(f"unknown --score {name!r}", f"use one of: {', '.join(anomaly.SCORES)}")
    cfg, _ = rd.read_config(ns.run_dir)
    model = load(ns.run_dir)
    x, y = load_split(ns.run_dir, ns.split, ns.data or cfg.data.name)
    is_anomaly = _anomaly_labels(ns, cfg, y)
    density = anomaly.LatentDensity(anomaly.posterior_means(
        model, *anomaly.reference_subsample(*load_split(ns.run_dir, "train"))))
    scores = anomaly.anomaly_scores(model, x, k=ns.samples, density=density)
    columns = {"index": np.arange(len(x)), **({} if y is None else {"label": y.numpy()}), **scores}
    np.savetxt(out, np.column_stack(list(columns.values())), delimiter=",", header=",".join(columns),
               comments="", fmt=["%d"] * (2 if y is not None else 1) + ["%.6f"] * len(scores))
    _say(ns, f"{len(x)} examples scored, written to {out}")
    if is_anomaly is not None:
        m = anomaly.detection_metrics(scores[name], is_anomaly)
        print(f"{name}: AUROC {m['auroc']:.4f}  AP {m['average_precision']:.4f}  "
              f"FPR@95 {m['fpr_at_95_recall']:.4f}  ({int(is_anomaly.sum())} anomalies of {len(x)})")
        plot = out.with_suffix(".png")
        anomaly.save_plot(plot, scores[name], is_anomaly, name)
        _say(ns, f"ROC and score histograms written to {plot}")
    if ns.fpr is not None:
        xv, _ = load_split(ns.run_dir, "valid")
        normal = anomaly.anomaly_score(name, model, xv, k=ns.samples, density=density)
        t = anomaly.calibrate(normal, ns.fpr)
        path = anomaly.save_threshold(Path(ns.run_dir), name, t, ns.fpr, len(normal))
        _say(ns, f"threshold {t:.3f} ({name}) flags {ns.fpr:g} of {len(normal)} normal validation "
             f"examples, saved to {path}")
    saved = anomaly.read_threshold(Path(ns.run_dir))
    if saved is not None:
        flagged = int((scores[saved["score"]] > saved["threshold"]).sum())
        print(f"{flagged} of {len(x)} examples score above the run's threshold {saved['threshold']:.3f} "
              f"({saved['score']}, FPR {saved['fpr']:g} on normal validation data)")
    return 0


def _anomaly_labels(ns: argparse.Namespace, cfg: Any, y: Any) -> Any:
    """Which examples are anomalies: labels in --anomaly-classes, else (for a run trained on some
    classes only) the labels it did not train on; None when there is nothing to compare with."""
    import numpy as np

    if ns.anomaly_classes is None and not (cfg.data.classes or cfg.data.exclude_classes):
        return None
    if y is None:
        raise ConfigError("AUROC needs anomaly labels, and the data has none",
                          "score labelled data, or leave out --anomaly-classes")
    labels = y.numpy()
    if ns.anomaly_classes is not None:
        try:
            wanted = [int(c) for c in ns.anomaly_classes.split(",")]
        except ValueError:
            raise ConfigError(f"--anomaly-classes {ns.anomaly_classes!r} is not a list of labels",
                              "write e.g. --anomaly-classes 4,7") from None
        absent = sorted(set(wanted) - set(labels.tolist()))
        if absent:
            raise ConfigError(f"--anomaly-classes names {absent}, not a label of the data",
                              f"use labels among {sorted(set(labels.tolist()))}")
        return np.isin(labels, wanted)
    normal = cfg.data.classes or sorted(set(labels.tolist()))
    return ~np.isin(labels, sorted(set(normal) - set(cfg.data.exclude_classes)))


def _restoration_inputs(ns: argparse.Namespace):
    """The run's model and the first -n examples (with labels) of the chosen split and data."""
    from vaekit.api import load, load_split

    if ns.n < 1:
        raise ConfigError(f"-n must be >= 1 (the number of examples), got {ns.n}", "give e.g. -n 32")
    if Path(ns.output).suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"cannot write {ns.output!r}", "use a .png grid or a .npy array")
    model = load(ns.run_dir)
    x, y = load_split(ns.run_dir, ns.split, ns.data)
    return model, x[: ns.n], None if y is None else y[: ns.n]


def _report_restoration(ns: argparse.Namespace, res, what: str, scored: str) -> None:
    """The numbers (a table, or one JSON object) and the grid / array of the restoration."""
    import torch

    corrupted = res.corrupted
    if res.observed is not None:
        corrupted = corrupted.masked_fill(~res.observed, float("nan"))
    if Path(ns.output).suffix.lower() == ".png" and res.original.dim() == 4:
        from vaekit.viz import save_row_groups

        shown = corrupted.nan_to_num(0.5)  # missing entries grey
        save_row_groups([shown, res.restored, res.original], ns.output)
    else:
        _write_array(ns.output, torch.stack([corrupted, res.restored, res.original], 1), png=False)
    n = res.original.shape[0]
    if ns.json:
        print(json.dumps({"command": ns.command, what: getattr(ns, what), "n": n, "scores": res.scores,
                          "output": ns.output}))
        return
    print(f"{n} examples, {what} {getattr(ns, what)}: pixel error over {scored}, log-likelihood (nats per "
          "example) of the reference entries given each image's latent")
    print(f"{'':>16}  {'MSE':>9}  {'PSNR dB':>8}  {'loglik':>9}")
    for name, row in res.scores.items():
        print(f"{name:>16}  {row['mse']:9.5f}  {row['psnr']:8.2f}  {row['loglik']:9.2f}")
    _say(ns, f"corrupted / restored / original written to {ns.output}")


def cmd_denoise(ns: argparse.Namespace) -> int:
    from vaekit.applications.restoration import denoise
    from vaekit.data.corruption import parse_noise

    noise = parse_noise(ns.noise)
    model, x, y = _restoration_inputs(ns)
    _report_restoration(ns, denoise(model, x, noise, y, ns.seed), "noise", "all entries")
    return 0


def cmd_complete(ns: argparse.Namespace) -> int:
    from vaekit.applications.restoration import complete_images
    from vaekit.data.corruption import parse_mask

    mask = parse_mask(ns.mask)
    model, x, y = _restoration_inputs(ns)
    res = complete_images(model, x, mask, y, ns.seed, ns.method, ns.samples, ns.steps)
    _report_restoration(ns, res, "mask", "the missing entries")
    return 0


def _walk_inputs(ns: argparse.Namespace, what: str):
    """The model (image data only), the split's examples and labels, for interpolate and traverse."""
    from vaekit.api import load, load_split_for
    from vaekit.applications.latent_walk import require_images

    if Path(ns.output).suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"cannot write {ns.output!r}", "use a .png grid or a .npy array")
    model = load(ns.run_dir)
    require_images(model, what)
    x, y = load_split_for(model, ns.run_dir, ns.split, ns.data)
    if x.shape[0] == 0:
        raise DataError(f"the {ns.split} split of the data is empty", "give another --split (or --data)")
    return model, x, y


def _example(x, index: int, option: str, split: str) -> Any:
    """Example ``index`` of a split as a batch of one, refused when it is not there."""
    if not 0 <= index < x.shape[0]:
        raise ConfigError(f"{option} {index}: the {split} split has examples 0..{x.shape[0] - 1}",
                          f"give {option} an index in that range")
    return x[index : index + 1]


def _walk_label(ns: argparse.Namespace, model, y, index: int | None) -> Any:
    """The class a conditional model decodes with: --label, else example ``index``'s label; None for
    an unconditional model (which refuses --label)."""
    import torch

    classes = int(getattr(model, "num_classes", 0) or 0)
    if not classes:
        if ns.label is not None:
            raise ConfigError("this model is not conditional, so --label means nothing", "leave out --label")
        return None
    if ns.label is not None:
        if not 0 <= ns.label < classes:
            raise ConfigError(f"--label {ns.label} is not a class of this model", f"give 0..{classes - 1}")
        return torch.tensor([ns.label])
    if index is None or y is None:
        raise ConfigError("this is a conditional model: it decodes a class", "give --label C (or --from I)")
    return y[index : index + 1]


def cmd_interpolate(ns: argparse.Namespace) -> int:
    import torch

    from vaekit.applications import latent_walk as lw
    from vaekit.viz import save_grid

    if ns.steps < 2:
        raise ConfigError(f"--steps must be >= 2 (the path's two ends), got {ns.steps}",
                          "give e.g. --steps 10")
    model, x, y = _walk_inputs(ns, "interpolate")
    xa, xb = _example(x, ns.start, "--from", ns.split), _example(x, ns.end, "--to", ns.split)
    label = _walk_label(ns, model, y, ns.start)
    with torch.no_grad():
        za = model.encode(xa, None if y is None else y[ns.start : ns.start + 1]).mean[0]
        zb = model.encode(xb, None if y is None else y[ns.end : ns.end + 1]).mean[0]
    images = lw.decode_means(model, lw.interpolate_latents(za, zb, ns.steps, ns.path), label).cpu()
    if Path(ns.output).suffix.lower() == ".npy":
        _write_array(ns.output, images)
    else:
        save_grid(torch.cat([xa.cpu(), images, xb.cpu()]), ns.output, nrow=ns.steps + 2)
    _say(ns, f"{ns.path} path of {ns.steps} steps from example {ns.start} to {ns.end} written to {ns.output}")
    return 0


def cmd_traverse(ns: argparse.Namespace) -> int:
    from vaekit.applications import latent_walk as lw
    from vaekit.evaluation import dimension_activity
    from vaekit.viz import labelled_rows

    if ns.steps < 2:
        raise ConfigError(f"--steps must be >= 2, got {ns.steps}", "give e.g. --steps 9")
    model, x, y = _walk_inputs(ns, "traverse")
    axes = lw.prior_axes(model)
    activity = dimension_activity(model, x[: lw.ACTIVITY_EXAMPLES],
                                  None if y is None else y[: lw.ACTIVITY_EXAMPLES])
    if activity is None:
        raise DataError("the model gives neither a per-unit KL nor posterior means to order the units by",
                        "name the units with --dims 0,1,2")
    values, kind = activity[0][: axes.units], activity[1]
    dims = lw.order_dims(values, ns.dims)
    start = None if ns.start is None else _example(x, ns.start, "--from", ns.split)
    label = _walk_label(ns, model, y, ns.start)
    cond = None if start is None or y is None else y[ns.start : ns.start + 1]
    base = lw.base_point(model, axes, start, cond)
    images = lw.traverse(model, dims, base, axes, ns.span, ns.steps, label)[1].cpu()
    if Path(ns.output).suffix.lower() == ".npy":
        _write_array(ns.output, images)
    else:
        name = "KL" if kind == "kl" else "var"
        labelled_rows(images, [f"z{d}  {name} {float(values[d]):.3g}" for d in dims]).save(ns.output)
    where = "the prior mean" if ns.start is None else f"example {ns.start}"
    _say(ns, f"{len(dims)} units x {ns.steps} steps over +-{ns.span:g} ({axes.meaning}) from {where} "
         f"written to {ns.output}")
    return 0


def cmd_presets(ns: argparse.Namespace) -> int:
    from vaekit.config import DEFAULT_PRESET, preset_description, presets

    names = presets()
    width = max(map(len, names))
    for name in names:
        mark = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name:<{width}}  {preset_description(name)}{mark}")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from vaekit.server import serve

    serve(ns.run_dir, host=ns.host, port=ns.port, projection=ns.projection)
    return 0


def _os_error(e: OSError) -> VaekitError:
    """A file-system error (permissions, missing folder, full disk) as a short message."""
    from vaekit.runs.checkpoint import as_disk_full

    where = f" ({e.filename})" if e.filename else ""
    return as_disk_full(e, e.filename or "a file") or VaekitError(
        f"{e.strerror or e}{where}", "check the path, its permissions and the free disk space"
    )


def _run(ns: argparse.Namespace, rest: list[str]) -> int:
    """The sub-command's function."""
    if ns.command == "train":
        return cmd_train(ns, rest)
    return {
        "resume": cmd_resume,
        "evaluate": cmd_evaluate,
        "sample": cmd_sample,
        "impute": cmd_impute,
        "reconstruct": cmd_reconstruct,
        "encode": cmd_encode,
        "score": cmd_score,
        "denoise": cmd_denoise,
        "complete": cmd_complete,
        "interpolate": cmd_interpolate,
        "traverse": cmd_traverse,
        "serve": cmd_serve,
        "presets": cmd_presets,
    }[ns.command](ns)


def _plugin_modules(argv: list[str]) -> list[str]:
    """The modules ``--plugins a,b`` (or ``--plugins=[a, b]``) names: imported before the options are
    built, so the parts they register have their options and help like the built-in ones."""
    from vaekit.config import plugin_modules

    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--plugins=") else (
            argv[i + 1] if arg == "--plugins" and i + 1 < len(argv) else None)
        if value is not None:
            return plugin_modules(value)
    return []


def _report(err: VaekitError) -> int:
    print(f"vaekit: error: {err.problem}", file=sys.stderr)
    if err.fix:
        print(f"  fix: {err.fix}", file=sys.stderr)
    print("  (run with --debug for the full traceback)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from vaekit import registry

    argv = sys.argv[1:] if argv is None else argv
    try:
        registry.load_plugins(_plugin_modules(argv))
    except VaekitError as e:
        if "--debug" in argv:
            raise
        return _report(e)
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    if rest and ns.command != "train":  # train takes config overrides; elsewhere a usage error
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if ns.quiet:  # every notice, progress line and warning goes to stderr; errors are printed below
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                return _run(ns, rest)
        return _run(ns, rest)
    except BrokenPipeError:  # 'vaekit presets | head': the reader stopped early, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (VaekitError, OSError) as e:
        if ns.debug:
            raise
        return _report(e if isinstance(e, VaekitError) else _os_error(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
