"""Speed of the chunked, batched evaluation (`vaekit evaluate --nll-samples K`) on the MNIST test set
for the mnist-mlp model, next to a straightforward per-example loop in the same run.

The loop is what one writes from the formula: for each example, one forward call with all K samples,
then logsumexp - log K. It is timed on the first --loop-examples examples and extrapolated linearly to
the whole set (it does the same work per example for every example); the output says so.

    python benchmarks/eval_speed.py                       # K=5000, full test set (long on a CPU)
    python benchmarks/eval_speed.py --k 50 --examples 1000 --loop-examples 50 --out eval_speed-smoke
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _common import require_mnist, save_result

from vaekit.config import make_config
from vaekit.data import load_dataset
from vaekit.data.transforms import eval_view
from vaekit.evaluation import evaluate_model
from vaekit.models import build_model
from vaekit.training import run_dir as rd
from vaekit.training.trainer import pick_device


@torch.no_grad()
def per_example_loop(model: torch.nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x) one example at a time, all K samples in one forward call, [N] float64."""
    out = []
    for i in range(x.shape[0]):
        lw = model(x[i : i + 1], None, k).log_weights().double()
        out.append(torch.logsumexp(lw, 0) - math.log(k))
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=5000, help="importance samples per example")
    p.add_argument("--examples", type=int, default=0, help="test examples to evaluate (0 = all 10000)")
    p.add_argument("--loop-examples", type=int, default=100, help="examples the per-example loop is timed on")
    p.add_argument("--batch-size", type=int, default=None, help="examples per forward call (default: auto)")
    p.add_argument("--sample-chunk", type=int, default=None, help="samples per forward call (chunked)")
    p.add_argument("--run", default=None, help="a trained mnist-mlp run folder (default: untrained weights)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--out", default="eval_speed", help="result name under benchmarks/results/")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    data = load_dataset(f"npz:{require_mnist()}")
    x = eval_view(data.test.x, "static", 0)
    x = x[: args.examples] if args.examples else x
    if args.run:
        model = rd.load(args.run, device)
        weights = f"trained run {args.run}"
    else:
        torch.manual_seed(0)
        cfg = make_config(preset="mnist-mlp")
        model = build_model(cfg.model, data.event_shape, 2, None).to(device).eval()
        weights = "untrained mnist-mlp weights (seed 0): the work per sample does not depend on the weights"
    n, k = x.shape[0], args.k
    print(f"{n} test examples x K={k} samples on {device} ({torch.get_num_threads()} threads), {weights}")

    t0 = time.perf_counter()
    res = evaluate_model(model, x, k=k, batch_size=args.batch_size, sample_chunk=args.sample_chunk,
                         seed=0, levels=2, progress=True)
    chunked = time.perf_counter() - t0
    print(f"chunked, batched evaluation: {chunked:.1f} s for {n} examples (nll {res['nll']:.3f})")

    m = min(args.loop_examples, n)
    xs = x[:m].to(device)
    t0 = time.perf_counter()
    loop_lp = per_example_loop(model, xs, k)
    loop_time = time.perf_counter() - t0
    loop_full = loop_time * n / m
    print(f"per-example loop: {loop_time:.1f} s for the first {m} examples -> {loop_full:.1f} s "
          f"extrapolated to {n}")
    t0 = time.perf_counter()
    sub = evaluate_model(model, x[:m], k=k, batch_size=args.batch_size, sample_chunk=args.sample_chunk,
                         seed=0, levels=2)
    chunked_sub = time.perf_counter() - t0
    ratio = loop_full / chunked
    print(f"speed-up (chunked vs per-example loop, whole set): {ratio:.2f}x; on the same {m} examples "
          f"(both measured): {loop_time / chunked_sub:.2f}x")
    save_result(args.out, {
        "what": "seconds to evaluate -log p(x) with K importance samples on the MNIST test set, mnist-mlp",
        "weights": weights,
        "device": str(device),
        "machine_shared": "the CPU was shared with other processes during the run",
        "k": k,
        "examples": n,
        "batch_size": args.batch_size,
        "sample_chunk": args.sample_chunk,
        "chunked_seconds": chunked,
        "chunked_samples_per_second": n * k / chunked,
        "chunked_nll": res["nll"],
        "loop": "per example: one forward call with all K samples, logsumexp - log K",
        "loop_examples_timed": m,
        "loop_seconds_measured": loop_time,
        "loop_seconds_extrapolated": loop_full,
        "loop_extrapolated": m < n,
        "speedup": ratio,
        "same_subset": {"chunked_seconds": chunked_sub, "loop_seconds": loop_time,
                        "speedup": loop_time / chunked_sub, "chunked_nll": sub["nll"],
                        "loop_nll": -float(loop_lp.mean())},
    })


if __name__ == "__main__":
    main()
