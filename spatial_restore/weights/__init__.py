"""Shipped restoration weights and the model cards that say how to rebuild and trust them.

A model is a weights file plus a JSON card (schema: README.md in this folder). ``load_model`` accepts a
shipped name (``SHIPPED``), a ``.safetensors`` or ``.json`` path (card and weights side by side), or a
basicsr checkpoint ``.pth`` (``params_ema``/``params``) described by a card beside it or by the
experiment's options YAML that basicsr copies next to its ``models/`` folder. The network is built from
the card's arch name through ``spatial_restore.archs`` and loaded with strict key and shape checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

WEIGHTS_DIR = Path(__file__).resolve().parent
# name -> file stem in WEIGHTS_DIR (stem.safetensors + stem.json)
SHIPPED: dict[str, str] = {
    "default": "spatial_mamba_unet_small_denoise_blind",  # blind colour Gaussian denoiser
    "deblur": "spatial_mamba_unet_small_deblur_blind",  # blind uniform (camera-shake, motion, defocus) deblurrer
}


class ModelNotFound(FileNotFoundError):
    """A model name or path does not lead to a weights file and its card."""


class ModelCardError(ValueError):
    """A model card is missing a field, names an unknown arch, or does not fit its weights."""


@dataclass
class ModelCard:
    """What a weights file is: how to build the network and what it was trained for."""

    arch: str
    task: str
    weights: Path
    preset: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    in_channels: int = 3
    stride: int = 8
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # other tasks: field overrides each
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: data, iterations, noise, results...
    path: Path | None = None  # the card file itself

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path, path: Path | None = None) -> ModelCard:
        """Build from parsed JSON; ``weights`` is relative to ``base`` (default: the card's stem + .safetensors)."""
        if "weights" not in data and path is not None:
            data = {**data, "weights": path.with_suffix(".safetensors").name}
        missing = [k for k in ("arch", "task", "weights") if k not in data]
        if missing:
            raise ModelCardError(f"{path or 'model card'}: missing field(s) {missing}")
        known = {"arch", "task", "weights", "preset", "kwargs", "in_channels", "stride", "tasks"}
        return cls(
            arch=data["arch"], task=data["task"], weights=base / data["weights"], preset=data.get("preset"),
            kwargs=dict(data.get("kwargs", {})), in_channels=int(data.get("in_channels", 3)),
            stride=int(data.get("stride", 8)), tasks=dict(data.get("tasks", {})),
            extra={k: v for k, v in data.items() if k not in known}, path=path,
        )

    def for_task(self, task: str | None) -> ModelCard:
        """This card, or the variant for ``task`` listed under ``tasks`` (its fields override the base)."""
        if task is None or task == self.task:
            return self
        if task not in self.tasks:
            raise ModelCardError(f"{self.path}: task {task!r} not offered; available: {self.task_names()}")
        base = self.weights.parent
        merged = {"arch": self.arch, "preset": self.preset, "kwargs": self.kwargs, "in_channels": self.in_channels,
                  "stride": self.stride, "weights": self.weights.name, **self.extra, **self.tasks[task], "task": task}
        return ModelCard.from_dict(merged, base, self.path)

    def task_names(self) -> list[str]:
        return [self.task, *sorted(self.tasks)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for result files."""
        return {"arch": self.arch, "preset": self.preset, "task": self.task, "weights": str(self.weights),
                "card": str(self.path) if self.path else None, **self.extra}


def load_card(path: str | Path) -> ModelCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelCardError(f"cannot read model card {path}: {err}") from err
    return ModelCard.from_dict(data, path.parent, path)


def _card_from_basicsr_options(checkpoint: Path) -> ModelCard:
    """Card for basicsr's experiments/<name>/models/net_g_*.pth from the options YAML in experiments/<name>/."""
    import yaml

    root = checkpoint.parent.parent if checkpoint.parent.name == "models" else checkpoint.parent
    for yml in sorted(root.glob("*.yml")):
        opt = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
        net = opt.get("network_g")
        if isinstance(net, dict) and "type" in net:
            kwargs = {k: v for k, v in net.items() if k != "type"}
            return ModelCard(arch=net["type"], task=str(opt.get("name", "restore")), weights=checkpoint,
                             kwargs=kwargs, in_channels=int(kwargs.get("in_chans", kwargs.get("in_channels", 3))),
                             path=yml)
    raise ModelNotFound(f"{checkpoint}: no model card {checkpoint.with_suffix('.json').name} beside it and no basicsr "
                        f"options YAML with 'network_g' in {root}")


def resolve_card(model: str | Path) -> ModelCard:
    """The card for a shipped name or a path (.json, .safetensors, or a basicsr .pth)."""
    name = str(model)
    if name in SHIPPED:
        card_path = WEIGHTS_DIR / f"{SHIPPED[name]}.json"
        weights_path = card_path.with_suffix(".safetensors")
        if not (card_path.is_file() and weights_path.is_file()):
            raise ModelNotFound(
                f"shipped model {name!r} is not installed: {weights_path.name} and {card_path.name} are not in "
                f"{WEIGHTS_DIR} (the default weights have not been added yet); pass --model PATH to your own "
                f".safetensors (with its .json card) or basicsr checkpoint")
        return load_card(card_path)
    path = Path(model)
    if not path.exists():
        raise ModelNotFound(f"model {name!r} is neither a shipped name ({', '.join(SHIPPED)}) nor an existing file")
    if path.suffix == ".json":
        return load_card(path)
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        card = load_card(card_path)
        card.weights = path
        return card
    if path.suffix == ".safetensors":
        raise ModelNotFound(f"{path}: no model card {card_path.name} beside it (see spatial_restore/weights/README.md)")
    return _card_from_basicsr_options(path)


def build_model(card: ModelCard) -> nn.Module:
    """An untrained network as the card describes it (``from_preset`` when the card names a preset)."""
    from .. import archs

    cls = getattr(archs, card.arch, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ModelCardError(f"{card.path}: unknown arch {card.arch!r} (not in spatial_restore.archs)")
    if card.preset is not None:
        return cls.from_preset(card.preset, **card.kwargs)
    return cls(**card.kwargs)


def load_model(model: str | Path = "default", task: str | None = None) -> tuple[nn.Module, ModelCard]:
    """The network for a shipped name or a path, weights loaded strictly, in eval mode on CPU."""
    from ..checkpoint import load_into, load_state_dict_file

    card = resolve_card(model).for_task(task)
    if not card.weights.is_file():
        raise ModelNotFound(f"weights file {card.weights} named by card {card.path} does not exist")
    network = build_model(card)
    load_into(network, load_state_dict_file(card.weights), source=str(card.weights))
    return network.eval(), card
