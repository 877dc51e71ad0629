"""What each of vaekit's speed tricks (src/vaekit/training/speed.py) gains on throughput.py's CPU step.

For each trick, ``--reps`` pairs of fresh vaekit workers of ``throughput.py`` (the MNIST MLP, one
thread, process CPU time, one warm-up epoch then one timed epoch of ``--steps`` steps): one with the
trick, one with ``--speed-off TRICK``, in alternating order. The gain is 1 - on/off of the median of
the pairs' time ratios, so load from other work on a shared machine cancels within a pair. A trick
whose gain is below 5 % of a step is to be removed. ``flush_denormals`` only matters for IWAE, so it
is measured on an IWAE (k = 50) step, and, since denormal gradients appear only once the weights have
trained a little, also in one process after ``--denormal-warmup`` IWAE steps (flushing toggled
between timed blocks of 5 steps, alternating; ``denormals_after_training``).

    python benchmarks/speed_tricks.py                         # about 10 min on 2 shared cores
    python benchmarks/speed_tricks.py --tricks fused_adam --reps 3 --out speed-tricks-smoke
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from _common import save_result
from throughput import BATCH, call_worker

IWAE = ("objective.name=iwae", "objective.samples=50")
CPU_TRICKS = ("fused_adam", "finite_check", "flush_denormals")  # the others act on CUDA only


def seconds(trick: str, off: bool, steps: int) -> float:
    """The timed epoch's CPU seconds of one fresh worker."""
    settings = IWAE if trick == "flush_denormals" else ()
    res = call_worker("vaekit", "mlp", steps if not settings else max(steps // 15, 5), 1, cpu_time=True,
                      settings=settings, speed_off=(trick,) if off else ())
    if "error" in res:
        raise SystemExit(f"{trick}: {res['error']}")
    return res["epoch_seconds"][-1]


def denormals_after_training(warmup: int, rounds: int = 3) -> dict[str, float | list[float]]:
    """CPU seconds of an IWAE (k = 50) step of the MNIST MLP after ``warmup`` steps (trained with
    flushing on), with and without flushing denormals; one thread, this process."""
    import numpy as np
    import torch
    from _common import require_mnist

    from vaekit.config import make_config
    from vaekit.models import build_model
    from vaekit.schema import DataSchema

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(require_mnist())["x_train"][:20000]).float().div(255).unsqueeze(1)
    model = build_model(make_config(preset="mnist-mlp").model, DataSchema.for_shape((1, 28, 28), 256))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    k, perm = 50, torch.randperm(len(x))

    def step(i: int) -> None:
        terms = model(torch.bernoulli(x[perm[(i * BATCH) % 19968:][:BATCH]]), None, k)
        log_w = terms.log_px_z + terms.log_pz - terms.log_qz
        loss = -(torch.logsumexp(log_w, 0) - math.log(k)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    ratios = []
    for r in range(rounds):
        t = {}
        for flush in (True, False) if r % 2 == 0 else (False, True):
            torch.set_flush_denormal(flush)
            t0 = time.process_time()
            for i in range(5):
                step(i)
            t[flush] = (time.process_time() - t0) / 5
        ratios.append(t[False] / t[True])
        print(f"  flush_denormals after {warmup} steps: off/on {ratios[-1]:.3f}", flush=True)
    torch.set_flush_denormal(False)  # the process default
    median = statistics.median(ratios)
    return {"warmup_steps": warmup, "gain_of_a_step": 1 - 1 / median, "off_over_on_median": median,
            "off_over_on_rounds": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tricks", nargs="+", default=list(CPU_TRICKS), choices=CPU_TRICKS)
    ap.add_argument("--reps", type=int, default=7, help="on/off pairs per trick")
    ap.add_argument("--steps", type=int, default=300, help="timed steps per worker (IWAE: a 15th)")
    ap.add_argument("--denormal-warmup", type=int, default=150,
                    help="IWAE steps before timing flush_denormals on trained weights (0 = skip)")
    ap.add_argument("--out", default="speed-tricks", help="result name under benchmarks/results/")
    args = ap.parse_args()
    results = {}
    for trick in args.tricks:
        ratios = []
        for r in range(args.reps):
            order = (True, False) if r % 2 == 0 else (False, True)
            t = {off: seconds(trick, off, args.steps) for off in order}
            ratios.append(t[True] / t[False])
            print(f"  {trick:>16} pair {r + 1}/{args.reps}: off/on {ratios[-1]:.3f}", flush=True)
        median = statistics.median(ratios)
        results[trick] = {"gain_of_a_step": 1 - 1 / median, "off_over_on_median": median,
                          "off_over_on_pairs": ratios, "keep": 1 - 1 / median >= 0.05}
        print(f"{trick}: {results[trick]['gain_of_a_step']:.1%} of a step", flush=True)
    if "flush_denormals" in args.tricks and args.denormal_warmup:
        results["flush_denormals_after_training"] = denormals_after_training(args.denormal_warmup)
    save_result(args.out, {
        "what": "gain of each speed trick: 1 - (step time with it) / (step time without it), median of "
                f"interleaved on/off pairs of fresh throughput.py vaekit workers (mnist-mlp, batch {BATCH}, "
                "one thread, process CPU time); flush_denormals on IWAE k=50",
        "steps": args.steps, "reps": args.reps, "results": results,
    })


if __name__ == "__main__":
    main()
