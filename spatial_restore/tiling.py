"""Overlapping tiles blended with weighted windows, so device memory is bounded by the tile.

Each tile's output is multiplied by a window, normalised so that the windows of all tiles sum to 1
at every pixel, and added into a full-size CPU buffer. Along an edge shared with a neighbouring tile the window is 0 for the outer quarter
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

import itertools
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


def blend_weights(size: int, length: int, overlap: int, starts: list[int]) -> list[torch.Tensor]:
    """Each tile's ``window`` along one axis divided by the windows' sum there. Tiles form a grid, so the
    2-D weights (products of a row and a column window) then sum to 1 at every pixel: no weight buffer."""
    windows = [window(length, overlap, start > 0, start + length < size) for start in starts]
    total = torch.zeros(size)
    for start, w in zip(starts, windows):
        total[start:start + length] += w
    return [w / total[start:start + length] for start, w in zip(starts, windows)]


def tiled_forward(forward: Forward, image: torch.Tensor, tile: int, overlap: int, device: torch.device,
                  multiple: int = 1) -> torch.Tensor:
    """Run ``forward`` on (1, C, H, W) ``image`` (on CPU) tile by tile on ``device``; returns a CPU float tensor.

    Tiles are at most ``tile`` pixels on a side; ``multiple`` is the size multiple the network prefers.
    On CUDA the host never waits for the GPU while it has work to queue: a tile goes up from a pinned
    buffer, is weighted on the GPU and comes back asynchronously into another, and the host adds tile k
    into the output while the GPU runs tile k + 1. The output is channels-last (a (1, C, H, W) view of a
    (1, H, W, C) buffer), so each tile lands as whole rows and an HWC photo is read row by row.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile): got tile {tile}, overlap {overlap}")
    _, channels, height, width = image.shape
    th, tw = tile_length(height, tile, overlap, multiple), tile_length(width, tile, overlap, multiple)
    tops, lefts = tile_starts(height, th, overlap), tile_starts(width, tw, overlap)
    cuda = device.type == "cuda"
    # on the device before any tile is queued: a copy from pageable memory would wait for the GPU
    row_weights = [w.to(device) for w in blend_weights(height, th, overlap, tops)]
    col_weights = [w.to(device) for w in blend_weights(width, tw, overlap, lefts)]
    source = image.permute(0, 2, 3, 1)  # (1, H, W, C) view
    uploads = [torch.empty(1, th, tw, channels, pin_memory=True) for _ in range(2)] if cuda else []
    downloads: list[torch.Tensor] = []
    out: torch.Tensor | None = None
    pending: tuple[torch.Tensor, torch.cuda.Event | None, int, int] | None = None
    grid = itertools.product(zip(tops, row_weights), zip(lefts, col_weights))
    for k, ((top, wy), (left, wx)) in enumerate(grid):
        patch = source[:, top:top + th, left:left + tw]
        if cuda:  # the buffer's previous upload finished: tile k - 2 was added into the output
            patch = uploads[k % 2].copy_(patch).to(device, non_blocking=True)
        else:
            patch = patch.to(device)
        result = forward(patch.permute(0, 3, 1, 2).contiguous()).float() * (wy[:, None] * wx[None, :])
        result = result.permute(0, 2, 3, 1)
        event = None
        if cuda:
            if len(downloads) < 2:
                downloads.append(torch.empty(result.shape, pin_memory=True))
            result = downloads[k % 2].copy_(result, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            result = result.cpu()
        if out is None:
            out = torch.zeros(1, height, width, result.shape[-1])
        if pending is not None:
            _add(out, *pending)
        pending = (result, event, top, left)
    assert out is not None and pending is not None
    _add(out, *pending)
    return out.permute(0, 3, 1, 2)


def _add(out: torch.Tensor, tile: torch.Tensor, ready: torch.cuda.Event | None, top: int, left: int) -> None:
    """Add a weighted channels-last tile into the output, once its download has finished."""
    if ready is not None:
        ready.synchronize()
    out[:, top:top + tile.shape[1], left:left + tile.shape[2]] += tile
