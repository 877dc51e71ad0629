"""The capturable training step (training/graph_step.py): it traces as one torch.compile graph with no
break (no host read, no branch on a device value) for the MLP, conv, hierarchical and IAF models, it
computes what the loop's eager step computes (also conditional, IWAE, penalized and denoising runs),
and the loop trained through it writes the same run;
``train.graph`` says why a run keeps the eager step."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal

import pytest
import torch
import torch._dynamo

from vaekit.config import make_config
from vaekit.data.base import DataSet, Split
from vaekit.errors import ConfigError, DataError, DivergenceError
from vaekit.runs.checkpoint import load_tensors
from vaekit.training import graph_step
from vaekit.training.graph_step import (
    CapturedStep,
    DeviceStep,
    allow_tracing,
    capture_blocker,
    fused_adam_step,
)
from vaekit.training.policy import pick_graph
from vaekit.training.trainer import Trainer

BASE = {"train.progress": False, "train.threads": 1, "train.batch_size": 32, "data.binarize": "dynamic",
        "train.precision": "fp32", "train.epochs": 2}
MODELS = {
    "mlp": {"model.net.hidden": [32]},
    "conv": {"model.net": "conv", "model.net.channels": [4, 8], "model.net.width": 16},
    "hierarchical": {"model.name": "hierarchical", "model.latent_dims": [2, 3], "model.width": 16,
                     "model.net": "mlp", "model.net.hidden": [32]},
    "iaf": {"model.net.hidden": [32], "model.posterior": "iaf", "model.posterior.steps": 1,
            "model.posterior.hidden": 16, "model.posterior.context": 4},
    "iwae-tc": {"model.net.hidden": [32], "objective.name": "iwae", "objective.samples": 3,
                "objective.tc_weight": 1.0, "train.grad_clip": 1.0},
    "hierarchical-resnet-cond": {"model.name": "hierarchical", "model.latent_dims": [2, 3], "model.width": 16,
                                 "model.net": "resnet", "model.net.channels": [4, 8], "model.net.width": 16,
                                 "model.conditional": True},
    "denoise-mmd": {"model.net.hidden": [32], "objective.denoise": "flip:0.1", "objective.mmd_weight": 10.0},
}


def trainer(tmp_path, name: str, model: str, **overrides) -> Trainer:
    cfg = make_config(preset="digits-mlp", overrides=BASE | MODELS[model] | overrides)
    return Trainer(cfg, tmp_path / name)


def batches(t: Trainer, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Index batches of the given sizes from one fixed permutation of the training split."""
    perm = torch.randperm(t.x_train.shape[0], generator=torch.Generator().manual_seed(5))
    cuts = torch.tensor((0, *sizes)).cumsum(0).tolist()
    return [perm[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def eager_steps(t: Trainer, idxs: list[torch.Tensor]) -> None:
    """The loop's own eager step (``TrainingLoop._step``) on each batch."""
    for idx in idxs:
        t._step(idx, t.x_train.index_select(0, idx))
        t.state.step += 1


def device_step(t: Trainer) -> DeviceStep:
    c = t.cfg
    return DeviceStep(t.forward, t.objective, t.opt, t.guard, t.params, t.x_train, t.y_train,
                      c.data.binarize, c.train.grad_clip, t.policy)


@pytest.mark.parametrize("model", list(MODELS))
def test_step_is_one_graph_and_equals_the_eager_step(tmp_path, model):
    """Three full batches and a partial one: the compiled step (fullgraph: any host read or branch on a
    device value would be an error) gives the eager loop's parameters, Adam state, epoch sums and guard
    counts. backend=eager runs dynamo's graph with torch's own kernels, so the noise draws are the same
    and the numbers agree to float rounding of the sums (float64) and exactly elsewhere."""
    a, b = trainer(tmp_path, "a", model), trainer(tmp_path, "b", model)
    idxs = batches(a, (32, 32, 32, 17))
    torch.manual_seed(1)
    eager_steps(a, idxs)
    step = device_step(b)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        allow_tracing()
        compiled = torch.compile(step.__call__, fullgraph=True, dynamic=False, backend="eager")
        torch.manual_seed(1)
        for i, idx in enumerate(idxs):
            compiled(idx, i)
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        sa, sb = a.opt.state[pa], b.opt.state[pb]
        assert all(torch.equal(sa[k], sb[k]) for k in ("step", "exp_avg", "exp_avg_sq")), name
    b.sums.absorb(step.totals)
    sums_a, seen_a = a.sums.by_name(a.sums.total())
    sums_b, seen_b = b.sums.by_name(b.sums.total())
    assert seen_a == seen_b == 113 and sums_a.keys() == sums_b.keys()
    for name, value in sums_a.items():
        assert sums_b[name] == pytest.approx(value, rel=1e-12, abs=1e-9), name
    assert a.guard.poll() == b.guard.poll() == (0, False)


def test_guard_counters_poll_like_the_flags():
    """count() keeps what check()'s list of flags says at a poll: bad steps since the last poll, and
    whether a run of max_bad_steps in a row (also one across polls) has happened."""
    from vaekit.training.guard import DivergenceGuard

    pattern = [0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1]
    listed, counted = DivergenceGuard(3, 1, 0.5), DivergenceGuard(3, 1, 0.5)
    for start in (0, 4, 6, 9):
        for flag in pattern[start:start + 4]:
            listed.flags.append(torch.tensor(float(flag)))
            counted.count(torch.tensor(float(flag)))
        assert listed.poll() == counted.poll()
        assert listed.bad_run == counted.bad_run
    assert counted.poll() == listed.poll() == (0, True)  # no new steps: the run of 3 at the end stands
    counted.reset()
    assert counted.counters.tolist() == [0.0, 0.0, 0.0]


def test_fused_adam_step_is_adam_step(tmp_path):
    """The kernel call of fused_adam_step updates as Adam(fused=True).step() does, and skips a bad step."""
    torch.manual_seed(0)
    w = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    v = [t.detach().clone().requires_grad_() for t in w]
    opt_w = torch.optim.Adam(w, lr=1e-2, weight_decay=0.1, fused=True)
    opt_v = torch.optim.Adam(v, lr=1e-2, weight_decay=0.1, fused=True)
    graph_step.init_adam_state(opt_v)
    for i in range(4):
        bad = torch.tensor(float(i == 2))
        for a, b in zip(w, v, strict=True):
            a.grad = torch.full_like(a, i + 0.5) * a.detach()
            b.grad = a.grad.clone()
        opt_w.found_inf = bad
        opt_w.step()
        fused_adam_step(opt_v, bad)
    for a, b in zip(w, v, strict=True):
        assert torch.equal(a, b)
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_w.state[a][k], opt_v.state[b][k]), k
    assert opt_v.state[v[0]]["step"].item() == 3  # the bad step was not counted


class Recorded:
    """A CUDA graph's stand-in on a CPU: recording runs nothing, each ``replay`` runs what was recorded
    (the step on the captured index buffer), so CapturedStep's warm-up, capture, buffer copies,
    eager partial batches and resets run as on a GPU."""

    made: list[Recorded] = []

    def __init__(self, fn) -> None:
        self.fn = fn
        Recorded.made.append(self)

    def replay(self) -> None:
        self.fn()


@pytest.fixture
def cpu_graphs(monkeypatch):
    Recorded.made = []
    monkeypatch.setattr(graph_step, "capture", Recorded)
    monkeypatch.setattr(graph_step, "side_stream", contextlib.nullcontext)
    return Recorded.made


class Interrupting(CapturedStep):
    """Ctrl-C before step ``at``: the loop stops after that step and checkpoints."""

    at = -1

    def __call__(self, idx: torch.Tensor, step: int) -> None:
        if step == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        super().__call__(idx, step)


def captured(t: Trainer, cls: type[CapturedStep] = CapturedStep) -> CapturedStep:
    return cls(device_step(t), t.cfg.train.batch_size, t.objective.steady_from)


def same_run(tmp_path, a: str, b: str) -> None:
    """Runs a and b left the same metrics (to float64 rounding of the sums) and the same weights."""
    ra, rb = ([{k: v for k, v in json.loads(line).items() if k != "train_time_s"}
               for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in (a, b))
    assert len(ra) == len(rb) > 0
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert y[k] == (pytest.approx(x[k], rel=1e-9) if isinstance(x[k], float) else x[k]), k
    wa, wb = (load_tensors(tmp_path / r / "model.safetensors")[0] for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_loop_through_the_captured_step_writes_the_same_run(tmp_path, cpu_graphs, warmup_epochs):
    """Two epochs of 14 full batches of 100 and one of 37: three warm-up steps, one capture, replays
    of the captured index buffer, the partial batches eagerly, the sums absorbed and the guard's
    counters polled on reads, mid-epoch checkpoints: the run the eager loop writes. With a one-epoch
    KL warm-up (steady_from = 15) the objective reads the step, so capture waits for epoch 2."""
    over = {"train.batch_size": 100, "train.checkpoint_every": 7, "objective.warmup_epochs": warmup_epochs}
    trainer(tmp_path, "a", "mlp", **over).fit()
    b = trainer(tmp_path, "b", "mlp", **over)
    b.graph = graph = captured(b)
    b.fit()
    same_run(tmp_path, "a", "b")
    full_steps = (2 if warmup_epochs == 0 else 1) * 14
    assert len(cpu_graphs) == 1 and graph.replays == full_steps - graph_step.WARMUP_STEPS


def test_a_failed_capture_goes_on_with_the_eager_step(tmp_path, cpu_graphs, monkeypatch, capsys):
    def refuse(fn):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(graph_step, "capture", refuse)
    over = {"train.batch_size": 100}
    trainer(tmp_path, "a", "mlp", **over).fit()
    b = trainer(tmp_path, "b", "mlp", **over)
    b.graph = captured(b)
    b.fit()
    same_run(tmp_path, "a", "b")
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if "capturing the training step" in line]
    assert warnings == ["warning: capturing the training step as a CUDA graph failed (operation not "
                        "permitted when stream is capturing); training with the eager step"]
    assert b.graph.failed and b.graph.replays == 0


def test_interrupted_captured_run_resumes_to_the_eager_run(tmp_path, cpu_graphs):
    """Ctrl-C mid-epoch (step 20: epoch 2, batch 6 of 15) on the graph path, then resume on it: the
    checkpoint carries its device sums and guard counts, and the run ends as the eager run does."""
    trainer(tmp_path, "a", "mlp", **{"train.batch_size": 100}).fit()
    b = trainer(tmp_path, "b", "mlp", **{"train.batch_size": 100})
    b.graph = captured(b, Interrupting)
    b.graph.at = 20
    with pytest.raises(KeyboardInterrupt):
        b.fit()
    assert b.state.step == 21 and b.state.batch == 6
    b = Trainer.resume(tmp_path / "b")
    b.graph = captured(b)
    b.fit()
    same_run(tmp_path, "a", "b")
    assert len(cpu_graphs) == 2  # captured again by the resumed session


class Poisoning(CapturedStep):
    """A weight set to NaN before step 6 (in place, as a diverging update would leave it): every later
    step's loss and gradients are NaN and skipped."""

    def __call__(self, idx: torch.Tensor, step: int) -> None:
        if step == 6:
            with torch.no_grad():
                self.step.params[0].view(-1)[0] = float("nan")
        super().__call__(idx, step)


def test_rollback_through_the_captured_step_captures_again(tmp_path, cpu_graphs):
    """The guard's device counters trip the rollback at the epoch's end as its list of flags does; the
    graph is dropped and captured again on the reloaded optimizer state, and the second rollback ends
    the run with the guard's error."""
    a = trainer(tmp_path, "a", "mlp", **{"train.max_bad_steps": 2, "train.max_rollbacks": 1,
                                        "train.batch_size": 100, "train.epochs": 1})
    a.graph = captured(a, Poisoning)
    with pytest.raises(DivergenceError, match="diverged at step 15"):
        a.fit()
    assert len(cpu_graphs) == 2 and a.state.rollbacks == 1
    assert a.state.skipped_steps == 2 * 9  # steps 6..14 of each try


@pytest.mark.parametrize(("name", "device", "blocker", "says"), [
    ("auto", "cpu", None, "a CUDA graph needs a CUDA device, this run is on cpu"),
    ("on", "cuda", "train.streaming copies each batch from host memory", "train.streaming"),
    (False, "cuda", None, "train.graph=off"),
    ("auto", "cuda", None, "full batches replay one captured CUDA graph"),
])
def test_graph_choice_says_why(name, device, blocker, says):
    on, reason = pick_graph(name, torch.device(device), blocker)
    assert on == (says.startswith("full")) and says in reason


def test_unknown_graph_switch_is_refused():
    with pytest.raises(ConfigError, match="train.graph"):
        pick_graph("sometimes", torch.device("cuda"), None)


def test_blockers_name_ddp_streaming_and_step_dependent_objectives(tmp_path):
    t = trainer(tmp_path, "a", "mlp")
    assert capture_blocker(t.objective, False, False) is None
    assert "DDP" in capture_blocker(t.objective, True, False)
    assert "streaming" in capture_blocker(t.objective, False, True)
    plain = type("Plain", (), {"samples": 1})()
    assert "steady_from" in capture_blocker(plain, False, False)
    warm = trainer(tmp_path, "w", "mlp", **{"objective.warmup_epochs": 2.0})
    assert warm.objective.steady_from == 2 * math.ceil(len(warm.data.train) / 32)  # two epochs of steps


def test_cpu_run_prints_and_records_why_it_keeps_the_eager_step(tmp_path, capsys):
    t = trainer(tmp_path, "a", "mlp", **{"train.epochs": 1, "train.graph": "auto"})
    t.fit()
    banner = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("training "))
    assert "eager step (train.graph=auto: a CUDA graph needs a CUDA device, this run is on cpu)" in banner
    policy = json.loads((tmp_path / "a" / "policy.json").read_text())["sessions"][0]
    assert policy["graph"] is False and "needs a CUDA device" in policy["graph_reason"]
    assert t.graph is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")
@pytest.mark.parametrize(("model", "compiled"), [("mlp", False), ("conv", False), ("mlp", True)])
def test_captured_run_equals_the_eager_run_on_cuda(tmp_path, model, compiled, monkeypatch):
    """On a GPU: the run with train.graph=on (warm-up, capture, replays, eager partial batches) leaves
    the eager run's metrics and weights: the same kernels and the same noise from the same generator.
    cuDNN's autotuner is off and its algorithms deterministic, so the two runs pick the same kernels.
    With torch.compile both runs use inductor's kernels and its noise: a graph that replayed the noise
    of its capture instead of drawing afresh would part from the eager run here."""
    from vaekit.training import speed

    monkeypatch.setattr(speed, "OFF", speed.OFF | {"cudnn_benchmark"})
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    over = {"train.device": "cuda", "train.compile": compiled, "train.batch_size": 16, "train.epochs": 2}
    a = trainer(tmp_path, "a", model, **over, **{"train.graph": False})
    a.fit()
    b = trainer(tmp_path, "b", model, **over, **{"train.graph": True})
    assert b.policy.graph, b.policy.graph_reason
    b.fit()
    assert b.graph.graph is not None and not b.graph.failed
    full = len(b.data.train) // 16  # full batches an epoch; the partial one runs eagerly
    assert b.graph.replays == 2 * full - graph_step.WARMUP_STEPS
    ra, rb = ((tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in "ab")
    strip = lambda r: {k: v for k, v in json.loads(r).items() if k != "train_time_s"}  # noqa: E731
    for x, y in zip(map(strip, ra), map(strip, rb), strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert y[k] == (pytest.approx(x[k], rel=1e-4) if isinstance(x[k], float) else x[k]), k
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.allclose(pa, pb, rtol=1e-3, atol=1e-5), name


def test_labels_out_of_range_are_refused_before_training(tmp_path):
    """The step's forward cannot read labels on the host while captured or traced, so the session
    checks every split's labels once when it is built."""
    x = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8)
    y = torch.zeros(30, dtype=torch.long)
    y[7] = 3
    data = DataSet("toy", Split(x[:10], y[:10]), Split(x[10:20], y[10:20]), Split(x[20:], y[20:]),
                   "image", 256, 2)
    cfg = make_config(overrides=BASE | MODELS["mlp"] | {"model.conditional": True})
    with pytest.raises(DataError, match=r"the train split's y has labels outside 0\.\.1 \(found 0\.\.3\)"):
        Trainer(cfg, tmp_path / "run", data=data)
    assert not (tmp_path / "run").exists()
