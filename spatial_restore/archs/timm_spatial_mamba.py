"""Spatial-Mamba T/S/B as timm models: ``timm.create_model("spatial_mamba_t", features_only=True)``.

timm's generic builder would wrap the classifier in its own feature extractor and load weights with its
own loader. Neither fits: our stage outputs come from the backbone's ``outnorm{i}`` layers, and official
checkpoints go through ``load_official_checkpoint``, which checks every key. So each entry point builds
the project's classes itself and attaches what timm users read (``pretrained_cfg``, ``feature_info``).
Every argument is either used or refused, and nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import FeatureInfo, generate_default_cfgs, register_model, resolve_pretrained_cfg

from ..checkpoint import load_official_checkpoint
from .spatial_mamba_arch import VARIANTS, spatial_mamba

# Constructor arguments that change the network (the official ones the computation uses).
MODEL_KWARGS = frozenset(
    {"in_chans", "num_classes", "depths", "dims", "d_state", "dt_init", "mlp_ratio", "drop_rate", "drop_path_rate",
     "use_checkpoint", "backend"}
)
# Cfg keys that describe the classifier, dropped from a feature model's cfg as timm does.
HEAD_CFG_KEYS = ("num_classes", "classifier")

# The official evaluation pipeline (Swin-style): bicubic resize to 256, centre crop 224, ImageNet mean/std.
_CFG: dict[str, Any] = dict(
    input_size=(3, 224, 224),
    interpolation="bicubic",
    crop_pct=0.875,
    crop_mode="center",
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    num_classes=1000,
    first_conv="patch_embed.conv1.conv",
    classifier="head",
    origin_url="https://github.com/EdwardChasel/Spatial-Mamba",
    paper_name="Spatial-Mamba: Effective Visual State Space Models via Structure-Aware State Fusion",
)
default_cfgs = generate_default_cfgs({f"spatial_mamba_{variant.lower()}": dict(_CFG) for variant in VARIANTS})


def _stage_indices(name: str, out_indices: Sequence[int] | None, num_stages: int) -> tuple[int, ...]:
    """Distinct ascending stage indices; negative ones count from the last stage, as in timm."""
    if out_indices is None:
        return tuple(range(num_stages))
    valid = isinstance(out_indices, Sequence) and all(type(i) is int for i in out_indices)
    picked = [i + num_stages if i < 0 else i for i in out_indices] if valid else []
    if not picked or picked != sorted(set(picked)) or not all(0 <= i < num_stages for i in picked):
        raise ValueError(f"{name}: out_indices must be distinct ascending stage indices in 0..{num_stages - 1} "
                         f"(negative ones count from the end), got {out_indices!r}")
    return tuple(picked)


def _weights_file(name: str, cfg: dict[str, Any]) -> str:
    if not cfg.get("file"):
        raise ValueError(f"{name}: pretrained weights are never downloaded; pass an official checkpoint with "
                         f"pretrained_cfg_overlay=dict(file='spatialmamba_tiny.pth')")
    return cfg["file"]


def _create(variant: str, pretrained: bool = False, pretrained_cfg: Any = None,
            pretrained_cfg_overlay: dict[str, Any] | None = None, cache_dir: Any = None,
            features_only: bool = False, out_indices: Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    """Classifier, or with ``features_only`` the backbone (``outnorm``-ed NCHW maps at strides 4..32).

    With ``pretrained``, the cfg's ``file`` is loaded by ``load_official_checkpoint``; the cfg's
    ``num_classes`` says how many classes the file has, and a different requested ``num_classes``
    gets a fresh head, as timm does.
    """
    name = f"spatial_mamba_{variant.lower()}"
    unsupported = sorted(set(kwargs) - MODEL_KWARGS)
    if unsupported:
        raise TypeError(f"{name}: unsupported argument(s) {unsupported}; supported: {sorted(MODEL_KWARGS)}, "
                        f"features_only, out_indices, pretrained, pretrained_cfg, pretrained_cfg_overlay")
    if cache_dir is not None:
        raise TypeError(f"{name}: cache_dir is not used: weights are loaded from pretrained_cfg_overlay=dict(file=...)")
    if features_only and "num_classes" in kwargs:
        raise TypeError(f"{name}: num_classes has no meaning with features_only=True")
    if out_indices is not None and not features_only:
        raise TypeError(f"{name}: out_indices needs features_only=True")
    if isinstance(pretrained_cfg, str):
        raise ValueError(f"{name}: no pretrained tag {pretrained_cfg!r} exists; weights come from "
                         f"pretrained_cfg_overlay=dict(file=...)")
    cfg = resolve_pretrained_cfg(name, pretrained_cfg, pretrained_cfg_overlay).to_dict()
    file = _weights_file(name, cfg) if pretrained else None

    if features_only:
        indices = _stage_indices(name, out_indices, len(kwargs.get("depths", VARIANTS[variant]["depths"])))
        model = spatial_mamba(variant, backbone=True, out_indices=indices, **kwargs)
        if file:
            load_official_checkpoint(model, file)
        model.feature_info = FeatureInfo(
            [dict(num_chs=c, reduction=4 * 2**i, module=f"outnorm{i}") for i, c in enumerate(model.dims)], indices
        )
        model.pretrained_cfg = {k: v for k, v in cfg.items() if k not in HEAD_CFG_KEYS}
        return model

    model = spatial_mamba(variant, **{"num_classes": cfg["num_classes"], **kwargs})
    if file and model.num_classes == cfg["num_classes"]:
        load_official_checkpoint(model, file)
    elif file:  # timm's fine-tuning case: every weight from the file except its head, which a fresh one replaces
        fresh_head, file_classes = model.head, cfg["num_classes"]
        model.head = nn.Linear(model.num_features, file_classes) if file_classes > 0 else nn.Identity()
        load_official_checkpoint(model, file)  # the stand-in head lets the checked load see every key
        model.head = fresh_head
    model.pretrained_cfg = cfg
    return model


@register_model
def spatial_mamba_t(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Spatial-Mamba-T (26.7 M parameters)."""
    return _create("T", pretrained, **kwargs)


@register_model
def spatial_mamba_s(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Spatial-Mamba-S (43.1 M parameters)."""
    return _create("S", pretrained, **kwargs)


@register_model
def spatial_mamba_b(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Spatial-Mamba-B (95.7 M parameters)."""
    return _create("B", pretrained, **kwargs)
