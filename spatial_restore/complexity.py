"""Parameter and FLOP counts for any of our networks, by the official Spatial-Mamba convention.

Convention (fvcore's, as the official ``flops()`` uses): one multiply-add is one FLOP; conv and
linear count their MACs (biases free); BatchNorm counts 5 per element in training mode and 2 in eval;
LayerNorm 5 per element; the SASF projections ``x_proj``/``dt_proj`` count as ``matmul``; the scan
counts 7·B·L·D·N; activations, additions, padding and pixel (un)shuffles count nothing. The three
dilated fusion convolutions (9 MACs per state element each) are reported as ``fusion``; the official
number ("train mode") includes them, its eval-mode number does not (fvcore cannot see that kernel).
The CLI moves its models to the meta device, so even B at 1024² costs no compute.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
import torch.nn as nn

from .archs.spatial_mamba_arch import StructureAwareSSM


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(m: nn.Conv2d, inputs, out) -> dict[str, int]:
    kh, kw = m.kernel_size
    return {"conv": out.numel() * (m.in_channels // m.groups) * kh * kw}


def _linear(m: nn.Linear, inputs, out) -> dict[str, int]:
    return {"linear": inputs[0].numel() // m.in_features * m.in_features * m.out_features}


def _batch_norm(m: nn.BatchNorm2d, inputs, out) -> dict[str, int]:
    return {"batch_norm": inputs[0].numel() * (5 if m.training else 2)}


def _layer_norm(m: nn.LayerNorm, inputs, out) -> dict[str, int]:
    return {"layer_norm": inputs[0].numel() * 5}


def _sasf(m: StructureAwareSSM, inputs, out) -> dict[str, int]:
    b, h, w, _ = inputs[0].shape
    tokens = b * h * w
    d, r, n = m.d_inner, m.dt_rank, m.d_state
    return {"matmul": tokens * d * (r + 2 * n) + tokens * d * r, "scan": 7 * tokens * d * n, "fusion": 3 * 9 * tokens * d}


COUNTERS = {nn.Conv2d: _conv, nn.Linear: _linear, nn.BatchNorm2d: _batch_norm, nn.LayerNorm: _layer_norm,
            StructureAwareSSM: _sasf}


def count_flops(model: nn.Module, input_shape: tuple[int, ...], train_mode: bool = True) -> dict[str, int]:
    """FLOPs by operator for one forward of ``input_shape`` (N, C, H, W), plus 'total' (fusion included).

    Runs one forward on the model's device (move a throwaway model to "meta" to count for free);
    ``train_mode`` only changes what BatchNorm costs, as in the official count.
    """
    totals: Counter[str] = Counter()
    hooks = []
    for module in model.modules():
        counter = next((f for cls, f in COUNTERS.items() if isinstance(module, cls)), None)
        if counter is not None:
            hooks.append(module.register_forward_hook(lambda m, i, o, f=counter: totals.update(f(m, i, o))))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.train(train_mode)
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    result = dict(totals)
    result["total"] = sum(totals.values())
    return result


def build(name: str) -> nn.Module:
    """'T'|'S'|'B' (classifiers) or 'unet-<preset>' (restoration presets)."""
    from . import archs

    if name.lower().startswith("unet-"):
        return archs.SpatialMambaUNet.from_preset(name[5:])
    return archs.spatial_mamba(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spatial_restore.complexity", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="T, S, B or unet-<preset> (e.g. unet-small)")
    parser.add_argument("--size", type=int, nargs="+", default=[224], help="input H [W] (default 224)")
    parser.add_argument("--eval-mode", action="store_true", help="BatchNorm in eval mode")
    args = parser.parse_args(argv)
    h, w = (args.size * 2)[:2]
    print("| model | params | GFLOPs total | conv | linear | matmul | scan | fusion | norms | input |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = build(name).to("meta")  # a throwaway copy: shapes are all the count needs
        params = count_params(model)
        f = count_flops(model, (1, 3, h, w), train_mode=not args.eval_mode)
        g = {k: f.get(k, 0) / 1e9 for k in ("total", "conv", "linear", "matmul", "scan", "fusion")}
        norms = (f.get("batch_norm", 0) + f.get("layer_norm", 0)) / 1e9
        print(f"| {name} | {params:,} | {g['total']:.4f} | {g['conv']:.4f} | {g['linear']:.4f} | {g['matmul']:.4f} "
              f"| {g['scan']:.4f} | {g['fusion']:.4f} | {norms:.4f} | {h}x{w} |")


if __name__ == "__main__":
    main()
