"""Overlapping tiles blended with weighted windows, so device memory is bounded by the tile.

Each tile's output is multiplied by a window, accumulated into full-size CPU buffers and divided by
the summed weights. Along an edge shared with a neighbouring tile the window is 0 for the outer quarter
of the overlap (where a tile's own border effects live), then rises linearly to 1 at three quarters of
it; along the image border it stays 1. Neighbours thus cross-fade instead of meeting at a visible seam,
and a network whose receptive field fits in a quarter of the overlap gives exactly the untiled result.

Tiles are balanced: an axis that needs n tiles of at most ``tile`` pixels gets n tiles of the smallest
length that still covers it with the overlap (rounded up to the network's size multiple), so a
3840x2160 image at tile 1024 runs 12 tiles of 1008x768 rather than 12 of 1024x1024 (26% fewer pixels).
Balancing stops at MIN_CONTEXT pixels: a shorter tile cuts the global scan's context enough to cost
measurable quality (measured per tile size in docs/benchmarks.md).

Shared by inference (``spatial_restore.inference.Restorer``) and tiled validation during training
(``RestorationModel``, ``val.tile``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]
MIN_CONTEXT = 480  # balanced tiles are never shorter than this (nor than ``tile`` where that is shorter)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, size) with tiles of ``tile`` overlapping by at least ``overlap``."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def tile_length(size: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The shortest tile (<= ``tile``, a multiple of ``multiple`` where possible, >= MIN_CONTEXT) covering
    ``size`` with as few tiles as ``tile`` itself needs."""
    if size <= tile:
        return size
    count = -(-(size - overlap) // (tile - overlap))
    length = -(-(size + (count - 1) * overlap) // count)
    return min(tile, max(-(-length // multiple) * multiple, MIN_CONTEXT))


def window(length: int, overlap: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """1-D weights for a tile: fades over ``overlap`` at the ends shared with a neighbour, else 1."""
    weights = torch.ones(length)
    if overlap > 0:
        distance = torch.arange(length, dtype=torch.float32) + 0.5
        rise = ((distance - overlap / 4) / (overlap / 2)).clamp(0, 1)
        if fade_start:
            weights = torch.minimum(weights, rise)
        if fade_end:
            weights = torch.minimum(weights, rise.flip(0))
    return weights


def tiled_forward(forward: Forward, image: torch.Tensor, tile: int, overlap: int, device: torch.device,
                  multiple: int = 1) -> torch.Tensor:
    """Run ``forward`` on (1, C, H, W) ``image`` (on CPU) tile by tile on ``device``; returns a CPU float tensor.

    Tiles are at most ``tile`` pixels on a side; ``multiple`` is the size multiple the network prefers.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile): got tile {tile}, overlap {overlap}")
    _, _, height, width = image.shape
    th, tw = tile_length(height, tile, overlap, multiple), tile_length(width, tile, overlap, multiple)
    out: torch.Tensor | None = None
    weight = torch.zeros(height, width)
    for top in tile_starts(height, th, overlap):
        for left in tile_starts(width, tw, overlap):
            patch = image[..., top:top + th, left:left + tw].to(device)
            result = forward(patch).float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height, width)
            w = (window(th, overlap, top > 0, top + th < height)[:, None]
                 * window(tw, overlap, left > 0, left + tw < width)[None, :])
            out[..., top:top + th, left:left + tw] += result * w
            weight[top:top + th, left:left + tw] += w
    assert out is not None
    return out / weight
