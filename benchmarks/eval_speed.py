"""Speed of the chunked, batched evaluation (`vaekit evaluate --nll-samples K`) on the MNIST test set
for the mnist-mlp model, next to straightforward per-example loops in the same run, all on the same weights.

Per-example loops (one example at a time, logsumexp - log K per example):
* vaekit loop: vaekit's model called once per example with all K samples;
* formula loop: the formula with torch.distributions and plain nn.Linear copies of the nets, no vaekit code;
* pythae: pythae 0.1.2's own ``VAE.get_nll(x, n_samples=K, batch_size=100)`` on the same nets.
Each loop is timed on the first examples (--loop-examples, --pythae-examples) and extrapolated linearly
to the whole set (the work per example is the same for every example); the chunked evaluation is also
timed on the loops' subset for a measured same-subset ratio. Every timing has wall seconds and process
CPU seconds: on a shared machine the CPU seconds (one torch thread) are the contention-robust figure.

    python benchmarks/eval_speed.py --run RUN --threads 1        # K=5000, full test set (long on a CPU)
    python benchmarks/eval_speed.py --k 50 --examples 1000 --loop-examples 50 --out eval_speed-smoke

``--vs-loop`` instead times what ``vaekit evaluate RUN --nll-samples K --examples N`` runs (``api.evaluate``
on the run's own test split; it records evaluation.json and the report in RUN as the command does)
against the formula loop taking ``--per-call`` examples with all K samples per call, interleaved
(the order alternating) ``--repeats`` times in one process, and reports the median CPU-time ratio and
the two NLLs with their Monte-Carlo standard error (from the spread of the loop's seeded repeats):

    python benchmarks/eval_speed.py --run RUN --threads 1 --vs-loop --examples 1000 --out eval_speed-loop
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import require_mnist, save_result
from _eval_baselines import formula_loop, plain_nets, pythae_nll, pythae_vae

from vaekit.config import make_config
from vaekit.data import load_dataset
from vaekit.data.transforms import eval_view
from vaekit.evaluation import evaluate_model
from vaekit.models import build_model
from vaekit.runs import folder as rd
from vaekit.schema import DataSchema
from vaekit.training.session import pick_device


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(fn(), wall seconds, process CPU seconds), after the GPU's queued work is done."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return out, time.perf_counter() - w0, time.process_time() - c0


@torch.no_grad()
def vaekit_loop(model: torch.nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x) one example at a time, all K samples in one vaekit forward call, [N] float64."""
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        lw = model(x[i : i + 1], None, k).log_weights().double()
        out[i] = torch.logsumexp(lw, 0)[0] - math.log(k)
    return out


def vs_loop(args: argparse.Namespace, device: torch.device) -> None:
    """The ``--vs-loop`` comparison (module docstring): vaekit evaluate against the formula loop."""
    from vaekit.api import evaluate, load, load_split

    if not args.run:
        raise SystemExit("--vs-loop needs --run: a trained mnist-mlp run folder")
    n, k = args.examples or 1000, args.k
    model = load(args.run, device).eval()
    x, _ = load_split(args.run, "test")
    x = x[:n].to(device)
    enc, dec = (net.to(device) for net in plain_nets(model))
    print(f"{n} test examples x K={k} on {device} ({torch.get_num_threads()} threads): vaekit evaluate vs "
          f"the formula loop, {args.per_call} examples per call, {args.repeats} repeats interleaved")

    def run_vaekit() -> dict[str, Any]:
        return evaluate(args.run, nll_samples=k, examples=n, device=str(device), seed=0)

    def run_loop(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return formula_loop(enc, dec, x, k, args.per_call)

    reps: list[dict[str, Any]] = []
    loop_lp = []
    for rep in range(args.repeats):
        order = ("vaekit", "loop") if rep % 2 == 0 else ("loop", "vaekit")
        entry: dict[str, Any] = {"order": list(order)}
        for what in order:
            if what == "vaekit":
                res, wall, cpu = timed(run_vaekit)
                entry["vaekit"] = {"cpu_seconds": cpu, "wall_seconds": wall, "nll": res["nll"],
                                   "evaluate_model_cpu_seconds": res["cpu_seconds"]}
            else:
                lp, wall, cpu = timed(lambda rep=rep: run_loop(rep))
                loop_lp.append(lp)
                entry["loop"] = {"cpu_seconds": cpu, "wall_seconds": wall, "nll": -float(lp.mean()),
                                 "seed": rep}
        entry["cpu_ratio"] = entry["vaekit"]["cpu_seconds"] / entry["loop"]["cpu_seconds"]
        print(f"repeat {rep}: vaekit {entry['vaekit']['cpu_seconds']:.1f} CPU-s (nll "
              f"{entry['vaekit']['nll']:.3f}), loop {entry['loop']['cpu_seconds']:.1f} CPU-s (nll "
              f"{entry['loop']['nll']:.3f}), ratio {entry['cpu_ratio']:.3f}", flush=True)
        reps.append(entry)
    ratios = sorted(e["cpu_ratio"] for e in reps)
    median = ratios[len(ratios) // 2]
    # Monte-Carlo standard error of one run's mean NLL: per-example variance over the loop's seeds
    spread = torch.stack(loop_lp).var(0) if len(loop_lp) > 1 else torch.full((n,), float("nan"))
    sem = float(spread.sum().sqrt()) / n
    vaekit_nll, loop_nll = reps[0]["vaekit"]["nll"], sum(e["loop"]["nll"] for e in reps) / len(reps)
    gap = vaekit_nll - loop_nll
    gap_se = sem * math.sqrt(1 + 1 / len(reps))  # one vaekit run against the mean of the loop's runs
    print(f"median CPU-time ratio vaekit / loop: {median:.3f} (all: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"NLL vaekit {vaekit_nll:.3f}, loop {loop_nll:.3f} (mean of {len(reps)} seeds); difference "
          f"{gap:+.3f} nats; Monte-Carlo SE of one run {sem:.3f}, of the difference {gap_se:.3f}")
    save_result(args.out, {
        "what": "CPU seconds of `vaekit evaluate RUN --nll-samples K --examples N` (api.evaluate: the "
                "evaluation, evaluation.json, plots and report) against a formula importance sampler that "
                "takes per_call examples with all K samples per call, interleaved in one process",
        "weights": f"trained run {args.run}",
        "device": str(device),
        **({"machine_shared": "other jobs shared the machine (2 cores, several agents): the CPU-second "
                              "ratios of the same repeat are the figure, wall seconds are noisier"}
           if args.shared_machine else {}),
        "k": k,
        "examples": n,
        "per_call": args.per_call,
        "repeats": reps,
        "median_cpu_ratio": median,
        "nll": {"vaekit": vaekit_nll, "loop_mean_over_seeds": loop_nll, "difference": gap,
                "monte_carlo_se_one_run": sem, "monte_carlo_se_difference": gap_se,
                "se_note": "SE of one run's mean NLL from the per-example variance over the loop's seeded "
                           "repeats; the difference (one vaekit run - the loop's mean) has sqrt(1 + 1 / "
                           "repeats) times it"},
    })


def loop_entry(how: str, m: int, n: int, wall: float, cpu: float, nll: float) -> dict[str, Any]:
    """A per-example loop timed on m examples, extrapolated linearly to n."""
    return {"how": how, "examples_timed": m, "wall_seconds_measured": wall, "cpu_seconds_measured": cpu,
            "wall_seconds": wall * n / m, "cpu_seconds": cpu * n / m, "extrapolated": m < n,
            "nll_on_timed_examples": nll}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=5000, help="importance samples per example")
    p.add_argument("--examples", type=int, default=0, help="test examples to evaluate (0 = all 10000)")
    p.add_argument("--loop-examples", type=int, default=100, help="examples the loops are timed on")
    p.add_argument("--pythae-examples", type=int, default=100, help="examples pythae's get_nll is timed on")
    p.add_argument("--batch-size", type=int, default=None, help="examples per forward call (default: auto)")
    p.add_argument("--sample-chunk", type=int, default=None, help="samples per forward call (chunked)")
    p.add_argument("--run", default=None, help="a trained mnist-mlp run folder (default: untrained weights)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto: where every system runs")
    p.add_argument("--shared-machine", action="store_true", help="record that other work shared the machine")
    p.add_argument("--out", default="eval_speed", help="result name under benchmarks/results/")
    p.add_argument("--vs-loop", action="store_true", help="vaekit evaluate against the formula loop only")
    p.add_argument("--per-call", type=int, default=10, help="--vs-loop: examples per call of the loop")
    p.add_argument("--repeats", type=int, default=3, help="--vs-loop: interleaved repeats")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.vs_loop:
        vs_loop(args, device)
        return

    data = load_dataset(f"npz:{require_mnist()}")
    x = eval_view(data.test.x, "static", 0)
    x = x[: args.examples] if args.examples else x
    if args.run:
        model = rd.load(args.run, device).eval()
        weights = f"trained run {args.run}"
    else:
        torch.manual_seed(0)
        cfg = make_config(preset="mnist-mlp")
        model = build_model(cfg.model, DataSchema.for_shape(data.event_shape, 2, None)).to(device).eval()
        weights = "untrained mnist-mlp weights (seed 0): the NLLs are meaningless, the timings are not"
    enc, dec = (net.to(device) for net in plain_nets(model))
    peer = pythae_vae(enc, dec, tuple(x.shape[1:]), model.latent_dim).to(device)
    n, k = x.shape[0], args.k
    m, mp = min(args.loop_examples, n), min(args.pythae_examples, args.loop_examples, n)
    print(f"{n} test examples x K={k} samples on {device} ({torch.get_num_threads()} threads), {weights}")

    def chunked(xs: torch.Tensor, progress: bool) -> dict[str, Any]:
        return evaluate_model(model, xs, k=k, batch_size=args.batch_size, sample_chunk=args.sample_chunk,
                              seed=0, levels=2, progress=progress)

    chunked(x[:2], False)  # warm-up: first-call costs (e.g. the GPU's libraries) are not evaluation time
    res, c_wall, c_cpu = timed(lambda: chunked(x, True))
    print(f"vaekit chunked: {c_wall:.1f} s wall, {c_cpu:.1f} s CPU for {n} examples (nll {res['nll']:.3f})")
    sub, s_wall, s_cpu = timed(lambda: chunked(x[:m], False))

    xs = x[:m].to(device)
    torch.manual_seed(0)
    v_lp, v_wall, v_cpu = timed(lambda: vaekit_loop(model, xs, k))
    torch.manual_seed(0)
    f_lp, f_wall, f_cpu = timed(lambda: formula_loop(enc, dec, xs, k))
    torch.manual_seed(0)
    p_nll, p_wall, p_cpu = timed(lambda: pythae_nll(peer, xs[:mp], k))
    loops = {
        "vaekit_loop": loop_entry("vaekit's model, one forward call with all K samples per example",
                                  m, n, v_wall, v_cpu, -float(v_lp.mean())),
        "formula_loop": loop_entry("torch.distributions from the formula, plain nn.Linear nets, all K "
                                   "samples per example in one call, no vaekit code", m, n, f_wall, f_cpu,
                                   -float(f_lp.mean())),
        "pythae_get_nll": loop_entry("pythae 0.1.2 VAE.get_nll(x, n_samples=K, batch_size=100) on the same "
                                     "nets (re-encodes x per chunk of 100 samples), under torch.no_grad",
                                     mp, n, p_wall, p_cpu, p_nll),
    }
    speedup = {name: {"cpu": e["cpu_seconds"] / c_cpu, "wall": e["wall_seconds"] / c_wall}
               for name, e in loops.items()}
    # same subset: the chunked time on the first mp examples is taken as mp/m of its time on m
    same = {name: {"cpu": e["cpu_seconds_measured"] / (s_cpu * e["examples_timed"] / m),
                   "wall": e["wall_seconds_measured"] / (s_wall * e["examples_timed"] / m)}
            for name, e in loops.items()}
    nll_first_mp = {"vaekit_loop": -float(v_lp[:mp].mean()), "formula_loop": -float(f_lp[:mp].mean()),
                    "pythae_get_nll": p_nll}

    rows = [("vaekit chunked (evaluate_model)", c_wall, c_cpu, None, res["nll"])]
    rows += [(name, e["wall_seconds"], e["cpu_seconds"], speedup[name], e["nll_on_timed_examples"])
             for name, e in loops.items()]
    print(f"\n| system | CPU s / {n} ex. | wall s / {n} ex. | chunked ahead by (CPU / wall) | NLL (nats) |")
    print("|---|---|---|---|---|")
    for name, wall, cpu, r, nll in rows:
        ratio = "1" if r is None else f"{r['cpu']:.2f}x / {r['wall']:.2f}x"
        print(f"| {name} | {cpu:.0f} | {wall:.0f} | {ratio} | {nll:.3f} |")
    print(f"\nloops timed on the first {m} examples (pythae {mp}), extrapolated linearly to {n}; NLL of a "
          f"loop is on its timed examples. Chunked on the first {m}: {s_cpu:.1f} s CPU, "
          f"nll {sub['nll']:.3f}; same-subset ratios (CPU / wall): "
          + ", ".join(f"{name} {r['cpu']:.2f}x / {r['wall']:.2f}x" for name, r in same.items()))
    print(f"NLL on the first {mp} examples: " + ", ".join(f"{a} {b:.3f}" for a, b in nll_first_mp.items()))

    save_result(args.out, {
        "what": "seconds to evaluate -log p(x) with K importance samples on the MNIST test set, mnist-mlp, "
                "vaekit's chunked evaluation next to three per-example loops on the same weights",
        "weights": weights,
        "device": str(device),
        **({"machine_shared": "other jobs shared the machine during the run: the CPU-second ratios "
                              "(process_time, one torch thread) are the primary figure, wall ratios are "
                              "noisier"} if args.shared_machine else {}),
        "k": k,
        "examples": n,
        "batch_size": args.batch_size,
        "sample_chunk": args.sample_chunk,
        "chunked": {"wall_seconds": c_wall, "cpu_seconds": c_cpu, "nll": res["nll"],
                    "samples_per_cpu_second": n * k / c_cpu},
        "loops": loops,
        "loops_extrapolated": "each loop is timed on the first examples_timed examples and its seconds "
                              "scaled linearly to all examples (same work per example)",
        "speedup": speedup,
        "same_subset": {"examples": m, "chunked_wall_seconds": s_wall, "chunked_cpu_seconds": s_cpu,
                        "chunked_nll": sub["nll"], "speedup": same},
        "nll_on_pythae_subset": {"examples": mp, **nll_first_mp},
    })


if __name__ == "__main__":
    main()
