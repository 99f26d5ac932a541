"""Official-format checkpoints load strictly and safely; mismatches name the offending keys."""

from __future__ import annotations

import json

import pytest
import torch

from spatial_restore.archs import SpatialMamba, SpatialMambaBackbone
from spatial_restore.checkpoint import (
    CheckpointMismatch,
    load_official_checkpoint,
    load_state_dict_file,
    save_safetensors,
)


@pytest.fixture()
def tiny(load_ref, ref):
    cfg = json.loads((ref / "configs.json").read_text())["tiny"]["constructor_kwargs"]
    return cfg, load_ref("tiny_model.pt")


def test_official_checkpoint_reproduces_fixture_logits(tiny, tmp_path):
    cfg, fx = tiny
    path = tmp_path / "official.pth"
    torch.save({"model": fx["state_dict"], "epoch": 3}, path)
    model = load_official_checkpoint(SpatialMamba(**cfg).double(), path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(fx["input"]), fx["logits"], rtol=1e-10, atol=1e-12)


def test_wrong_shape_names_the_key(tiny, tmp_path):
    cfg, fx = tiny
    sd = dict(fx["state_dict"])
    sd["layers.1.blocks.0.self_attention.A_logs"] = torch.zeros(64, 2, dtype=torch.float64)
    del sd["head.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatch) as err:
        load_official_checkpoint(SpatialMamba(**cfg).double(), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "layers.1.blocks.0.self_attention.A_logs: " in msg and "[64, 2] vs model [64, 1]" in msg
    assert "head.bias" in msg and "extra.weight" in msg


def test_backbone_takes_classifier_weights(tiny, tmp_path):
    cfg, fx = tiny
    torch.save({"model": fx["state_dict"]}, tmp_path / "official.pth")
    backbone = load_official_checkpoint(SpatialMambaBackbone(**cfg).double(), tmp_path / "official.pth").eval()
    classifier = SpatialMamba(**cfg).double().eval()
    classifier.load_state_dict(fx["state_dict"])
    with torch.no_grad():
        feats = backbone(fx["input"])
        stages = classifier.forward_stages(fx["input"])
    for i, f in enumerate(feats):
        expected = backbone.get_submodule(f"outnorm{i}")(stages[i][0]).permute(0, 3, 1, 2)
        torch.testing.assert_close(f, expected)


class NotATensor:
    """Any class in a pickle means unpickling would import and run code."""


def test_pickles_with_code_are_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "obj": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointMismatch, match="weights_only"):
        load_state_dict_file(tmp_path / "evil.pth")


def test_safetensors_round_trip_and_nested_unwrap(tmp_path):
    model = SpatialMamba(depths=[1, 1, 1, 1], dims=8, num_classes=2)
    path = save_safetensors(model, tmp_path / "sub" / "m.safetensors", {"arch": "SpatialMamba"})
    loaded = load_state_dict_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    torch.save({"params_ema": model.state_dict(), "params": {}}, tmp_path / "basicsr.pth")
    assert set(load_state_dict_file(tmp_path / "basicsr.pth")) == set(model.state_dict())
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "missing.safetensors")
