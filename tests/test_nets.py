"""The fully connected building blocks, and the weight layout older files kept."""

from __future__ import annotations

import torch

from vaekit.config import make_config
from vaekit.models import build_model
from vaekit.nets.mlp import legacy_transposed
from vaekit.runs import checkpoint
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import FORMAT_VERSION, save_tensors
from vaekit.schema import DataSchema


def _model(**overrides):
    torch.manual_seed(0)
    cfg = make_config(overrides={"model.net.hidden": [6, 5], "model.latent_dim": 3, **overrides})
    return build_model(cfg.model, DataSchema.for_shape((1, 4, 4), 17, 10))


def test_the_mlp_weights_are_the_ones_format_1_files_transposed():
    names = legacy_transposed(_model())
    assert names == [f"{net}.net.{i}.weight" for net in ("encoder", "decoder") for i in (0, 2, 4)]
    hierarchical = _model(**{"model.name": "hierarchical", "model.latent_dims": [2], "model.net": "mlp",
                             "model.net.hidden": [6], "model.width": 8})
    assert legacy_transposed(hierarchical) == [
        "encoder.backbone.net.0.weight", "encoder.backbone.net.2.weight",
        "decoder.net.0.weight", "decoder.net.2.weight"]


def test_a_format_1_weight_file_loads_transposed_with_its_adam_moments(tmp_path, monkeypatch):
    """Format 1 stored the MLP weights [in, out] (the removed ``Dense`` trick); the Adam moments of a
    parameter are ``optim.<index>.exp_avg(_sq)``. Loading turns both into nn.Linear's [out, in]."""
    model = _model()
    assert FORMAT_VERSION == 2
    index = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    dense = legacy_transposed(model)
    old = {f"model.{k}": (v.t() if k in dense else v) for k, v in model.state_dict().items()}
    name = "encoder.net.2.weight"  # [5, 6] in today's layout
    moment = torch.arange(30.0).view(5, 6)
    old[f"optim.{index[name]}.exp_avg"] = moment.t().contiguous()
    path = tmp_path / "old.safetensors"
    with monkeypatch.context() as m:  # written as vaekit 0.1 wrote its files
        m.setattr(checkpoint, "FORMAT_VERSION", 1)
        save_tensors(path, old)
    with torch.no_grad():
        fresh = _model(**{"train.seed": 1})
        for p in fresh.parameters():
            p.zero_()
    assert checkpoint.load_versioned(path)[2] == 1
    upgraded, _ = rd.load_weights_into(fresh, path)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(upgraded[f"optim.{index[name]}.exp_avg"], moment)
    save_tensors(path, {f"model.{k}": v for k, v in model.state_dict().items()})  # today's format: as is
    tensors, _, version = checkpoint.load_versioned(path)
    assert version == 2 and rd.upgrade_layout(model, tensors, version) is tensors
