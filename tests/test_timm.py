"""Spatial-Mamba through timm's own API: registry, configs, feature backbone, offline checkpoint loading."""

from __future__ import annotations

import math
import socket

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config

from conftest import rel_err
from spatial_restore.archs import SpatialMamba, SpatialMambaBackbone, spatial_mamba
from spatial_restore.checkpoint import CheckpointMismatch, load_official_checkpoint

EXACT_PARAMS = {"T": 26_748_862, "S": 43_074_280, "B": 95_745_592}
# The fixture model's architecture, as create_model arguments (the rest of its config is the default).
TINY = dict(depths=[1, 2, 2, 1], dims=[16, 32, 64, 128], drop_path_rate=0.0)


def stage_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Stage resolutions: the stem halves twice and each downsampler once, rounding up (stride 2, padding 1)."""
    sizes = []
    for _ in range(4):
        h, w = (math.ceil(h / 4), math.ceil(w / 4)) if not sizes else (math.ceil(h / 2), math.ceil(w / 2))
        sizes.append((h, w))
    return sizes


@pytest.fixture(scope="module")
def tiny_file(load_ref, tmp_path_factory):
    """The fixture's weights as an official checkpoint file (a .pth with key ``model``)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"model": load_ref("tiny_model.pt")["state_dict"]}, path)
    return path


def create_tiny(tiny_file, **kwargs) -> torch.nn.Module:
    overlay = dict(file=str(tiny_file), num_classes=10)  # the file's head has 10 classes
    return timm.create_model("spatial_mamba_t", pretrained=True, pretrained_cfg_overlay=overlay, **TINY, **kwargs)


def test_list_models():
    assert timm.list_models("spatial_mamba*") == ["spatial_mamba_b", "spatial_mamba_s", "spatial_mamba_t"]


@pytest.mark.parametrize("variant", ["T", "S", "B"])
def test_create_model_exact_parameters_and_pretrained_cfg(ref, variant):
    model = timm.create_model(f"spatial_mamba_{variant.lower()}")
    assert type(model) is SpatialMamba and model.num_classes == 1000
    assert sum(p.numel() for p in model.parameters()) == EXACT_PARAMS[variant]
    official_keys = [line.split()[0] for line in (ref / f"keys_{variant}.txt").read_text().splitlines()]
    assert list(model.state_dict()) == official_keys
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == f"spatial_mamba_{variant.lower()}"
    assert (cfg["input_size"], cfg["num_classes"], cfg["classifier"], cfg["crop_pct"]) == ((3, 224, 224), 1000, "head", 0.875)
    assert resolve_model_data_config(model) == dict(
        input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875, crop_mode="center",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )
    assert model.get_submodule(cfg["first_conv"]).in_channels == 3


@pytest.mark.parametrize("size", [(224, 224), (100, 150)])
def test_features_only_equals_backbone_mode(size):
    torch.manual_seed(0)
    model = timm.create_model("spatial_mamba_t", features_only=True).eval()
    backbone = spatial_mamba("T", backbone=True).eval()
    backbone.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        feats, expected = model(x), backbone(x)
    assert type(model) is SpatialMambaBackbone
    assert [tuple(f.shape) for f in feats] == [(1, c, *hw) for c, hw in zip((64, 128, 256, 512), stage_sizes(*size))]
    assert all(f.is_contiguous() for f in feats)
    for f, e in zip(feats, expected):
        torch.testing.assert_close(f, e, rtol=0, atol=0)


@pytest.mark.parametrize("out_indices, stages", [((1, 3), (1, 3)), ((-1,), (3,)), ((0, 2), (0, 2))])
def test_out_indices_subsets(out_indices, stages):
    torch.manual_seed(0)
    model = timm.create_model("spatial_mamba_t", features_only=True, out_indices=out_indices).eval()
    backbone = spatial_mamba("T", backbone=True, out_indices=stages).eval()
    backbone.load_state_dict(model.state_dict(), strict=True)
    assert sorted(k.split(".")[0] for k in model.state_dict() if k.startswith("outnorm")) == [
        f"outnorm{i}" for i in stages for _ in ("weight", "bias")
    ]
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        feats, expected = model(x), backbone(x)
    info = model.feature_info
    assert info.out_indices == stages
    assert [f.shape[1] for f in feats] == info.channels() == [64 * 2**i for i in stages]
    assert [x.shape[-1] // f.shape[-1] for f in feats] == info.reduction() == [4 * 2**i for i in stages]
    for f, e in zip(feats, expected):
        torch.testing.assert_close(f, e, rtol=0, atol=0)


def test_feature_info_and_feature_cfg():
    model = timm.create_model("spatial_mamba_s", features_only=True)
    info = model.feature_info
    assert len(info) == 4 and info.out_indices == (0, 1, 2, 3)
    assert info.channels() == [64, 128, 256, 512]
    assert info.reduction() == [4, 8, 16, 32]
    assert info.module_name() == ["outnorm0", "outnorm1", "outnorm2", "outnorm3"]
    assert [model.get_submodule(name).normalized_shape for name in info.module_name()] == [(c,) for c in info.channels()]
    assert info.get_dicts(keys=["num_chs", "reduction"])[3] == dict(num_chs=512, reduction=32)
    # a feature model's cfg keeps the input config and drops the classifier's, as timm's feature wrappers do
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and "num_classes" not in cfg and "classifier" not in cfg


def test_pretrained_file_loads_offline_and_reproduces_the_fixture_logits(load_ref, tiny_file, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access while building a model from a local file")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    fx = load_ref("tiny_model.pt")
    model = create_tiny(tiny_file).double().eval()
    assert model.pretrained_cfg["file"] == str(tiny_file)
    with torch.no_grad():
        logits = model(fx["input"])
    assert rel_err(logits, fx["logits"]) < 1e-10  # README §6 float64 threshold

    # feature backbone from the same file: the official stage features through fresh (unit) outnorms
    feats_model = create_tiny(tiny_file, features_only=True).double().eval()
    with torch.no_grad():
        feats = feats_model(fx["input"])
    for i, f in enumerate(feats):
        stage = fx["features"][f"stage{i}_blocks_out"]
        assert rel_err(f, F.layer_norm(stage, stage.shape[-1:]).permute(0, 3, 1, 2)) < 1e-10


def test_pretrained_matches_load_official_checkpoint(tiny_file):
    for features_only in (False, True):
        model = create_tiny(tiny_file, features_only=features_only)
        direct = spatial_mamba("T", backbone=features_only, **TINY, **({} if features_only else {"num_classes": 10}))
        load_official_checkpoint(direct, tiny_file)
        assert model.state_dict().keys() == direct.state_dict().keys()
        assert all(torch.equal(v, direct.state_dict()[k]) for k, v in model.state_dict().items())


def test_pretrained_with_other_num_classes_gets_a_fresh_head(load_ref, tiny_file):
    state = load_ref("tiny_model.pt")["state_dict"]
    for num_classes in (3, 0):
        model = create_tiny(tiny_file, num_classes=num_classes)
        assert model.num_classes == num_classes
        body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
        assert body.keys() == {k for k in state if not k.startswith("head.")}
        assert all(torch.equal(v, state[k].float()) for k, v in body.items())
    assert isinstance(model.head, torch.nn.Identity)
    model = create_tiny(tiny_file, num_classes=3)
    assert model.head.weight.shape == (3, 128) and torch.equal(model.head.bias, torch.zeros(3))  # official init


def test_a_file_that_does_not_fit_is_reported_by_key(tiny_file):
    with pytest.raises(CheckpointMismatch, match=r"mis-shaped key\(s\)"):
        timm.create_model("spatial_mamba_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(tiny_file)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(img_size=256), TypeError, r"unsupported argument\(s\) \['img_size'\]"),
        (dict(global_pool="avg", patch_size=4), TypeError, r"\['global_pool', 'patch_size'\]"),
        (dict(features_only=True, feature_cls="hook"), TypeError, r"\['feature_cls'\]"),
        (dict(features_only=True, num_classes=10), TypeError, "num_classes has no meaning with features_only"),
        (dict(out_indices=(1, 2)), TypeError, "out_indices needs features_only=True"),
        (dict(features_only=True, out_indices=(4,)), ValueError, "stage indices in 0..3"),
        (dict(features_only=True, out_indices=(2, 1)), ValueError, "distinct ascending"),
        (dict(features_only=True, out_indices=2), ValueError, "got 2"),
        (dict(cache_dir="/tmp"), TypeError, "cache_dir is not used"),
        (dict(pretrained=True), ValueError, r"never downloaded; .*pretrained_cfg_overlay=dict\(file="),
        (dict(pretrained=True, pretrained_cfg_overlay=dict(url="https://example.com/w.pth")), ValueError, "never downloaded"),
        (dict(pretrained_cfg="in1k"), ValueError, "no pretrained tag 'in1k'"),
    ],
)
def test_unsupported_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        timm.create_model("spatial_mamba_t", **kwargs)
