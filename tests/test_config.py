"""Config files, presets and dotted overrides: typed, checked, with helpful errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaekit.config import Config, all_keys, make_config, parse_value, presets
from vaekit.errors import ConfigError
from vaekit.schema import DataSchema


def test_defaults_roundtrip_through_dict():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_presets_load_and_differ():
    names = presets()
    assert {"digits-mlp", "mnist-mlp", "mnist-conv"} <= set(names)
    assert make_config(preset="mnist-conv").model.net.name == "conv"
    assert make_config(preset="digits-mlp").data.name == "digits"


def test_dotted_overrides_are_typed():
    cfg = make_config(
        preset="digits-mlp",
        overrides={"model.latent_dim": 4, "train.lr": 0.01, "data": "mnist", "model.net.hidden": "[64,32]"},
    )
    assert cfg.model.latent_dim == 4 and cfg.train.lr == 0.01
    assert cfg.data.name == "mnist" and cfg.model.net.hidden == [64, 32]


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="model.latent_dim"):
        make_config(overrides={"model.latnet_dim": 3})


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match="train.epochs.*int"):
        make_config(overrides={"train.epochs": "many"})
    with pytest.raises(ConfigError, match="train.epochs"):
        make_config(overrides={"train.epochs": 2.5})


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="digits-mlp"):
        make_config(preset="digits-mpl")
    with pytest.raises(ConfigError, match="does not exist"):
        make_config(config_file=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        make_config(config_file=bad)


def test_parse_value():
    assert parse_value("16") == 16
    assert parse_value("1e-3") == 0.001
    assert parse_value("true") is True
    assert parse_value("mnist") == "mnist"
    assert parse_value("npz:../x.npz") == "npz:../x.npz"


@settings(max_examples=200, deadline=None)
@given(
    key=st.one_of(st.sampled_from(all_keys()), st.text(min_size=1, max_size=20)),
    value=st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=10), st.booleans(),
                    st.lists(st.integers(), max_size=3), st.none()),
)
def test_any_override_gives_a_config_or_a_config_error(key, value):
    try:
        cfg = make_config(overrides={key: value})
    except ConfigError as e:
        assert e.fix
    else:
        assert isinstance(cfg, Config)


@pytest.mark.parametrize("preset", presets())
def test_the_size_estimate_counts_the_parameters_the_model_has(preset):
    """parameter_count builds on the meta device; it must count what the real model holds."""
    from vaekit.models import build_model
    from vaekit.models.sizes import parameter_count
    from vaekit.schema import Column

    cfg = make_config(preset=preset)
    shape = (1, 8, 8) if preset.startswith("digits") else (1, 28, 28)
    schema = DataSchema.for_shape(shape, 256, 10)
    if preset == "table":
        columns = (Column("a", "categorical", ("x", "y", "z")), Column("b", modes=((0.0, 1.0), (5.0, 2.0)),
                                                                     bounds=(0.0, 9.0), missing=True))
        schema = DataSchema("table", (7,), columns=columns)
    model = build_model(cfg.model, schema)
    real = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert parameter_count(cfg.model, schema) == real > 0


def test_anchors_and_aliases_never_load_but_plain_yaml_does(tmp_path):
    from vaekit.config import load_file

    p = tmp_path / "c.yaml"
    p.write_text("model:\n  hidden: [8, 4]\ntrain: {epochs: 2}\n")
    assert load_file(p) == {"model": {"hidden": [8, 4]}, "train": {"epochs": 2}}
    assert parse_value("[8, 4]") == [8, 4] and parse_value("1e-3") == 0.001
    for text in ("a: &x 1\nb: *x\n", "- &l [1]\n", "x: !!str &s 3\n"):
        p.write_text(text)
        with pytest.raises(ConfigError, match="anchors and aliases are not accepted"):
            load_file(p)
