"""Issue-5 speed benchmark: training images/s of the same VAE in (a) vaekit, (b) the plain PyTorch
loop a user would write (``quality_mnist_mlp.plain_loop``: DataLoader over a TensorDataset, same
network, batch size and Adam) and (c) pythae 0.1.2 with the same encoder and decoder, for the
``mnist-mlp`` model (784-400-20, Bernoulli, batch 128) and the ``mnist-conv`` preset.

Every measurement is a fresh worker process (so peak memory is per system): it trains one warm-up
epoch of ``--steps`` steps (compilation happens there), then times one epoch of ``--steps`` steps.
Workers of the systems alternate, ``--reps`` rounds in a rotating order, and medians are reported;
a large matmul in vaekit's compute dtype measures the machine's peak FLOP/s in the same rounds.
Then every system trains ``--elbo-epochs`` epochs on all of MNIST and reports its test ELBO, so
speed cannot come from doing less.

    python benchmarks/throughput.py                  # full run (about 15 min on 2 cores)
    python benchmarks/throughput.py --steps 20 --reps 1 --elbo-epochs 0 --out throughput-smoke
    python benchmarks/throughput.py --batch 20 --systems vaekit vaekit-eager plain   # overhead-bound

``vaekit`` is the default policy (on CUDA: each full batch replayed as one CUDA graph,
training/graph_step.py), ``vaekit-eager`` the same with train.graph=false (the eager step): on a GPU
the pair measures the captured step; on a CPU both run the eager step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from _common import parse_settings, require_mnist, save_result

SYSTEMS = ("vaekit", "vaekit-eager", "vaekit-compiled", "plain", "pythae")
VAEKIT = {"vaekit": {"train.graph": "auto"}, "vaekit-eager": {"train.graph": False},
          "vaekit-compiled": {"train.compile": "on"}}
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
MODELS = {"mlp": "mnist-mlp", "conv": "mnist-conv"}
BATCH = 128  # --batch sets it, in the workers too


# -- the three systems ------------------------------------------------------------------------


def mnist(n_train: int | None = None) -> dict[str, torch.Tensor]:
    """MNIST as stored, uint8 [N, 1, 28, 28]: the first n_train training images, valid and test."""
    d = np.load(require_mnist())
    return {k: torch.from_numpy(d[f"x_{k}"][: n_train if k == "train" else None]).unsqueeze(1)
            for k in ("train", "valid", "test")}


def unit_views(n_train: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """What the plain loop and pythae see: training images in [0, 1], and the test set binarized
    once with seed 0, exactly as vaekit's evaluation binarizes it."""
    from vaekit.data.transforms import eval_view, to_unit

    d = mnist(n_train)
    return to_unit(d["train"]), eval_view(d["test"], "dynamic", 0)


def vaekit_nets(model: str) -> tuple[nn.Module, nn.Module]:
    """The preset's encoder and decoder networks, as vaekit builds them (shared by every system)."""
    from vaekit.config import make_config
    from vaekit.models import build_model
    from vaekit.schema import DataSchema

    m = build_model(make_config(preset=MODELS[model]).model, DataSchema.for_shape((1, 28, 28), 256, None))
    return m.encoder, m.decoder


def run_vaekit(model: str, steps: int, epochs: int, system: str, elbo: bool,
               settings: list[str]) -> dict[str, Any]:
    """The real Trainer loop; epoch times are its own ``train_time_s`` (the step loop alone).
    ``system``: vaekit (the default policy: on CUDA each full batch replays one CUDA graph),
    vaekit-eager (train.graph=false: the eager step) or vaekit-compiled (train.compile=on);
    ``settings``: extra KEY=VALUE config overrides (e.g. train.precision=fp32)."""
    from vaekit.config import make_config
    from vaekit.data import DataSet, Split
    from vaekit.runs.metrics import read_metrics
    from vaekit.training.trainer import Trainer

    class Timed(Trainer):
        def finish(self) -> None:  # the loop is what is timed; record the peak, skip the pictures
            self.peak = peak_memory_mb(self.device)
            if elbo:
                super().finish()

    d = mnist(None if elbo else steps * BATCH)
    small = slice(None if elbo else 1000)
    data = DataSet("mnist", Split(d["train"]), Split(d["valid"][:1000]), Split(d["test"][small]),
                   kind="image", levels=256)
    overrides = {"train.epochs": epochs, "train.progress": False, "data.binarize": "dynamic",
                 "train.batch_size": BATCH, **VAEKIT[system]}
    overrides |= parse_settings(settings)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        trainer = Timed(make_config(preset=MODELS[model], overrides=overrides), run, data=data)
        trainer.fit()
        records = read_metrics(run / "metrics.jsonl")
        test = json.loads((run / "evaluation.json").read_text())["test"]["elbo"] if elbo else None
    return {"epoch_seconds": [r["train_time_s"] for r in records], "peak_mem_mb": trainer.peak,
            "policy": trainer.policy.describe(), "graph_reason": trainer.policy.graph_reason,
            "graph_failed": bool(trainer.graph is not None and trainer.graph.failed), "test_elbo": test}


def plain_model(model: str) -> type[nn.Module]:
    """The tutorial VAE of quality_mnist_mlp; for the conv preset, its forward with vaekit's conv nets."""
    from quality_mnist_mlp import PlainVAE

    if model == "mlp":
        return PlainVAE

    class PlainConvVAE(PlainVAE):
        def __init__(self) -> None:
            super().__init__()
            enc, dec = vaekit_nets("conv")
            self.enc = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), enc)
            self.dec = nn.Sequential(dec, nn.Flatten())

    return PlainConvVAE


def run_plain(model: str, steps: int, epochs: int, elbo: bool) -> dict[str, Any]:
    import quality_mnist_mlp

    quality_mnist_mlp.PlainVAE = plain_model(model)  # this worker process only
    x, x_test = unit_views(None if elbo else steps * BATCH)
    x_test = x_test if elbo else x_test[:1000]
    loop = quality_mnist_mlp.plain_loop if DEVICE.type == "cpu" else plain_loop_gpu
    res = loop(x.view(-1, 784), x_test.view(-1, 784), epochs, BATCH, 0)
    return {"epoch_seconds": res["epoch_seconds"], "peak_mem_mb": peak_memory_mb(DEVICE),
            "test_elbo": res["test_elbo"] if elbo else None}


def plain_loop_gpu(x_train: torch.Tensor, x_test: torch.Tensor, epochs: int, batch: int, seed: int) -> dict:
    """``quality_mnist_mlp.plain_loop`` (CPU only) with what a GPU user adds: the model on the GPU,
    pinned batches copied over without blocking, binarized there; timed to the GPU's finish."""
    import quality_mnist_mlp
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = quality_mnist_mlp.PlainVAE().to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_train), batch_size=batch, shuffle=True, pin_memory=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for (xb,) in loader:
            recon, kl = model(torch.bernoulli(xb.to(DEVICE, non_blocking=True)))
            loss = (recon + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    with torch.no_grad(), torch.random.fork_rng(devices=[DEVICE]):
        torch.manual_seed(0)
        elbos = [-(sum(model(xb.to(DEVICE)))) for xb in x_test.split(1000)]
    return {"test_elbo": torch.cat(elbos).double().mean().item(), "epoch_seconds": times}


def run_pythae(model: str, steps: int, epochs: int, elbo: bool) -> dict[str, Any]:
    """pythae's BaseTrainer.train_step over its BaseDataset: its own data pipeline and loop. pythae has
    no dynamic binarization, so it trains on one fixed binarization (one Bernoulli draw less per step)."""
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from vaekit.config import make_config

    enc_net, dec_net = vaekit_nets(model)

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = enc_net

        def forward(self, x: torch.Tensor) -> ModelOutput:
            mu, log_var = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = dec_net

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    torch.manual_seed(0)
    x, x_test = unit_views(None if elbo else steps * BATCH)
    x = torch.bernoulli(x)
    latent = make_config(preset=MODELS[model]).model.latent_dim
    vae = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=latent, reconstruction_loss="bce"),
              encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BaseTrainerConfig(output_dir=tmp, num_epochs=epochs, learning_rate=1e-3,
                                per_device_train_batch_size=BATCH, optimizer_cls="Adam")
        trainer = BaseTrainer(vae, BaseDataset(x, torch.zeros(len(x))), training_config=cfg)
        trainer.prepare_training()
        times = []
        for epoch in range(epochs):
            t0 = time.perf_counter()
            trainer.train_step(epoch)  # reads the loss every step (.item()): in step with the device
            times.append(time.perf_counter() - t0)
    test = None
    if elbo:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            test = -statistics.fmean(vae({"data": xb.to(DEVICE)}).loss.item() for xb in x_test.split(1000))
    return {"epoch_seconds": times, "peak_mem_mb": peak_memory_mb(DEVICE), "test_elbo": test}


# -- machine figures --------------------------------------------------------------------------


def peak_memory_mb(device: torch.device) -> float:
    """GPU: the most memory torch allocated; CPU: the process's peak resident set (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_flops_per_image(model: str) -> float:
    """Multiply-adds of every Linear/Conv/ConvTranspose layer on one image, x2 for FLOPs, x3 for a
    training step (backward = gradient w.r.t. inputs + w.r.t. weights, each as costly as forward)."""
    enc, dec = vaekit_nets(model)
    macs = []

    def count(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        if isinstance(m, nn.Linear):
            macs.append(m.weight.numel())
        elif isinstance(m, nn.Conv2d):
            macs.append(m.weight[0].numel() * out[0].numel())
        elif isinstance(m, nn.ConvTranspose2d):
            macs.append(m.weight.numel() * inputs[0][0, 0].numel())

    for net in (enc, dec):
        for m in net.modules():
            m.register_forward_hook(count)
    with torch.no_grad():
        h = enc(torch.zeros(1, 1, 28, 28))
        dec(torch.zeros(1, h.shape[1] // 2))
    return 3 * 2 * float(sum(macs))


def matmul_peak_flops(dtype: torch.dtype, device: torch.device, seconds: float = 1.5) -> float:
    """Dense-matmul FLOP/s of this machine now: 2048^3 (CPU) or 8192^3 (GPU) products for ~seconds."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


# -- orchestration ----------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:  # every timer of this worker (its own, vaekit's, pythae's) reads CPU time
        time.perf_counter = time.process_time
    from vaekit.training import speed

    speed.OFF.update(args.speed_off)
    elbo = args.elbo_epochs > 0
    epochs = args.elbo_epochs if elbo else 2
    system, model = args.worker, args.model
    if system in VAEKIT:
        res = run_vaekit(model, args.steps, epochs, system, elbo, args.vaekit_set)
    elif system == "plain":
        res = run_plain(model, args.steps, epochs, elbo)
    else:
        res = run_pythae(model, args.steps, epochs, elbo)
    print("RESULT " + json.dumps(res))


def call_worker(system: str, model: str, steps: int, threads: int, elbo_epochs: int = 0,
                cpu_time: bool = False, settings: tuple[str, ...] = (),
                speed_off: tuple[str, ...] = ()) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", system, "--model", model, "--steps", str(steps),
           "--elbo-epochs", str(elbo_epochs), "--threads", str(threads), "--batch", str(BATCH)]
    cmd += ["--cpu-time"] if cpu_time else []
    for kv in settings:
        cmd += ["--vaekit-set", kv]
    for name in speed_off:
        cmd += ["--speed-off", name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def pythae_status() -> str | None:
    """None when pythae 0.1.2 imports, else why not."""
    proc = subprocess.run([sys.executable, "-c", "import pythae, importlib.metadata as m; "
                           "print(m.version('pythae'))"], capture_output=True, text=True)
    if proc.returncode:
        return "pythae is not installed (pip install pythae==0.1.2 --no-deps; then imageio)"
    if proc.stdout.strip() != "0.1.2":
        return f"pythae {proc.stdout.strip()} is installed, the benchmark pins 0.1.2"
    return None


def throughput_rounds(args: argparse.Namespace, systems: list[str]) -> dict[str, Any]:
    from vaekit.config import make_config
    from vaekit.models import build_model
    from vaekit.schema import DataSchema
    from vaekit.training.policy import pick_precision

    device = DEVICE
    out: dict[str, Any] = {}
    for model in args.models:
        schema = DataSchema.for_shape((1, 28, 28), 256)
        built = build_model(make_config(preset=MODELS[model]).model, schema)
        dtype = pick_precision("auto", device, built) or torch.float32
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        peaks = []
        for r in range(args.reps):
            order = systems[r % len(systems):] + systems[: r % len(systems)]
            for system in order:
                res = call_worker(system, model, args.steps, args.threads, cpu_time=args.cpu_time,
                                  settings=args.vaekit_set, speed_off=args.speed_off)
                runs[system].append(res)
                ips = BATCH * args.steps / res["epoch_seconds"][-1] if "error" not in res else float("nan")
                print(f"  round {r + 1}/{args.reps} {model:>4} {system:>16}: {ips:8.0f} img/s "
                      f"{res.get('error', '')}", flush=True)
            peaks.append(matmul_peak_flops(dtype, device))  # in this process: same thread count
        out[model] = summarize(runs, peaks, model, dtype, args.steps)
    return out


def summarize(runs: dict[str, list[dict[str, Any]]], peaks: list[float], model: str,
              dtype: torch.dtype, steps: int) -> dict[str, Any]:
    flops = train_flops_per_image(model)
    peak = statistics.median(peaks)
    res: dict[str, Any] = {"train_flops_per_image": flops, "peak_matmul_flops": peak,
                           "peak_matmul_dtype": str(dtype).split(".")[-1], "peak_matmul_rounds": peaks}
    for system, rs in runs.items():
        good = [r for r in rs if "error" not in r]
        if not good:
            res[system] = {"error": rs[0]["error"] if rs else "not run"}
            continue
        ips = [BATCH * steps / r["epoch_seconds"][-1] for r in good]
        res[system] = {
            "images_per_s": statistics.median(ips),
            "images_per_s_rounds": ips,
            "warmup_epoch_s": statistics.median(r["epoch_seconds"][0] for r in good),
            "peak_mem_mb": statistics.median(r["peak_mem_mb"] for r in good),
            "fraction_of_peak": statistics.median(ips) * flops / peak,
            **{k: good[0][k] for k in ("policy", "graph_reason", "graph_failed") if k in good[0]},
        }
    for ours in VAEKIT:
        for base in ("plain", "pythae"):
            a, b = res.get(ours, {}), res.get(base, {})
            if "images_per_s" in a and "images_per_s" in b:
                res[f"ratio_{ours}_over_{base}"] = a["images_per_s"] / b["images_per_s"]
    return res


def elbo_check(args: argparse.Namespace, systems: list[str]) -> dict[str, Any]:
    """Every system trains the MLP on all of MNIST for the same epochs; test ELBOs must agree."""
    res: dict[str, Any] = {"epochs": args.elbo_epochs, "model": "mlp"}
    for system in systems:
        r = call_worker(system, "mlp", 0, args.threads, args.elbo_epochs, settings=args.vaekit_set,
                        speed_off=args.speed_off)
        res[system] = r.get("test_elbo", r.get("error"))
        print(f"  {system:>16}: test ELBO {res[system]}", flush=True)
    ok = [s for s in systems if s != "pythae" and isinstance(res[s], float)]
    if "plain" in ok:
        res["tolerance_nats"] = args.elbo_tolerance
        res["agree"] = all(abs(res[s] - res["plain"]) <= args.elbo_tolerance for s in ok)
    return res


def print_table(results: dict[str, Any]) -> None:
    for model, r in results.items():
        print(f"\n{MODELS[model]}: {r['train_flops_per_image'] / 1e6:.2f} MFLOP per training image, "
              f"peak {r['peak_matmul_flops'] / 1e9:.0f} GFLOP/s ({r['peak_matmul_dtype']} matmul)")
        print(f"{'system':>16} {'img/s':>9} {'peak MB':>8} {'of peak':>8}")
        for s in SYSTEMS:
            if s in r:
                v = r[s]
                if "error" in v:
                    print(f"{s:>16}  not run: {v['error']}")
                else:
                    print(f"{s:>16} {v['images_per_s']:9.0f} {v['peak_mem_mb']:8.0f} "
                          f"{v['fraction_of_peak']:8.1%}")
        for k, v in r.items():
            if k.startswith("ratio_"):
                print(f"  {k[6:]}: {v:.2f}x")


def main() -> None:
    global BATCH
    from vaekit.training.speed import TRICKS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="timed steps per round (and warm-up steps)")
    ap.add_argument("--reps", type=int, default=5, help="rounds; medians are reported")
    ap.add_argument("--batch", type=int, default=BATCH, help="examples per step, every system (e.g. 20: "
                    "the IWAE paper's, where per-step overhead dominates most)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--elbo-epochs", type=int, default=5, help="epochs of the ELBO check (0 = skip)")
    ap.add_argument("--elbo-tolerance", type=float, default=1.0, help="nats allowed between test ELBOs")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads for every system (0 = torch's default, all cores); on a "
                         "CPU shared with other work use 1: idle-waiting threads then stall")
    ap.add_argument("--shared-machine", action="store_true", help="record that other work shared the CPU")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time steps in process CPU seconds instead of wall seconds: with --threads 1 "
                         "the work itself, robust when other jobs share the CPU")
    ap.add_argument("--vaekit-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the vaekit systems, e.g. train.precision=fp32 (repeatable)")
    ap.add_argument("--speed-off", action="append", default=[], metavar="TRICK", choices=TRICKS,
                    help="switch one of vaekit's speed tricks off (training/speed.py) to measure its gain "
                         f"(repeatable): {', '.join(TRICKS)}")
    ap.add_argument("--out", default="throughput", help="result name under benchmarks/results/")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    BATCH = args.batch
    if args.worker:
        return worker(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    systems = list(args.systems)
    skipped = pythae_status() if "pythae" in systems else None
    if skipped:
        print(f"pythae not measured: {skipped}")
        systems.remove("pythae")
    results = throughput_rounds(args, systems)
    print_table(results)
    elbo = elbo_check(args, systems) if args.elbo_epochs else None
    save_result(args.out, {
        "what": "training images/s after one warm-up epoch, fresh process per measurement, systems "
                f"interleaved, medians over rounds; batch {BATCH}, Adam 1e-3, dynamic binarization "
                "(pythae: one fixed binarization); vaekit: the default policy (on CUDA the CUDA graph "
                "step), vaekit-eager: train.graph=false",
        "batch_size": BATCH,
        "steps_per_round": args.steps, "rounds": args.reps, "machine_shared": args.shared_machine,
        "clock": "process CPU time (--cpu-time)" if args.cpu_time else "wall time",
        "threads": torch.get_num_threads(), "vaekit_settings": args.vaekit_set, "speed_off": args.speed_off,
        "pythae": skipped or "0.1.2", "results": results, "elbo_check": elbo,
    })


if __name__ == "__main__":
    main()
