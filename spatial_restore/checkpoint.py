"""Checkpoint I/O: safetensors for what we write, weights_only pickles for what others wrote.

Loading never runs pickled code (``torch.load(..., weights_only=True)``), and every mismatch between a
file and a model is reported by key: missing, unexpected and mis-shaped entries, all at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# Containers that training frameworks wrap weights in, most specific first.
NESTED_KEYS = ("params_ema", "params", "model", "state_dict")


class CheckpointMismatch(ValueError):
    """A state dict does not fit a model; the message lists every offending key."""


def load_state_dict_file(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a weights_only pickle, unwrapped from ``key`` if given.

    Without ``key``, a pickle holding one of NESTED_KEYS is unwrapped at the first one present.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Mapping = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for truncated or foreign files
            raise CheckpointMismatch(f"{path}: not a readable safetensors file ({err})") from err
    elif path.suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a pickle with classes or code in it is refused, not executed
            raise CheckpointMismatch(f"{path}: not a plain tensor checkpoint loadable with weights_only=True ({err})") from err
    else:
        raise ValueError(f"{path}: unknown checkpoint format (expected .safetensors or one of {PICKLE_SUFFIXES})")
    if key is not None:
        if key not in obj:
            raise CheckpointMismatch(f"{path}: no entry {key!r} (top-level keys: {sorted(obj)[:10]})")
        obj = obj[key]
    else:
        for nested in NESTED_KEYS:
            if isinstance(obj.get(nested), Mapping):
                obj = obj[nested]
                break
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def check_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    allow_missing: Iterable[str] = (),
    source: str = "checkpoint",
) -> None:
    """Raise CheckpointMismatch unless keys and shapes match; ``allow_missing`` are key prefixes."""
    expected = model.state_dict()
    allowed = tuple(allow_missing)
    missing = [k for k in expected if k not in state_dict and not (allowed and k.startswith(allowed))]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: {source} {list(state_dict[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = [summarise(what, items) for what, items in
                (("mis-shaped", shapes), ("missing", missing), ("unexpected", unexpected)) if items]
    if problems:
        raise CheckpointMismatch(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


def summarise(what: str, items: list[str], first: int = 3) -> str:
    """'N <what> keys: a, b, c (+M more)': a whole network's key list would bury the message."""
    more = f" (+{len(items) - first} more)" if len(items) > first else ""
    return f"{len(items)} {what} key(s): {', '.join(items[:first])}{more}"


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], allow_missing: Iterable[str] = (),
              source: str = "checkpoint") -> nn.Module:
    """Checked load: all keys and shapes must match (except allowed missing prefixes)."""
    allow_missing = tuple(allow_missing)
    check_state_dict(model, state_dict, allow_missing, source)
    model.load_state_dict(state_dict, strict=not allow_missing)
    return model


def load_official_checkpoint(model: nn.Module, path: str | Path, use_ema: bool = False) -> nn.Module:
    """Load an official Spatial-Mamba classification checkpoint (``.pth`` with key ``model``).

    A feature backbone takes the classifier's weights without ``norm``/``head`` and keeps its
    freshly initialised ``outnorm{i}`` layers, as the official dense-prediction code does.
    """
    from .archs import SpatialMambaBackbone

    state = load_state_dict_file(path, key="model_ema" if use_ema else "model")
    allow_missing: tuple[str, ...] = ()
    if isinstance(model, SpatialMambaBackbone):
        state = {k: v for k, v in state.items() if not k.startswith(("norm.", "head."))}
        allow_missing = ("outnorm",)
    return load_into(model, state, allow_missing, source=str(path))


def save_safetensors(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | Path,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write contiguous CPU tensors to ``path`` (parent folders created); returns the path."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path), metadata=dict(metadata or {}))
    return path
