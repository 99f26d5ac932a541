"""Weights registry: models built from cards, strict loading, clear errors for what is missing."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from spatial_restore.archs import SpatialMambaUNet
from spatial_restore.checkpoint import CheckpointMismatch, save_safetensors
from spatial_restore.weights import SHIPPED, WEIGHTS_DIR, ModelCardError, ModelNotFound, load_model


def make_tiny(tmp_path, name: str = "tiny", **card_fields):
    torch.manual_seed(0)
    net = SpatialMambaUNet.from_preset("tiny")
    save_safetensors(net, tmp_path / f"{name}.safetensors")
    card = {"arch": "SpatialMambaUNet", "preset": "tiny", "task": "denoise", "training": {"iterations": 0}, **card_fields}
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    return net


def test_load_from_safetensors_and_card(tmp_path):
    net = make_tiny(tmp_path)
    for path in (tmp_path / "tiny.safetensors", tmp_path / "tiny.json"):
        model, card = load_model(path)
        assert isinstance(model, SpatialMambaUNet) and not model.training
        assert card.task == "denoise" and card.extra["training"] == {"iterations": 0}
        for key, value in net.state_dict().items():
            assert torch.equal(model.state_dict()[key], value)


def test_shape_mismatch_is_reported_by_key(tmp_path):
    make_tiny(tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps({"arch": "SpatialMambaUNet", "preset": "tiny", "task": "denoise",
                                                    "kwargs": {"widths": [16, 32, 64, 128]}}))
    with pytest.raises(CheckpointMismatch, match=r"\d+ mis-shaped key\(s\): [^;]+ \(\+\d+ more\)") as err:
        load_model(tmp_path / "tiny.safetensors")
    assert "\n" not in str(err.value) and len(str(err.value)) < 1000  # summarised, not every key


def test_corrupt_safetensors_names_the_file(tmp_path):
    make_tiny(tmp_path)
    (tmp_path / "tiny.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointMismatch, match=r"tiny\.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "tiny.safetensors")


def test_card_errors(tmp_path):
    make_tiny(tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps({"arch": "NoSuchNet", "task": "denoise"}))
    with pytest.raises(ModelCardError, match="unknown arch 'NoSuchNet'"):
        load_model(tmp_path / "tiny.safetensors")
    (tmp_path / "tiny.json").write_text(json.dumps({"preset": "tiny"}))
    with pytest.raises(ModelCardError, match=r"missing field\(s\) \['arch', 'task'\]"):
        load_model(tmp_path / "tiny.safetensors")
    (tmp_path / "tiny.json").unlink()
    with pytest.raises(ModelNotFound, match="no model card tiny.json beside it"):
        load_model(tmp_path / "tiny.safetensors")


def test_missing_shipped_weights_say_so(monkeypatch, tmp_path):
    monkeypatch.setattr("spatial_restore.weights.WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelNotFound, match=f"shipped model 'default' is not installed: {SHIPPED['default']}"):
        load_model("default")
    with pytest.raises(ModelNotFound, match="neither a shipped name"):
        load_model("no-such-model")


def test_shipped_registry_points_into_the_package():
    assert WEIGHTS_DIR.name == "weights" and (WEIGHTS_DIR / "README.md").is_file()
    assert SHIPPED["default"] == "spatial_mamba_unet_small_denoise_blind"


def test_task_variants(tmp_path):
    make_tiny(tmp_path, "deblur")
    make_tiny(tmp_path, "multi", tasks={"deblur": {"weights": "deblur.safetensors", "blur": "motion"}})
    _, card = load_model(tmp_path / "multi.json", task="deblur")
    assert card.task == "deblur" and card.weights.name == "deblur.safetensors" and card.extra["blur"] == "motion"
    with pytest.raises(ModelCardError, match=r"task 'sr' not offered; available: \['denoise', 'deblur'\]"):
        load_model(tmp_path / "multi.json", task="sr")


def test_basicsr_checkpoint_with_options_yaml(tmp_path):
    """experiments/<name>/models/net_g_X.pth with params_ema, described by experiments/<name>/<name>.yml."""
    torch.manual_seed(1)
    net = SpatialMambaUNet.from_preset("tiny")
    exp = tmp_path / "experiments" / "denoise_tiny"
    (exp / "models").mkdir(parents=True)
    torch.save({"params": {k: torch.zeros_like(v) for k, v in net.state_dict().items()},
                "params_ema": net.state_dict()}, exp / "models" / "net_g_100.pth")
    options = {"name": "denoise_tiny", "network_g": {"type": "SpatialMambaUNet", "widths": [8, 16, 32, 64],
                                                     "depths": [1, 1, 1, 1], "num_refinement": 1, "mlp_ratio": 2.0}}
    (exp / "denoise_tiny.yml").write_text(yaml.safe_dump(options))
    model, card = load_model(exp / "models" / "net_g_100.pth")
    assert card.task == "denoise_tiny"
    for key, value in net.state_dict().items():  # params_ema preferred over params
        assert torch.equal(model.state_dict()[key], value)
    (exp / "denoise_tiny.yml").unlink()
    with pytest.raises(ModelNotFound, match="no basicsr options YAML with 'network_g'"):
        load_model(exp / "models" / "net_g_100.pth")
