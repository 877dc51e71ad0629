"""The policy (which precision / compilation a run gets) and the speed tricks (which kernels): bf16
keeps the densities in fp32, the fused optimizer is Adam, the fast Bernoulli draw is Bernoulli, and
every private torch API's public fallback gives the same numbers."""

from __future__ import annotations

import json

import pytest
import torch

import vaekit
from vaekit.config import make_config, parse_value
from vaekit.data import DataSet, Split
from vaekit.data.transforms import bernoulli_from_thresholds, bernoulli_thresholds
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.schema import DataSchema
from vaekit.training import policy as perf
from vaekit.training import speed
from vaekit.training.policy import Forward, Policy
from vaekit.training.trainer import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
QUICK = {"train.epochs": 2, "train.progress": False, "model.net.hidden": [64, 32], "train.threads": 1}


def model_cfg(**kw):
    return make_config(overrides={f"model.{k}": v for k, v in kw.items()}).model


def built(**kw):
    torch.manual_seed(0)
    return build_model(model_cfg(**kw), DataSchema.for_shape((1, 8, 8), 17, None))


def test_precision_choice(monkeypatch):
    """The policy asks the built model (its ``bf16_safe``), not its config's names."""
    vae, conv = built(), built(net="conv")
    hier = built(name="hierarchical", latent_dims=[4, 4], net="mlp", width=32)
    iaf = built(posterior="iaf")
    assert vae.bf16_safe and conv.bf16_safe and not hier.bf16_safe and not iaf.bf16_safe
    assert perf.pick_precision("fp32", CPU, vae) is None
    assert perf.pick_precision("bf16", CPU, vae) is torch.bfloat16
    monkeypatch.setattr(perf, "cpu_has_fast_bf16", lambda: False)
    assert perf.pick_precision("auto", CPU, vae) is None
    monkeypatch.setattr(perf, "cpu_has_fast_bf16", lambda: True)
    assert perf.pick_precision("auto", CPU, vae) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert perf.pick_precision("auto", CUDA, conv) is torch.bfloat16
    assert perf.pick_precision("auto", CUDA, vae) is None  # MLP: slower in bf16
    # densities computed inside networks (flows, hierarchical layers) stay fp32
    assert perf.pick_precision("auto", CPU, hier) is None
    assert perf.pick_precision("auto", CPU, iaf) is None
    with pytest.raises(ConfigError, match="train.precision=fp32"):
        perf.pick_precision("bf16", CPU, hier)
    with pytest.raises(ConfigError, match="auto, fp32, bf16"):
        perf.pick_precision("fp16", CPU, vae)


def test_bf16_probe_fallback_agrees_with_torchs_private_probe(monkeypatch):
    """/proc/cpuinfo (the fallback) gives the answer torch._C._cpu._init_amx gives."""
    if perf._init_amx is None:
        pytest.skip("this torch has no private AMX probe")
    private = perf.cpu_has_fast_bf16.__wrapped__()
    monkeypatch.setattr(perf, "_init_amx", None)
    assert perf.cpu_has_fast_bf16.__wrapped__() is private


def test_compile_choice(monkeypatch):
    assert perf.pick_compile("auto", CUDA, 10) is True
    assert perf.pick_compile("off", CUDA, 10) is False
    monkeypatch.setattr(perf, "compiler_available", lambda device: True)
    assert perf.pick_compile("auto", CPU, perf.CPU_COMPILE_MIN_STEPS - 1) is False
    assert perf.pick_compile("auto", CPU, perf.CPU_COMPILE_MIN_STEPS) is True
    assert perf.pick_compile("on", CPU, 1) is True
    # YAML and the command line read on/off/true/false as booleans
    cfg = make_config(overrides={"train.compile": parse_value("on")}).train
    assert cfg.compile is True and perf.pick_compile(cfg.compile, CPU, 1) is True
    assert perf.pick_compile(parse_value("false"), CUDA, 1) is False
    monkeypatch.setattr(perf, "compiler_available", lambda device: False)
    assert perf.pick_compile("auto", CPU, 10**9) is False
    with pytest.raises(ConfigError, match="g\\+\\+"):
        perf.pick_compile("on", CPU, 1)
    with pytest.raises(ConfigError, match="auto, true or false"):
        perf.pick_compile("yes", CPU, 1)


def test_policy_for_gpu_and_cpu():
    train = make_config(overrides={"train.precision": "fp32", "train.compile": "off"}).train
    conv_cfg = model_cfg(net="conv")
    conv = build_model(conv_cfg, DataSchema.for_shape((3, 16, 16), 256, None))
    gpu = perf.make_policy(train, CUDA, 100, conv)
    assert gpu.channels_last and gpu.fused_optimizer and not gpu.compile
    assert not perf.make_policy(train, CUDA, 100, _digits_model()).channels_last  # an MLP
    cpu = perf.make_policy(train, CPU, 100, conv)
    assert not cpu.channels_last and cpu.fused_optimizer
    assert "channels-last" in gpu.describe() and "fp32" in cpu.describe()
    x = torch.rand(2, 3, 4, 4)
    assert perf.prepare_batch(x, gpu).is_contiguous(memory_format=torch.channels_last)
    assert perf.prepare_batch(x, cpu) is x


def _digits_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(model_cfg(**{"net.hidden": [64]}, latent_dim=4), DataSchema.for_shape((1, 8, 8),
                                                                                             17, None))


def test_bf16_autocast_runs_the_networks_in_bf16_and_the_densities_in_fp32():
    model = _digits_model()
    seen = []
    model.decoder.net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.bernoulli(torch.full((256, 1, 8, 8), 0.3))
    bf16 = Forward(perf.prepare_model(model, Policy(CPU, torch.bfloat16)), Policy(CPU, torch.bfloat16))
    torch.manual_seed(1)
    t16 = bf16(x)
    assert seen == [torch.bfloat16]
    for name in ("log_px_z", "log_qz", "log_pz", "kl"):
        assert getattr(t16, name).dtype == torch.float32, name
    torch.manual_seed(1)
    t32 = Forward(model, Policy(CPU))(x)
    assert seen[-1] == torch.float32
    # same weights and noise: the ELBO per example agrees to bf16's resolution of the logits
    elbo16, elbo32 = t16.elbo.double(), t32.elbo.double()
    assert (elbo16 - elbo32).abs().mean() < 0.01 * elbo32.abs().mean()
    assert abs(elbo16.mean() - elbo32.mean()) < 0.002 * elbo32.abs().mean()


def test_fused_adam_is_adam():
    a, b = _digits_model(), _digits_model()
    x = torch.bernoulli(torch.full((64, 1, 8, 8), 0.3))
    opts = [perf.build_optimizer(a.parameters(), 1e-2, 1e-4, Policy(CPU, fused_optimizer=True)),
            torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-4)]
    assert opts[0].defaults["fused"] and not opts[1].defaults["fused"]
    for _ in range(5):
        for model, opt in zip((a, b), opts, strict=True):
            torch.manual_seed(2)
            loss = -model(x).elbo.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def _grads_and_step(model, opt, x, poison: bool):
    torch.manual_seed(2)
    loss = -model(x).elbo.mean()
    opt.zero_grad()
    loss.backward()
    if poison:
        next(model.parameters()).grad[0, 0] = float("nan")
    flag = speed.non_finite_flag([p.grad for p in model.parameters()])
    speed.step_unless(opt, flag)
    return flag


def test_fused_step_skips_on_the_device_flag_as_the_host_check_does():
    """The fused kernel's ``found_inf`` (a private protocol) skips exactly the steps the public path
    (the host reads the flag) skips, and otherwise takes the same Adam step."""
    a, b = _digits_model(), _digits_model()
    x = torch.bernoulli(torch.full((64, 1, 8, 8), 0.3))
    opts = [torch.optim.Adam(a.parameters(), lr=1e-2, fused=True), torch.optim.Adam(b.parameters(), lr=1e-2)]
    for poison in (False, True, False, True, False):
        before = [p.detach().clone() for p in a.parameters()]
        flags = [_grads_and_step(m, o, x, poison) for m, o in zip((a, b), opts, strict=True)]
        assert [f.item() for f in flags] == [float(poison)] * 2
        if poison:
            assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before, strict=True))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_non_finite_check_fallback_gives_the_same_flags(monkeypatch):
    """GradScaler's private one-kernel check and the public per-tensor isfinite agree."""
    cases = [[torch.randn(3, 4), torch.randn(5)], [torch.randn(3), torch.tensor([1.0, float("inf")])],
             [torch.tensor([float("nan")]), torch.randn(2, 2)], [torch.tensor(-float("inf"))]]
    private = [speed.non_finite_flag(c) for c in cases]
    assert speed._amp_check is not None and [f.item() for f in private] == [0.0, 1.0, 1.0, 1.0]
    monkeypatch.setattr(speed, "_amp_check", None)
    public = [speed.non_finite_flag(c) for c in cases]
    for f, g in zip(private, public, strict=True):
        assert f.dtype == g.dtype == torch.float32 and f.shape == g.shape == () and torch.equal(f, g)


def test_tricks_switched_off_train_the_same_model(tmp_path, monkeypatch):
    """A benchmark switches tricks off (``speed.OFF``) to measure them; the run computes the same."""
    on = vaekit.train(tmp_path / "on", preset="digits-mlp", **QUICK | {"train.precision": "fp32"})
    monkeypatch.setattr(speed, "OFF", set(speed.TRICKS))
    off = vaekit.train(tmp_path / "off", preset="digits-mlp", **QUICK | {"train.precision": "fp32"})
    fused = [json.loads((tmp_path / r / "policy.json").read_text())["sessions"][0]["fused_optimizer"]
             for r in ("on", "off")]
    assert fused == [True, False]
    for pa, pb in zip(on.parameters(), off.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_bernoulli_thresholds_are_exact_for_8_bit_data():
    """P(r < t) = (t + 2^31) / 2^32 for r uniform on int32: x / 255 to within 2^-32, 0 and 1 exact
    up to that 2^-32 at x = 255; floats in [0, 1] give the same thresholds."""
    x = torch.arange(256, dtype=torch.uint8).view(1, 256)
    t = bernoulli_thresholds(x)
    assert t.dtype == torch.int32
    p = (t.double() + 2**31) / 2**32
    assert p[0, 0] == 0 and 0 < 1 - p[0, 255] <= 2**-32
    assert ((p - x.double() / 255).abs() <= 2**-32).all()
    assert torch.equal(bernoulli_thresholds(x.double() / 255), t)


def test_bernoulli_from_thresholds_is_bernoulli():
    torch.manual_seed(0)
    p = torch.tensor([0.0, 1.0, 0.25, 0.9, 0.5]).repeat(20001, 1)  # an odd number of pixels
    x = bernoulli_from_thresholds(bernoulli_thresholds(p))
    assert x.dtype == torch.float32 and x.shape == p.shape and set(x.unique().tolist()) <= {0.0, 1.0}
    freq = x.mean(0)
    assert freq[0] == 0 and freq[1] == 1
    torch.testing.assert_close(freq[2:], p[0, 2:], atol=0.015, rtol=0)  # standard error <= 0.0036
    # pixels are independent: neighbours (which share an int64 draw) are uncorrelated
    a, b = x[:, 4] - 0.5, x[:, 3] - 0.9
    assert abs((a * b).mean().item()) < 0.01


def test_compile_failure_falls_back_to_eager(capsys):
    model = _digits_model()
    fwd = Forward(model, Policy(CPU))

    def broken(*args):
        raise torch._dynamo.exc.Unsupported("no")

    fwd.fn = broken
    x = torch.rand(4, 1, 8, 8)
    assert fwd(x).kl.shape == (4,)
    assert fwd.fn is model and "training eagerly" in capsys.readouterr().err
    fwd.fn = lambda *a: 1 / 0  # other errors are the model's and surface unchanged
    with pytest.raises(ZeroDivisionError):
        fwd(x)


def test_bf16_training_is_reproducible_and_learns(tmp_path):
    runs = [vaekit.train(tmp_path / r, preset="digits-mlp", **QUICK | {"train.precision": "bf16"})
            for r in "ab"]
    for pa, pb in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        assert torch.equal(pa, pb)
    fp32 = vaekit.train(tmp_path / "c", preset="digits-mlp", **QUICK | {"train.precision": "fp32"})
    elbo = [vaekit.evaluate(tmp_path / r, "valid")["elbo"] for r in "ac"]
    assert abs(elbo[0] - elbo[1]) < 1.0, elbo  # nats on 64 pixels after 2 epochs
    assert any(not torch.equal(pa, pc) for pa, pc in zip(runs[0].parameters(), fp32.parameters(),
                                                          strict=True))


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, monkeypatch):
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # eager's random stream
    eager = vaekit.train(tmp_path / "e", preset="digits-mlp", **QUICK | {"train.compile": "off",
                                                                           "train.precision": "fp32"})
    comp = vaekit.train(tmp_path / "c", preset="digits-mlp", **QUICK | {"train.compile": "on",
                                                                          "train.precision": "fp32"})
    for pe, pc in zip(eager.parameters(), comp.parameters(), strict=True):
        torch.testing.assert_close(pe, pc, rtol=1e-3, atol=1e-4)


def _image_folder(root, n: int = 40):
    """n 8x8 grayscale PNGs in two class folders."""
    from PIL import Image

    g = torch.Generator().manual_seed(3)
    for i in range(n):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(8, 8, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels, mode="L").save(cls / f"{i:03d}.png")
    return root


def test_streaming_from_disk_gives_the_same_run_as_in_memory(tmp_path):
    folder = _image_folder(tmp_path / "images")
    settings = QUICK | {"train.batch_size": 8, "model.conditional": True, "data.binarize": "dynamic"}
    runs = {}
    for name, extra in {"memory": {}, "stream": {"train.streaming": True, "train.num_workers": 2}}.items():
        runs[name] = vaekit.train(tmp_path / name, preset="digits-mlp", data=f"folder:{folder}",
                                  **settings | extra)
    for pm, ps in zip(runs["memory"].parameters(), runs["stream"].parameters(), strict=True):
        assert torch.equal(pm, ps)
    read = lambda run, name: (tmp_path / run / name).read_text()  # noqa: E731
    strip = lambda text: [{k: v for k, v in json.loads(line).items() if k != "train_time_s"}  # noqa: E731
                          for line in text.splitlines()]
    assert strip(read("memory", "metrics.jsonl")) == strip(read("stream", "metrics.jsonl"))
    assert read("memory", "evaluation.json") == read("stream", "evaluation.json")
    assert (tmp_path / "stream" / "report.md").is_file()


def test_streaming_refuses_what_it_cannot_stream(tmp_path):
    from vaekit.data.streaming import open_folder_stream

    with pytest.raises(ConfigError, match="folder:PATH"):
        open_folder_stream(make_config(overrides={"train.streaming": True}))
    with pytest.raises(ConfigError, match="DataSet"):
        vaekit.train(tmp_path / "x", data=DataSet("d", *(Split(torch.rand(4, 1, 2, 2)),) * 3, kind="image"),
                     **{"train.streaming": True})
    folder = _image_folder(tmp_path / "images", 6)
    cfg = make_config(overrides={"data.name": f"folder:{folder}", "data.binarize": "static"})
    with pytest.raises(ConfigError, match="dynamic"):
        open_folder_stream(cfg)


def test_cpu_training_flushes_denormals_and_restores_the_setting(tmp_path, monkeypatch):
    """IWAE gradients are mostly denormal floats, which x86 computes with very slowly: training on CPU
    flushes them to zero, and afterwards the process's setting is what it was."""
    if not torch.set_flush_denormal(False):  # False: this CPU has no flush-to-zero mode (not x86)
        pytest.skip("this CPU cannot flush denormals")
    seen = []
    real_fit = Trainer._fit
    monkeypatch.setattr(Trainer, "_fit",
                        lambda self: seen.append(speed.denormals_flushed()) or real_fit(self))
    assert not speed.denormals_flushed()
    vaekit.train(tmp_path / "run", preset="digits-mlp", **QUICK)
    assert seen == [True] and not speed.denormals_flushed()
    with speed.flush_denormals(torch.device("cpu")):
        assert (torch.tensor([1e-39]) * 1.0).item() == 0.0
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0
