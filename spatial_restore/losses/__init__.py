"""Losses in basicsr's LOSS_REGISTRY.

``L1Loss`` and ``CharbonnierLoss`` are basicsr's own (already registered; note its Charbonnier adds
``eps`` inside the square root unsquared, so Restormer's eps=1e-3 is ``eps: !!float 1e-6`` here).
basicsr 1.4.2 has no PSNR loss, so it is defined here.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .._basicsr import register


class PSNRLoss(nn.Module):
    """Negative PSNR averaged over the batch (HINet/NAFNet-style): ``w * 10/ln10 * mean_b log(MSE_b + eps)``.

    Minimising log-MSE per image weights well-restored images as much as badly restored ones: in a blind
    denoiser's batch the low-noise crops count as much as the high-noise ones, as they do in a mean PSNR
    over noise levels (plain MSE lets the noisiest crops dominate the gradient). ``eps`` caps that weight
    (1/255^2 ~ 1.5e-5: no crop counts beyond ~48 dB).
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-8):
        super().__init__()
        if reduction != "mean":
            raise ValueError(f"PSNRLoss supports reduction='mean' only, got {reduction!r}")
        if eps <= 0:
            raise ValueError(f"PSNRLoss eps must be positive, got {eps}")
        self.loss_weight = loss_weight
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **_) -> torch.Tensor:
        mse = (pred - target).pow(2).flatten(1).mean(dim=1)
        return self.loss_weight * (10.0 / math.log(10.0)) * torch.log(mse + self.eps).mean()


register("LOSS_REGISTRY", PSNRLoss)

__all__ = ["PSNRLoss"]
