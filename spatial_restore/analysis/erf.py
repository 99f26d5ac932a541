"""Effective receptive fields: how strongly each input pixel moves one output pixel of a whole network.

The ERF of an output pixel is |∂ out[centre] / ∂ input| (output channels summed at the centre pixel,
then |·| averaged over input channels and over several inputs), as in Luo et al. (2016) and
RepLKNet's ERF maps. It needs a model in eval mode: the inputs of a batch must not interact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from ..archs import SpatialMamba

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AnalysisError(RuntimeError):
    """A model or input the analysis needs is unavailable; the message says what to do instead."""


def effective_receptive_field(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int = 4
) -> torch.Tensor:
    """Mean |∂ Σ_c fn(x)[:, c, h//2, w//2] / ∂x| over images and input channels: (H, W) for images (N, C, H, W).

    ``fn`` maps NCHW images to an NCHW map (any resolution); its centre pixel is the one explained.
    """
    total = torch.zeros(images.shape[-2:], dtype=images.dtype, device=images.device)
    for chunk in images.split(batch_size):
        x = chunk.detach().requires_grad_()
        out = fn(x)
        centre = out[:, :, out.shape[-2] // 2, out.shape[-1] // 2].sum()
        (grad,) = torch.autograd.grad(centre, x)
        total += grad.abs().mean(dim=1).sum(dim=0)
    return total / images.shape[0]


def mass_radius(erf: torch.Tensor, fraction: float) -> int:
    """Smallest r such that the (2r+1)² square around the centre holds ``fraction`` of the ERF's mass."""
    h, w = erf.shape
    cy, cx = h // 2, w // 2
    total = erf.sum()
    for r in range(max(h, w)):
        if erf[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1].sum() >= fraction * total:
            return r
    return max(h, w)


def classifier_stage(model: SpatialMamba, stage: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """NCHW feature map of a classifier stage (its blocks' output, before downsampling)."""
    if not 0 <= stage < len(model.layers):
        raise ValueError(f"stage must be in 0..{len(model.layers) - 1}, got {stage}")
    return lambda x: model.forward_stages(x)[stage][0].permute(0, 3, 1, 2)


def load_classifier(variant: str = "T", checkpoint: str | Path | None = None) -> SpatialMamba:
    """Spatial-Mamba classifier in eval mode: random init, or an official checkpoint (key ``model``)."""
    from ..archs import spatial_mamba
    from ..checkpoint import load_official_checkpoint

    model = spatial_mamba(variant)
    if checkpoint is not None:
        load_official_checkpoint(model, checkpoint)
    return model.eval()


def load_denoiser(random_init: bool = False, preset: str = "tiny", checkpoint: str | Path | None = None) -> nn.Module:
    """The shipped default denoiser, or a U-Net preset (untrained, or with weights from ``checkpoint``), in eval mode."""
    if random_init or checkpoint is not None:
        from .. import archs

        if not hasattr(archs, "SpatialMambaUNet"):
            raise AnalysisError("spatial_restore.archs has no SpatialMambaUNet in this checkout")
        model = archs.SpatialMambaUNet.from_preset(preset)
        if checkpoint is not None:
            from ..checkpoint import load_into, load_state_dict_file

            load_into(model, load_state_dict_file(checkpoint), source=str(checkpoint))
        return model.eval()
    try:
        from ..weights import load_model
    except ImportError as err:
        raise AnalysisError(
            f"no shipped default denoiser in this checkout ({err}); pass --random-init to analyse an "
            f"untrained '{preset}' U-Net, or --checkpoint PATH for your own weights"
        ) from err
    try:
        return load_model(name="default").eval()
    except FileNotFoundError as err:
        raise AnalysisError(f"the shipped default denoiser's weights are missing: {err}") from err


def load_images(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """RGB images in [0, 1] as (N, 3, size, size): shorter side resized to ``size``, then centre-cropped."""
    import cv2

    out = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise AnalysisError(f"cannot read image {path}")
        h, w = bgr.shape[:2]
        scale = size / min(h, w)
        bgr = cv2.resize(bgr, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
        top, left = (bgr.shape[0] - size) // 2, (bgr.shape[1] - size) // 2
        rgb = cv2.cvtColor(bgr[top : top + size, left : left + size], cv2.COLOR_BGR2RGB)
        out.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB → the classifier's input statistics."""
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std
