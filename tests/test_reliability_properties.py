"""Property-based tests: whatever a config file, a command line, an image folder or a Python data
set holds, vaekit either accepts it (and the result is sound) or refuses it with its own error."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaekit.cli import _config_options, _overrides, build_parser
from vaekit.config import Config, all_keys, make_config
from vaekit.data import load_dataset
from vaekit.data.base import DataSet, Split
from vaekit.errors import ConfigError, DataError
from vaekit.training.session import check_data_fits

SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLES = {"config-file": 60, "config-text": 60, "command-line": 60, "image-folder": 40, "python-data": 60}

_NAMES = sorted({k.split(".")[0] for k in all_keys()} | {k.split(".")[1] for k in all_keys() if "." in k})
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["mlp", "conv", "gaussian", "bernoulli", "iwae", "elbo", "digits", "1e-3", "[8, 4]"]),
)
_keys = st.one_of(st.sampled_from(_NAMES), st.text(min_size=1, max_size=10))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=12,
)
_wild = st.dictionaries(
    st.one_of(st.sampled_from(["data", "model", "objective", "train"]), _keys),
    st.one_of(st.dictionaries(st.one_of(st.sampled_from(_NAMES), _keys), _values, max_size=5), _values),
    max_size=4,
)


def _typed(default, help_text: str) -> st.SearchStrategy:
    """Plausible values for a config option with this default (mostly valid, some edge cases);
    strings come from the choices its help lists ('mlp | conv | ...')."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-1, 64)
    if isinstance(default, float):
        return st.one_of(st.floats(0, 1), st.sampled_from([0.0, 2.0, -1.0, float("nan")]))
    if isinstance(default, list):
        floats = bool(default) and isinstance(default[0], float)
        return st.lists(st.floats(0, 1) if floats else st.integers(0, 64), max_size=3)
    text = help_text.split("choices:")[-1].split("(default")[0].split("[")[0]
    choices = [w.split()[0] for w in text.split("|") if w.strip()] or ["x"]
    return st.one_of(st.none(), st.sampled_from(choices))


def _nest(flat: dict[str, object]) -> dict[str, object]:
    """{'model.prior.name': 'vamp'} -> {'model': {'prior': {'name': 'vamp'}}}."""
    out: dict[str, object] = {}
    for key, value in flat.items():
        node = out
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return out


_typed_doc = st.fixed_dictionaries(
    {}, optional={key: _typed(default, help_) for key, help_, default in _config_options(Config, "")}
).map(_nest)
_sections = st.one_of(_typed_doc, _wild)


def _accept_or_config_error(make) -> Config | None:
    try:
        cfg = make()
    except ConfigError as e:
        assert e.problem and e.fix
        event("refused")
        return None
    event("accepted")
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # a run's config.json reloads
    return cfg


@settings(SETTINGS, max_examples=EXAMPLES["config-file"])
@given(doc=_sections)
def test_any_config_file_gives_a_config_or_a_config_error(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        _accept_or_config_error(lambda: make_config(config_file=path))


@settings(SETTINGS, max_examples=EXAMPLES["config-text"])
@given(text=st.one_of(st.text(max_size=80), st.sampled_from(["train: {lr: .nan}", "model: [", ": :", "- 1"])))
def test_any_config_text_gives_a_config_or_a_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text)
        _accept_or_config_error(lambda: make_config(config_file=path))


PARSER = build_parser()
_argv = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(all_keys()), st.text(min_size=1, max_size=12)),
        st.one_of(st.text(max_size=8), st.sampled_from(["0", "-1", "nan", "inf", "1e9", "[1,2]", "true"])),
    ),
    max_size=4,
)


@settings(SETTINGS, max_examples=EXAMPLES["command-line"])
@given(pairs=_argv)
@example(pairs=[("h", "")])  # --h, like --he, --hel, is argparse's abbreviation of --help
def test_any_command_line_gives_a_config_or_a_clear_error(pairs):
    argv = ["train", "--out", "unused"] + [a for k, v in pairs for a in (f"--{k}", v)]
    shown = io.StringIO()
    try:
        with contextlib.redirect_stdout(shown):
            ns, rest = PARSER.parse_known_args(argv)
    except SystemExit as e:  # argparse's own usage message (e.g. an option without a value), or
        # its help (exit 0) for an abbreviation of --help
        assert e.code == 2 or (e.code == 0 and shown.getvalue().startswith("usage: vaekit train")), e.code
        return
    _accept_or_config_error(lambda: make_config(ns.config, ns.preset, _overrides(ns, rest)))


_image = st.fixed_dictionaries(
    {
        "folder": st.sampled_from(["", "", "cat", "dog"]),
        "size": st.sampled_from([(4, 4), (4, 4), (5, 4)]),
        "mode": st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]),
        "format": st.sampled_from(["png", "bmp", "gif", "jpeg", "webp"]),
        "damage": st.sampled_from(["none", "none", "none", "truncate", "garbage", "empty"]),
    }
)


@st.composite
def _folders(draw) -> list[dict]:
    """Image files: 'wild' (anything goes) or 'clean' (one size, intact, loose or all in classes)."""
    images = draw(st.lists(_image, min_size=0 if draw(st.booleans()) else 3, max_size=12))
    if draw(st.booleans()):
        labeled = draw(st.booleans())
        for spec in images:
            spec.update(size=(4, 4), damage="none", folder=spec["folder"] or "cat" if labeled else "")
    return images


def _write_image(path: Path, spec: dict, rng: np.random.Generator) -> None:
    mode = spec["mode"] if spec["format"] in ("png", "gif") or spec["mode"] in ("L", "RGB") else "RGB"
    im = Image.fromarray(rng.integers(0, 256, (spec["size"][1], spec["size"][0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.convert(mode).save(buf, format=spec["format"].upper())
    data = buf.getvalue()
    data = {
        "none": data,
        "truncate": data[: len(data) // 2],
        "garbage": rng.bytes(40),
        "empty": b"",
    }[spec["damage"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@settings(SETTINGS, max_examples=EXAMPLES["image-folder"])
@given(images=_folders(), seed=st.integers(0, 2**16))
def test_any_image_folder_gives_a_data_set_or_a_data_error(images, seed):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        root.mkdir()
        for i, spec in enumerate(images):
            _write_image(root / spec["folder"] / f"{i}.{spec['format']}", spec, rng)
        try:
            ds = load_dataset(f"folder:{root}")
        except DataError as e:
            assert e.problem and e.fix
            event("refused")
            return
    event("loaded")
    n = sum(len(ds.split(s)) for s in ("train", "valid", "test"))
    assert n == len(images) and len(ds.train) > 0
    for s in ("train", "valid", "test"):
        x, y = ds.split(s).x, ds.split(s).y
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] in (1, 3)
        assert tuple(x.shape[1:]) == ds.event_shape
        if ds.num_classes is None:
            assert y is None
        else:
            assert y is not None and ((0 <= y) & (y < ds.num_classes)).all()


_special = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 2.0, 1e30, 0.5])


@settings(SETTINGS, max_examples=EXAMPLES["python-data"])
@given(
    n=st.integers(1, 6),
    specials=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 15), _special), max_size=3),
    likelihood=st.sampled_from(["bernoulli", "gaussian"]),
    seed=st.integers(0, 100),
)
def test_any_python_data_set_is_trainable_or_refused(n, specials, likelihood, seed):
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    for row, col, value in specials:
        x.view(n, -1)[row % n, col] = value
    split = Split(x)
    ds = DataSet("h", split, split, split, "image", None)
    cfg = make_config(overrides={"model.likelihood": likelihood, "data.binarize": "none"})
    try:
        check_data_fits(cfg, ds)
    except DataError as e:
        assert e.problem and e.fix
        event("refused")
        return
    event("accepted")
    assert torch.isfinite(x).all()
    if likelihood == "bernoulli":
        assert 0 <= x.min() and x.max() <= 1


def _doc_rows() -> dict[str, str]:
    """{test name: 'Tried' column} of the tables in docs/reliability.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[3].startswith("`test_"):
            rows[cells[3].strip("`")] = cells[1]
    return rows


def test_docs_table_matches_the_tests():
    """The counts docs/reliability.md quotes are the ones the tests use."""
    import test_bad_input
    import test_fuzz_checkpoint as fuzz
    import test_kill
    import test_reliability

    rows = _doc_rows()
    fuzz_loads = len(fuzz.KINDS) * 2
    expected = {
        "test_killed_and_resumed_run_equals_uninterrupted_run_bitwise": (
            f"{test_kill.RANDOM_KILLS} (slow: {test_kill.SLOW_RANDOM_KILLS})"
        ),
        "test_mutated_files_only_ever_give_checkpoint_error": (
            f"{fuzz_loads * fuzz.N_PER_KIND} (slow: {fuzz_loads * fuzz.SLOW_N_PER_KIND})"
        ),
        "test_write_failing_half_way_keeps_the_previous_checkpoint": str(
            len(test_reliability.HALF_WAY_FAILURES)
        ),
        "test_nan_gradients_skip_the_update": str(len(test_reliability.NAN_GRAD_STEPS)),
        "test_the_code_base_never_unpickles": f"{len(test_reliability.UNSAFE_CALLS)} patterns",
    }
    expected |= {f"test_any_{k.replace('-', '_')}": str(v) for k, v in EXAMPLES.items()}
    expected = {next(t for t in rows if t.startswith(k)): v for k, v in expected.items()}
    for name, fn in vars(test_bad_input).items():  # one refusal per refused()/pytest.raises() call
        if name.startswith("test_"):
            source = inspect.getsource(fn)
            params = next(
                (len(m.args[1]) for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"), 1
            )
            expected[name] = str(params * (source.count("refused(") + source.count("pytest.raises(")))
    assert {k: rows.get(k) for k in expected} == expected
