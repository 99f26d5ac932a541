"""Parameters and MACs of the SpatialMambaUNet presets at 256x256: `python docs/restoration_complexity.py`.

Counts multiply-accumulates with forward hooks (spatial_restore.utils.complexity did not exist when
this was written). Convention: Conv2d = output elements x (input channels / groups) x kernel area;
Linear = output elements x input features; the SASF layer's two projection matmuls (x_proj, dt_proj)
are counted with the dense layers. The SASF core is counted separately, per channel and pixel of
the inner width D: scan 3 (Delta*B, *u, state update), state fusion 30 (three dilated 3x3 depthwise
kernels and their weights alpha), readout 2 (h*C + D*u). Normalisations, activations, exp/softplus,
pixel-(un)shuffles and additions are not counted.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from spatial_restore.archs import UNET_PRESETS, SpatialMambaUNet, StructureAwareSSM

SASF_CORE_MACS_PER_ELEMENT = 3 + 30 + 2


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    """{'dense': conv/linear/projection MACs, 'sasf_core': scan+fusion+readout MACs} for one forward."""
    totals = {"dense": 0, "sasf_core": 0}

    def conv(m: nn.Conv2d, _inp, out):
        totals["dense"] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, _inp, out):
        totals["dense"] += out.numel() * m.in_features

    def sasf(m: StructureAwareSSM, inp, _out):
        b, h, w, _ = inp[0].shape
        elements = b * m.d_inner * h * w
        totals["dense"] += elements * (m.dt_rank + 2 * m.d_state) + elements * m.dt_rank  # x_proj, dt_proj
        totals["sasf_core"] += elements * SASF_CORE_MACS_PER_ELEMENT

    hooks = [mod.register_forward_hook(fn) for mod in model.modules()
             for kind, fn in ((nn.Conv2d, conv), (nn.Linear, linear), (StructureAwareSSM, sasf)) if isinstance(mod, kind)]
    with torch.no_grad():
        model(torch.zeros(shape))
    for hook in hooks:
        hook.remove()
    return totals


def main() -> None:
    print("| preset | widths | blocks | refinement | params (M) | fp32 size (MB) | dense GMACs | SASF core GMACs | total GMACs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, cfg in UNET_PRESETS.items():
        model = SpatialMambaUNet.from_preset(name).eval()
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, (1, 3, 256, 256))
        widths, depths = "/".join(map(str, cfg["widths"])), "/".join(map(str, cfg["depths"]))
        print(f"| {name} | {widths} | {depths} | {cfg['num_refinement']} | {params / 1e6:.2f} | {params * 4 / 1e6:.1f} | "
              f"{macs['dense'] / 1e9:.1f} | {macs['sasf_core'] / 1e9:.1f} | {sum(macs.values()) / 1e9:.1f} |")


if __name__ == "__main__":
    main()
