"""Effective receptive fields: how strongly each input pixel moves one output pixel of a whole network.

The ERF of an output pixel is |∂ out[centre] / ∂ input| (output channels summed at the centre pixel,
then |·| averaged over input channels and over several inputs), as in Luo et al. (2016) and
RepLKNet's ERF maps. It needs a model in eval mode: the inputs of a batch must not interact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..archs import SpatialMamba

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AnalysisError(RuntimeError):
    """A model or input the analysis needs is unavailable; the message says what to do instead."""


def effective_receptive_field(
    fn: Callable[[torch.Tensor], Sequence[torch.Tensor]], images: torch.Tensor, batch_size: int = 4
) -> list[torch.Tensor]:
    """Per map of ``fn``: mean |∂ Σ_c map[:, c, h//2, w//2] / ∂x| over images and input channels, (H, W).

    ``fn`` maps NCHW images (N, C, H, W) to NCHW maps of any resolution (e.g. several stages from one
    forward pass); each map's centre pixel is explained.
    """
    totals: list[torch.Tensor] = []
    for chunk in images.split(batch_size):
        x = chunk.detach().requires_grad_()
        maps = fn(x)
        for i, out in enumerate(maps):
            centre = out[:, :, out.shape[-2] // 2, out.shape[-1] // 2].sum()
            (grad,) = torch.autograd.grad(centre, x, retain_graph=i < len(maps) - 1)
            erf = grad.abs().mean(dim=1).sum(dim=0)
            if len(totals) <= i:
                totals.append(erf)
            else:
                totals[i] += erf
    return [total / images.shape[0] for total in totals]


def mass_radius(erf: torch.Tensor, fraction: float) -> int:
    """Smallest r such that the (2r+1)² square around the centre holds ``fraction`` of the ERF's mass."""
    h, w = erf.shape
    cy, cx = h // 2, w // 2
    total = erf.sum()
    for r in range(max(h, w)):
        if erf[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1].sum() >= fraction * total:
            return r
    return max(h, w)


def classifier_stages(model: SpatialMamba, stages: Sequence[int]) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """NCHW feature maps of classifier stages (their blocks' output, before downsampling), one forward pass."""
    for stage in stages:
        if not 0 <= stage < len(model.layers):
            raise ValueError(f"stage must be in 0..{len(model.layers) - 1}, got {stage}")

    def fn(x: torch.Tensor) -> list[torch.Tensor]:
        outs = model.forward_stages(x)
        return [outs[s][0].permute(0, 3, 1, 2) for s in stages]

    return fn


def load_classifier(variant: str = "T", checkpoint: str | Path | None = None) -> SpatialMamba:
    """Spatial-Mamba classifier in eval mode: random init, or an official checkpoint (key ``model``)."""
    from ..archs import spatial_mamba
    from ..checkpoint import load_official_checkpoint

    model = spatial_mamba(variant)
    if checkpoint is not None:
        load_official_checkpoint(model, checkpoint)
    return model.eval()


def load_denoiser(model: str | Path = "default", random_init: bool = False, preset: str = "tiny") -> nn.Module:
    """A restoration network in eval mode: shipped name or weights path (``spatial_restore.weights``), or an untrained preset."""
    from ..archs import SpatialMambaUNet
    from ..weights import ModelCardError, load_model

    if random_init:
        return SpatialMambaUNet.from_preset(preset).eval()
    try:
        return load_model(model)[0]
    except (FileNotFoundError, ModelCardError) as err:
        raise AnalysisError(f"cannot load denoiser {str(model)!r}: {err}\nHere: --checkpoint NAME|PATH for other weights, "
                            f"or --random-init for an untrained '{preset}' U-Net.") from err


def load_images(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """RGB images in [0, 1] as (N, 3, size, size): shorter side resized to ``size``, then centre-cropped."""
    import cv2

    from ..image_io import ImageReadError, read_image

    out = []
    for path in paths:
        try:
            rgb = read_image(path).rgb
        except ImageReadError as err:
            raise AnalysisError(f"cannot read image {path}: {err}") from err
        h, w = rgb.shape[:2]
        scale = size / min(h, w)
        rgb = cv2.resize(rgb, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
        top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
        out.append(torch.from_numpy(np.ascontiguousarray(rgb[top : top + size, left : left + size])).permute(2, 0, 1))
    return torch.stack(out)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB → the classifier's input statistics."""
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std
