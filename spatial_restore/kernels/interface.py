"""The SASF core op's inputs as one typed object, channels-last, and the scan orders it knows.

The blocks around the op are channels-last (b, H, W, C), so the op takes (b, L, d) activations and
returns (b, L, d): no block transposes or copies around it. A scan order is the order in which the
recurrence visits the image's pixels; the state fusion and readout always work in image coordinates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

# Scan orders: "row" is the official raster scan (l = i * W + j); "col" goes down the columns
# (l = j * H + i); "_reverse" runs the same path from its other end.
SCAN_CODES: dict[str, int] = {"row": 0, "row_reverse": 1, "col": 2, "col_reverse": 3}


@dataclass(frozen=True)
class SASFInputs:
    """Everything one SASF core op call reads. Activations channels-last; L = height * width row-major."""

    u: torch.Tensor  # (b, L, d)
    delta: torch.Tensor  # (b, L, d), before dt_bias and softplus
    A: torch.Tensor  # (d,) or (d, 1), negative (already -exp(A_logs))
    B: torch.Tensor  # (b, L)
    C: torch.Tensor  # (b, L)
    Dskip: torch.Tensor  # (d,)
    dt_bias: torch.Tensor  # (d,)
    fusion_kernels: torch.Tensor  # (3, d, 3, 3) for dilations 1, 3, 5
    alpha: torch.Tensor  # (3,)
    height: int
    width: int
    scan: str = "row"

    def __post_init__(self):
        b, length, d = self.u.shape
        if length != self.height * self.width:
            raise ValueError(f"sequence length {length} != height*width = {self.height}*{self.width}")
        if tuple(self.delta.shape) != (b, length, d):
            raise ValueError(f"delta must be (b, L, d) = {(b, length, d)}, got {tuple(self.delta.shape)}")
        for name in ("B", "C"):
            if getattr(self, name).numel() != b * length:
                raise ValueError(f"{name} must hold (b, L) = {(b, length)} values, got {tuple(getattr(self, name).shape)}")
        if tuple(self.fusion_kernels.shape) != (3, d, 3, 3):
            raise ValueError(f"fusion_kernels must be (3,{d},3,3), got {tuple(self.fusion_kernels.shape)}")
        if self.scan not in SCAN_CODES:
            raise ValueError(f"scan must be one of {sorted(SCAN_CODES)}, got {self.scan!r}")

    def replace(self, **changes) -> SASFInputs:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_channels_first(cls, u, delta, A, B, C, Dskip, dt_bias, fusion_kernels, alpha, height, width,
                            scan: str = "row") -> SASFInputs:
        """From the public ``sasf_core`` arguments: u, delta (b, d, L), B, C (b, 1, L); views, no copies."""
        b, d, length = u.shape
        return cls(u.transpose(1, 2), delta.transpose(1, 2), A, B.reshape(b, length), C.reshape(b, length),
                   Dskip, dt_bias, fusion_kernels, alpha, height, width, scan)

    def channels_first(self) -> tuple:
        """The public ``sasf_core`` positional arguments (views of these tensors), scan left out."""
        b, length, _ = self.u.shape
        return (self.u.transpose(1, 2), self.delta.transpose(1, 2), self.A, self.B.reshape(b, 1, length),
                self.C.reshape(b, 1, length), self.Dskip, self.dt_bias, self.fusion_kernels, self.alpha,
                self.height, self.width)
