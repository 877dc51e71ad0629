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

from vaekit import registry
from vaekit.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"
DEFAULT_PRESET = "digits-mlp"  # what 'vaekit train' and vaekit.train use without a preset or config file


@dataclass
class DataConfig:
    """Where examples come from and how they are preprocessed."""

    name: str = "digits"  # digits | mnist | fashion-mnist | cifar10 | npz:PATH | folder:PATH | csv:PATH
    data_dir: str | None = None  # where named data sets are looked for / downloaded to
    binarize: str = "none"  # none | static (fixed draw) | dynamic (fresh Bernoulli draw each step)
    binarize_seed: int = 0  # seed of the static draw, also used for evaluation splits
    valid_fraction: float = 0.1  # carved from train when a data set has no validation split
    classes: list[int] = field(default_factory=list)  # keep only these labels in every split ([] = all)
    exclude_classes: list[int] = field(default_factory=list)  # drop these labels from every split
    columns: dict[str, Any] = field(default_factory=dict)  # a table's column types: {name: type | drop}

    def __post_init__(self) -> None:
        _require_seed("data.binarize_seed", self.binarize_seed)
        require("data.valid_fraction", self.valid_fraction, 0 <= self.valid_fraction < 1, "in [0, 1)")


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
    denoise: str = "none"  # denoising VAE: encoder input noise flip:P | gaussian:S | saltpepper:P, or none

    def __post_init__(self) -> None:
        at_least = {"beta": 0, "warmup_epochs": 0, "free_bits": 0, "samples": 1, "tc_weight": 0,
                    "mmd_weight": 0}
        for name, low in at_least.items():
            require(f"objective.{name}", getattr(self, name), getattr(self, name) >= low, f">= {low}")


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
    graph: bool | str = False  # one CUDA graph per step: false | auto (on for CUDA where it can) | true
    streaming: bool = False  # read training images from disk each epoch (folder: data larger than RAM)
    num_workers: int = 2  # streaming: DataLoader worker processes decoding images
    tensorboard: bool = False  # also log each epoch's metrics to OUT/tensorboard (needs vaekit[tensorboard])

    def __post_init__(self) -> None:
        at_least = {"epochs": 0, "batch_size": 1, "eval_batch_size": 1, "early_stop_patience": 0,
                    "checkpoint_every": 0, "num_samples": 1, "threads": 0, "max_bad_steps": 1,
                    "max_rollbacks": 0, "weight_decay": 0, "grad_clip": 0, "num_workers": 0,
                    "max_minutes": 0}
        for name, low in at_least.items():
            require(f"train.{name}", getattr(self, name), getattr(self, name) >= low, f">= {low}")
        require("train.lr", self.lr, self.lr > 0, "> 0")
        require("train.lr_backoff", self.lr_backoff, 0 < self.lr_backoff <= 1, "in (0, 1]")
        _require_seed("train.seed", self.seed)


SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's generators take seeds in [0, 2**63 - 1]


def _require_seed(key: str, value: int) -> None:
    """ConfigError unless a seed fits what torch.manual_seed and numpy accept."""
    require(key, value, 0 <= value <= SEED_MAX, f"in [0, 2**63 - 1 = {SEED_MAX}]")


def require_sizes(key: str, sizes: list[int]) -> None:
    """ConfigError unless every size in a list of layer sizes is >= 1."""
    if any(n < 1 for n in sizes):
        raise ConfigError(f"config key '{key}' holds sizes that must each be >= 1, got {sizes}",
                          f"give {key} positive sizes, e.g. [256, 128]")


def require(key: str, value: Any, ok: bool, what: str) -> None:
    """ConfigError unless ``ok`` holds and a float ``value`` is finite."""
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"config key '{key}' must be a finite number {what}, got {value!r}",
                          f"set {key} to a value {what}")


@dataclass
class PartConfig:
    """The config of one registered part: ``name`` picks the part; the subclass each part declares
    (``Config`` on the part's class) adds its own options."""

    name: str = ""


def part(kind: str, default: str) -> Any:
    """A config field holding the config of a part of ``kind``, by default the part ``default``."""
    return field(default_factory=lambda: part_config(kind, default), metadata={"part": kind})


def part_config(kind: str, name: str, values: dict[str, Any] | None = None, prefix: str = "") -> PartConfig:
    """The typed config of the part registered as (kind, name), from a mapping of its options."""
    cls = registry.lookup(kind, name).Config
    return _build(cls, {**(values or {}), "name": name}, prefix)


@dataclass
class Config:
    """One run: data + model + objective + train, and the plugin modules that register its parts."""

    data: DataConfig = field(default_factory=DataConfig)
    model: PartConfig = part("model", "vae")  # the model structure
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    plugins: list[str] = field(default_factory=list)  # modules imported first: they register their parts

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        if isinstance(d, dict) and isinstance(d.get("plugins"), list | str):
            registry.load_plugins(plugin_modules(d["plugins"]))
        return _build(cls, d, "")


def plugin_modules(value: Any) -> list[str]:
    """The module names a ``plugins`` value holds: a list, or a string 'a,b' / '[a, b]'."""
    return _convert(value, list[str], "plugins")


def describe(cfg: PartConfig) -> str:
    """A part config in one line: 'vae (latent_dim 20, net mlp (hidden [400], activation relu), ...)'."""
    items = []
    for f in dataclasses.fields(cfg):
        if f.name != "name":
            v = getattr(cfg, f.name)
            items.append(f"{f.name} {describe(v) if isinstance(v, PartConfig) else v}")
    return cfg.name + (f" ({', '.join(items)})" if items else "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _part_kind(f: dataclasses.Field) -> str | None:
    return f.metadata.get("part")


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key a config accepts, e.g. 'model.latent_dim', 'model.prior.components': under a
    part, the options of every registered part of its kind."""
    keys = []
    for f in dataclasses.fields(cls):
        kind = _part_kind(f)
        if kind:
            sub: list[str] = []
            for name in registry.names(kind):
                sub += all_keys(registry.lookup(kind, name).Config, f"{prefix}{f.name}.")
            keys += sorted(set(sub), key=sub.index)
        elif dataclasses.is_dataclass(_hints(cls)[f.name]):
            keys += all_keys(_hints(cls)[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def part_sections(cls: type = Config, prefix: str = "") -> dict[str, str]:
    """Dotted section -> part kind for every part field: {'model': 'model', 'model.prior': 'prior', ...}
    (the nested parts of every registered model)."""
    out = {}
    for f in dataclasses.fields(cls):
        kind = _part_kind(f)
        key = prefix + f.name
        if kind:
            out[key] = kind
            for name in registry.names(kind):
                out.update(part_sections(registry.lookup(kind, name).Config, key + "."))
        elif dataclasses.is_dataclass(_hints(cls)[f.name]):
            out.update(part_sections(_hints(cls)[f.name], key + "."))
    return out


def _unknown(key: str, valid: list[str]) -> ConfigError:
    if key in RENAMED:
        return ConfigError(f"config key '{key}' is now '{RENAMED[key]}' (config format {CONFIG_FORMAT})",
                           f"write {RENAMED[key]} instead")
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
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' expects a mapping, got {value!r}",
                              f"write '{key}' as name: value lines in YAML, or --{key}.NAME VALUE")
        return {str(k): _column_spec(v, f"{key}.{k}") for k, v in value.items()}
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


def _column_spec(value: Any, key: str) -> Any:
    """One entry of data.columns: a type name (or ``drop``), or {type, order: [labels...]}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) <= {"type", "order"}:
        spec = {"type": str(value.get("type", "ordinal"))}
        if "order" in value:
            spec["order"] = [str(v) for v in _convert(value["order"], list[str], key + ".order")]
        return spec
    raise ConfigError(f"config key '{key}' = {value!r} is not a column type",
                      "give a type (continuous, integer, categorical, ordinal, boolean, datetime), drop, "
                      "or {type: ordinal, order: [...]}")


def _build(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(
            f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {d!r}",
            "write it as 'key: value' lines in YAML",
        )
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in fields:
            if issubclass(cls, PartConfig) and prefix + str(k) not in RENAMED:
                raise _not_an_option(cls, d.get("name"), str(k), prefix)
            raise _unknown(prefix + str(k), [prefix + n for n in sorted(fields)] + all_keys())
        kind = _part_kind(fields[k])
        if kind:
            kwargs[k] = _build_part(kind, v, fields[k], f"{prefix}{k}.")
        elif dataclasses.is_dataclass(hints[k]):
            kwargs[k] = _build(hints[k], v, f"{prefix}{k}.")
        else:
            kwargs[k] = _convert(v, hints[k], prefix + k)
    return cls(**kwargs)


def _not_an_option(cls: type, name: Any, key: str, prefix: str) -> ConfigError:
    """The part ``name`` has no option ``key``: say which options it has and which parts take ``key``."""
    section = prefix.rstrip(".")
    kind = part_sections().get(section)
    takers = [n for n in registry.names(kind) if key in _option_names(kind, n)]
    own = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
    fix = f"its options are: {', '.join(own)}" if own else "it takes no options"
    if takers:
        fix += f"; '{key}' is an option of {section} {' / '.join(takers)} ({section}.name={takers[0]})"
    return ConfigError(f"config key '{prefix}{key}': the {section} part {name!r} has no option '{key}'", fix)


def _build_part(kind: str, v: Any, f: dataclasses.Field, prefix: str) -> PartConfig:
    """A part section: a name ('prior: vamp') or a mapping with an optional name and the options."""
    v = {"name": v} if isinstance(v, str) else v
    if not isinstance(v, dict) or not isinstance(v.get("name", ""), str):
        raise ConfigError(f"config section '{prefix.rstrip('.')}' must be a {kind} name or a mapping "
                          f"with a 'name', got {v!r}", f"write e.g. '{prefix.rstrip('.')}: {{name: ...}}'")
    name = v.get("name") or f.default_factory().name
    return part_config(kind, name, {n: x for n, x in v.items() if n != "name"}, prefix)


CONFIG_FORMAT = 2  # the config layout config.json holds; 1 was one flat model section (vaekit 0.1)
# format-1 keys of the model section and where they live now (a hint when an old key is used)
RENAMED = {
    "model.kind": "model.name",
    "model.hidden": "model.net.hidden (mlp) or model.net.width (conv, resnet)",
    "model.channels": "model.net.channels",
    "model.res_blocks": "model.net.blocks",
    "model.activation": "model.net.activation",
    "model.likelihood_scale": "model.likelihood.scale",
    "model.likelihood_sigma": "model.likelihood.sigma",
    "model.mixture_components": "model.likelihood.components",
    "model.prior_components": "model.prior.components",
    "model.flow_steps": "model.posterior.steps",
    "model.flow_hidden": "model.posterior.hidden",
    "model.flow_context": "model.posterior.context",
}


def migrate_v1(d: dict[str, Any], event_shape: tuple[int, ...]) -> dict[str, Any]:
    """A format-1 config (one flat model section, with the defaults of that version filled in, as
    config.json holds it) as format 2: each part its own section with only its own options.
    ``event_shape`` resolves the old ``net: auto`` the way that version did."""
    old = {"kind": "vae", "latent_dim": 16, "latent_dims": [], "latent_channels": [], "net": "auto",
           "hidden": [512, 256], "channels": [32, 64], "res_blocks": 1, "activation": "relu",
           "likelihood": "bernoulli", "likelihood_scale": "global", "likelihood_sigma": 0.1,
           "mixture_components": 5, "prior": "normal", "prior_components": 50, "posterior": "gaussian",
           "flow_steps": 2, "flow_hidden": 256, "flow_context": 32, "conditional": False,
           **d.get("model", {})}
    width = old["hidden"][0] if old["hidden"] else 256
    net = old["net"]
    if net == "auto":
        image = len(event_shape) == 3
        square_28_32 = image and event_shape[1] == event_shape[2] and event_shape[1] in (28, 32)
        net = "resnet" if old["kind"] == "hierarchical" and square_28_32 else (
            "conv" if image and min(event_shape[1:]) >= 16 else "mlp")
    nets = {"mlp": {"hidden": old["hidden"]}, "conv": {"channels": old["channels"], "width": width},
            "resnet": {"channels": old["channels"], "width": width, "blocks": old["res_blocks"]}}
    likelihood = {"gaussian": {"scale": old["likelihood_scale"], "sigma": old["likelihood_sigma"]},
                  "logistic-mixture": {"components": old["mixture_components"]}}.get(old["likelihood"], {})
    model: dict[str, Any] = {
        "name": old["kind"],
        "conditional": old["conditional"],
        "net": {"name": net, "activation": old["activation"], **nets.get(net, {})},
        "likelihood": {"name": old["likelihood"], **likelihood},
    }
    if old["kind"] == "hierarchical":
        model.update(latent_dims=old["latent_dims"], latent_channels=old["latent_channels"], width=width)
    else:
        components = {"components": old["prior_components"]} if old["prior"] in ("mog", "vamp") else {}
        flow = {"steps": old["flow_steps"], "hidden": old["flow_hidden"], "context": old["flow_context"]}
        model.update(latent_dim=old["latent_dim"], prior={"name": old["prior"], **components},
                     posterior={"name": old["posterior"], **(flow if old["posterior"] == "iaf" else {})})
    return {**d, "model": model}


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


MAPPING_KEYS = ("data.columns.",)  # mappings whose keys the data names (a table's columns)


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set d['a']['b'] = value for key 'a.b'. A section that picks a part by name takes the name itself
    ('--model.prior vamp', '--data mnist', '--objective iwae'); a new part drops the options of the
    part it replaces that it does not have (iaf's steps when the posterior becomes gaussian)."""
    sections = part_sections()
    parts = key.split(".")
    if key in sections or key in ("data", "objective"):
        parts.append("name")
    valid = all_keys()
    if ".".join(parts) not in valid and not key.startswith(MAPPING_KEYS):
        raise _unknown(key, valid)
    node = d
    for i, p in enumerate(parts[:-1]):
        child = node.get(p)
        child = {"name": child} if isinstance(child, str) else child if isinstance(child, dict) else {}
        node[p] = node = child
        section = ".".join(parts[: i + 1])
        if section in sections and parts[i + 1:] == ["name"] and isinstance(value, str):
            keep = _option_names(sections[section], value)
            for other in [n for n in node if n != "name" and n not in keep]:
                del node[other]
    node[parts[-1]] = value


def _option_names(kind: str, name: str) -> set[str]:
    """The options (and sub-sections) the part ``name`` of ``kind`` has; none when there is no such
    part (its build then names the unknown part)."""
    try:
        cls = registry.lookup(kind, name).Config
    except ConfigError:
        return set()
    return {f.name for f in dataclasses.fields(cls)}


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
