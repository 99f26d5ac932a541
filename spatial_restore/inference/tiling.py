"""Overlapping tiles blended with weighted windows, so device memory is bounded by the tile.

Each tile's output is multiplied by a window that is 1 inside and ramps linearly down to a small
positive value across the overlap, accumulated into full-size CPU buffers and divided by the summed
weights. Neighbouring tiles thus cross-fade over the overlap instead of meeting at a visible seam.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, size) with tiles of ``tile`` overlapping by at least ``overlap``."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def ramp(length: int, overlap: int) -> torch.Tensor:
    """1-D window: linear ramp over ``overlap`` samples at each end, 1 in between, never 0."""
    i = torch.arange(length, dtype=torch.float32)
    if overlap <= 0:
        return torch.ones(length)
    return torch.clamp(torch.minimum(i + 0.5, length - i - 0.5) / overlap, max=1.0)


def tiled_forward(forward: Forward, image: torch.Tensor, tile: int, overlap: int, device: torch.device) -> torch.Tensor:
    """Run ``forward`` on (1, C, H, W) ``image`` (on CPU) tile by tile on ``device``; returns a CPU float tensor."""
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile): got tile {tile}, overlap {overlap}")
    _, _, height, width = image.shape
    th, tw = min(tile, height), min(tile, width)
    window = ramp(th, overlap)[:, None] * ramp(tw, overlap)[None, :]
    out: torch.Tensor | None = None
    weight = torch.zeros(height, width)
    for top in tile_starts(height, th, overlap):
        for left in tile_starts(width, tw, overlap):
            patch = image[..., top:top + th, left:left + tw].to(device)
            result = forward(patch).float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height, width)
            out[..., top:top + th, left:left + tw] += result * window
            weight[top:top + th, left:left + tw] += window
    assert out is not None
    return out / weight
