"""Typed run configuration: dataclasses, YAML/JSON files, presets and dotted-key overrides.

A run is fully described by one ``Config``. Files and ``--section.key value`` overrides are
checked against the dataclasses: unknown keys get the closest valid key suggested, values are
converted to the field's type or refused with a message saying what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaekit.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"
DEFAULT_PRESET = "digits-mlp"  # what 'vaekit train' and vaekit.train use without a preset or config file


@dataclass
class DataConfig:
    """Where examples come from and how they are preprocessed."""

    name: str = "digits"  # digits | mnist | fashion-mnist | cifar10 | npz:PATH | folder:PATH
    data_dir: str | None = None  # where named data sets are looked for / downloaded to
    binarize: str = "none"  # none | static (fixed draw) | dynamic (fresh Bernoulli draw each step)
    binarize_seed: int = 0  # seed of the static draw, also used for evaluation splits
    valid_fraction: float = 0.1  # carved from train when a data set has no validation split

    def __post_init__(self) -> None:
        _require_seed("data.binarize_seed", self.binarize_seed)
        _require("data.valid_fraction", self.valid_fraction, 0 <= self.valid_fraction < 1, "in [0, 1)")


@dataclass
class ModelConfig:
    """The parts of the VAE: backbone, posterior, prior and likelihood."""

    kind: str = "vae"  # vae | hierarchical (top-down stochastic layers of sizes model.latent_dims)
    latent_dim: int = 16  # size of the latent vector z (vae)
    latent_dims: list[int] = field(default_factory=list)  # hierarchical: units per layer, top layer first
    latent_channels: list[int] = field(default_factory=list)  # hierarchical: latent maps below those layers
    net: str = "auto"  # auto | mlp | conv | resnet (28x28, 32x32; auto's choice for hierarchical)
    hidden: list[int] = field(default_factory=lambda: [512, 256])  # MLP widths (conv, resnet: head width)
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv channels per stride-2 stage
    res_blocks: int = 1  # resnet: residual blocks after each stride-2 stage
    activation: str = "relu"  # relu | gelu | elu | silu | tanh
    likelihood: str = "bernoulli"  # bernoulli | gaussian | logistic-mixture
    likelihood_scale: str = "global"  # gaussian: fixed | global | per-pixel
    likelihood_sigma: float = 0.1  # gaussian: the fixed or initial standard deviation
    mixture_components: int = 5  # logistic-mixture: components per dimension
    prior: str = "normal"  # normal | mog (learned Gaussian mixture) | vamp (VampPrior: pseudo-inputs)
    prior_components: int = 50  # mog: mixture components; vamp: pseudo-inputs
    posterior: str = "gaussian"  # gaussian (diagonal, reparameterized) | iaf (+ autoregressive flow)
    flow_steps: int = 2  # iaf: autoregressive flow steps
    flow_hidden: int = 256  # iaf: width of the two masked hidden layers of each step
    flow_context: int = 32  # iaf: size of the context vector h the encoder passes to every step
    conditional: bool = False  # condition encoder and decoder on the label y (CVAE)

    def __post_init__(self) -> None:
        at_least = {"latent_dim": 1, "res_blocks": 0, "mixture_components": 1, "prior_components": 1,
                    "flow_steps": 1, "flow_hidden": 1, "flow_context": 1}
        for name, low in at_least.items():
            _require(f"model.{name}", getattr(self, name), getattr(self, name) >= low, f">= {low}")
        _require("model.likelihood_sigma", self.likelihood_sigma, self.likelihood_sigma > 0, "> 0")
        for name in ("latent_dims", "latent_channels", "hidden", "channels"):
            sizes = getattr(self, name)
            if any(n < 1 for n in sizes):
                raise ConfigError(
                    f"config key 'model.{name}' holds sizes that must each be >= 1, got {sizes}",
                    f"give model.{name} positive sizes, e.g. [256, 128]",
                )


@dataclass
class ObjectiveConfig:
    """What training maximizes."""

    name: str = "elbo"  # elbo | iwae
    beta: float = 1.0  # weight of the KL term (beta-VAE when != 1)
    warmup_epochs: float = 0.0  # linear KL warm-up from 0 to beta over this many epochs
    free_bits: float = 0.0  # nats per latent dimension that are not penalized (0 = off)
    samples: int = 1  # posterior samples per example (k of the IWAE bound)
    tc_weight: float = 0.0  # beta-TCVAE: extra weight on the total correlation of q(z) (0 = off)
    mmd_weight: float = 0.0  # InfoVAE / WAE: weight of MMD(aggregate posterior q(z), prior p(z)) (0 = off)
    mmd_kernel: str = "imq"  # MMD kernel: imq (inverse multiquadric) | rbf; scale 2 * latent_dim

    def __post_init__(self) -> None:
        at_least = {"beta": 0, "warmup_epochs": 0, "free_bits": 0, "samples": 1, "tc_weight": 0,
                    "mmd_weight": 0}
        for name, low in at_least.items():
            _require(f"objective.{name}", getattr(self, name), getattr(self, name) >= low, f">= {low}")


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = 20  # passes over the training split
    batch_size: int = 128  # examples per optimizer step
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # L2 penalty Adam adds to the gradients (0 = off)
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    seed: int = 0  # seed of the initial weights, data order and noise (same seed, same run)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    eval_batch_size: int = 1000  # examples per forward call when evaluating
    early_stop_patience: int = 0  # epochs without validation improvement before stopping (0 = off)
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0 = end of epoch only)
    max_minutes: float = 0.0  # stop at the first epoch end after this much wall time (0 = off); resumable
    num_samples: int = 64  # images in the sample grid
    threads: int = 0  # torch CPU threads (0 = torch's default)
    progress: bool = True  # show a progress bar
    max_bad_steps: int = 20  # non-finite steps in a row before rolling back to the last checkpoint
    max_rollbacks: int = 3  # rollbacks (each lowers the learning rate) before training stops with an error
    lr_backoff: float = 0.5  # learning-rate factor applied at each rollback
    precision: str = "auto"  # auto (bf16 autocast where the hardware is fast at it) | fp32 | bf16
    compile: bool | str = "auto"  # torch.compile: auto (on for CUDA, CPU runs >= 50000 steps) | true | false
    streaming: bool = False  # read training images from disk each epoch (folder: data larger than RAM)
    num_workers: int = 2  # streaming: DataLoader worker processes decoding images
    tensorboard: bool = False  # also log each epoch's metrics to OUT/tensorboard (needs vaekit[tensorboard])

    def __post_init__(self) -> None:
        at_least = {"epochs": 0, "batch_size": 1, "eval_batch_size": 1, "early_stop_patience": 0,
                    "checkpoint_every": 0, "num_samples": 1, "threads": 0, "max_bad_steps": 1,
                    "max_rollbacks": 0, "weight_decay": 0, "grad_clip": 0, "num_workers": 0,
                    "max_minutes": 0}
        for name, low in at_least.items():
            _require(f"train.{name}", getattr(self, name), getattr(self, name) >= low, f">= {low}")
        _require("train.lr", self.lr, self.lr > 0, "> 0")
        _require("train.lr_backoff", self.lr_backoff, 0 < self.lr_backoff <= 1, "in (0, 1]")
        _require_seed("train.seed", self.seed)


SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's generators take seeds in [0, 2**63 - 1]


def _require_seed(key: str, value: int) -> None:
    """ConfigError unless a seed fits what torch.manual_seed and numpy accept."""
    _require(key, value, 0 <= value <= SEED_MAX, f"in [0, 2**63 - 1 = {SEED_MAX}]")


def _require(key: str, value: Any, ok: bool, what: str) -> None:
    """ConfigError unless ``ok`` holds and a float ``value`` is finite."""
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"config key '{key}' must be a finite number {what}, got {value!r}",
                          f"set {key} to a value {what}")


@dataclass
class Config:
    """One run: data + model + objective + train."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        return _build(cls, d, "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key a config accepts, e.g. 'model.latent_dim'."""
    keys = []
    for f in dataclasses.fields(cls):
        t = _hints(cls)[f.name]
        if dataclasses.is_dataclass(t):
            keys += all_keys(t, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(valid)
    return ConfigError(f"unknown config key '{key}'", hint)


def _convert(value: Any, t: Any, key: str) -> Any:
    """Convert a parsed value to type t, or raise a ConfigError naming key, value and type."""
    origin = typing.get_origin(t)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(t)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is list:
        (item,) = typing.get_args(t)
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
            value = [parse_value(v) for v in value]
        elif not isinstance(value, list | tuple):
            value = [value]
        return [_convert(v, item, key) for v in value]
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
    }[t]
    if not ok(value):
        raise ConfigError(
            f"config key '{key}' expects {t.__name__}, got {value!r} ({type(value).__name__})",
            f"give '{key}' a value of type {t.__name__}",
        )
    if t is float and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}", "give a finite value")
    if t is int and abs(value) > SEED_MAX:
        raise ConfigError(f"config key '{key}' = {value} does not fit in a 64-bit integer",
                          f"give '{key}' a value between -{SEED_MAX} and {SEED_MAX}")
    return t(value)


def _build(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(
            f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {d!r}",
            "write it as 'key: value' lines in YAML",
        )
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in names:
            raise _unknown(prefix + str(k), [prefix + n for n in sorted(names)] + all_keys())
        t = hints[k]
        if dataclasses.is_dataclass(t):
            kwargs[k] = _build(t, v, f"{prefix}{k}.")
        else:
            kwargs[k] = _convert(v, t, prefix + k)
    return cls(**kwargs)


class _AliasRefused(yaml.YAMLError):
    """A YAML anchor (&name) or alias (*name): refused, as a few aliases nest into gigabytes."""


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases: every YAML vaekit reads goes through it.

    A document of under 1 KB whose aliases refer to nested aliases ("billion laughs") expands into
    an exponentially large structure once copied or serialized; a config never needs them.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise _AliasRefused(f"YAML {kind}{event.anchor} at line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


def _safe_yaml(text: str) -> Any:
    """Parse YAML/JSON text with _NoAliasLoader (raises _AliasRefused, yaml.YAMLError)."""
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_value(text: str) -> Any:
    """A CLI value as YAML scalar/list: '16' -> 16, '1e-3' -> 0.001, 'true' -> True, '[1,2]'."""
    try:
        v = _safe_yaml(text)
    except _AliasRefused as e:
        raise ConfigError(f"command-line value {text!r} uses a {e} (anchors and aliases are not accepted)",
                          "write the value out in full, without & or * names") from None
    except yaml.YAMLError:
        return text
    if isinstance(v, str) and _looks_float(text):
        return float(text)
    return v


def _looks_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set d['a']['b'] = value for key 'a.b'; a bare section name sets its 'name' ('--data mnist')."""
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in ("data", "objective"):
        parts.append("name")
    valid = all_keys()
    if ".".join(parts) not in valid:
        raise _unknown(key, valid)
    node = d
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (a run's config.json is accepted too)."""
    p = Path(path)
    if p.exists() and not p.is_file():
        what = "a folder" if p.is_dir() else "not a regular file (a device, pipe or socket)"
        raise ConfigError(f"config file {str(p)!r} is {what}", "give the path of a YAML or JSON file")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist", "check the path")
    try:
        d = _safe_yaml(p.read_text())
    except _AliasRefused as e:
        raise ConfigError(f"config file {str(p)!r} uses a {e}: anchors and aliases are not accepted "
                          "(a few nested aliases can expand to gigabytes)",
                          "write the values out in full, without & or * names") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML/JSON: {e}", "fix its syntax") from None
    if isinstance(d, dict) and "config" in d and "format_version" in d:
        d = d["config"]
    if d is not None and not isinstance(d, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections at its top level, got "
                          f"{type(d).__name__} {str(d)[:80]!r}",
                          "write it as 'section:' lines with indented 'key: value' lines, e.g. 'train:\n"
                          "  epochs: 5'")
    return d or {}


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_description(name: str) -> str:
    """The first sentence of a preset file's leading comment: what ``vaekit presets`` shows."""
    text = []
    for line in preset_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        text.append(line.lstrip("#").strip())
    first = re.split(r"(?<!\bal)(?<!e\.g)\.(?:\s|$)", " ".join(text))[0]
    return first if len(first) <= 100 else first[:99].rstrip(" ,;:") + "\u2026"


def preset_path(name: str) -> Path:
    p = PRESET_DIR / f"{name}.yaml"
    if not p.is_file():
        close = difflib.get_close_matches(name, presets(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown preset {name!r}", hint + "available: " + ", ".join(presets()))
    return p


def make_config(
    config_file: str | Path | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Defaults <- preset or file <- dotted overrides, checked and typed."""
    if config_file and preset:
        raise ConfigError("both --config and --preset were given", "give one of them")
    d: dict[str, Any] = {}
    if preset:
        d = load_file(preset_path(preset))
    elif config_file:
        d = load_file(config_file)
    d = json.loads(json.dumps(d))  # deep copy, plain types
    for k, v in (overrides or {}).items():
        set_dotted(d, k, v)
    return Config.from_dict(d)


def save_json(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
