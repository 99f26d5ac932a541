"""Apply any image-to-image network to a whole float image: device, precision, tiles, self-ensemble.

The network contract is minimal: (N, C, H, W) float in [0, 1] in, same shape out (it pads internally
to its stride, as SpatialMambaUNet does). What a network cannot take is handled here: images smaller
than its stride are edge-padded first (reflection padding needs more pixels than it pads), images
larger than ``tile`` go through overlapping tiles, and a 1-channel network gets colour channel-wise.
A grey picture stored as colour comes out grey (``keep_grey``), as a grey file does.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tiling import tiled_forward
from .cuda_graph import GraphedForward

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_TILE = 1024  # default tile size on a GPU; images no larger than this in both sides run whole
CPU_WHOLE_PIXELS = 512 * 512  # on the CPU, images up to this area run whole (as the val photos)
CPU_TILE_MAX = 320  # the CPU's tile for larger images where memory allows: 4K then peaks under 3 GB
CPU_TILE_MIN = 256
# The shipped network's CPU working memory per pixel of a tile, fp32, with the heap setting of
# spatial_restore.cpu_memory (which keeps freed blocks): measured 11-12 KiB (docs/benchmarks.md).
CPU_BYTES_PER_PIXEL = 12 * 1024
GREY_BLOCK = 8  # block size of the white-noise test in holds_one_picture
GREY_BAND = 512  # rows per band of holds_one_picture (a multiple of GREY_BLOCK)
GREY_MAX_RATIO = 1.5  # block-mean variance over that of white noise; white noise gives 1 +- 0.03 at 512x512


def holds_one_picture(rgb: np.ndarray, device: torch.device = torch.device("cpu")) -> bool:
    """True when the three channels hold one grey picture, up to noise that is white and independent per
    channel: the colour differences R-G and G-B are then zero-mean white noise, whose 8x8 block means
    have 1/64 of its variance. Any colour structure (a tint included) raises the block-mean variance or
    the mean. Undecidable inputs (fewer than 16 blocks) count as colour, unless their channels are equal.
    Block statistics are taken on ``device`` in bands of rows (memory bounded like the tiles): in numpy
    on the CPU the test took a large share of a 4K frame's GPU time budget (docs/benchmarks.md). While a
    GPU restores, ``Restorer`` runs it on the CPU in a background thread instead, behind the GPU's work.
    """
    h, w = (n // GREY_BLOCK * GREY_BLOCK for n in rgb.shape[:2])
    if h * w < 16 * GREY_BLOCK**2:
        return not np.any(rgb[..., :2] != rgb[..., 1:])
    means, squares = [], []  # per 8x8 block and colour difference: mean, mean square
    for top in range(0, h, GREY_BAND):
        band = torch.from_numpy(np.ascontiguousarray(rgb[top : min(top + GREY_BAND, h), :w])).to(device).float()
        diffs = (band[..., :2] - band[..., 1:]).view(-1, GREY_BLOCK, w // GREY_BLOCK, GREY_BLOCK, 2)  # R-G, G-B
        means.append(diffs.mean(dim=(1, 3)).reshape(-1, 2).cpu())
        squares.append(diffs.square().mean(dim=(1, 3)).reshape(-1, 2).cpu())
    blocks, block_squares = torch.cat(means).double(), torch.cat(squares).double()
    for block, square in zip(blocks.T, block_squares.T):
        mean = float(block.mean())
        variance = max(float(square.mean()) - mean**2, 0.0)
        if variance == 0:  # channels equal up to a constant: grey only if the constant is 0
            if mean != 0:
                return False
            continue
        white = variance / GREY_BLOCK**2  # the block means' variance if the difference is white noise
        if float(block.var(unbiased=False)) > GREY_MAX_RATIO * white or abs(mean) > 4 * np.sqrt(variance / (h * w)):
            return False  # colour structure, or a mean beyond 4 standard errors: a tint
    return True


@functools.cache
def _background() -> ThreadPoolExecutor:
    """One worker thread for host work that can run while the GPU restores (made on first use)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="spatial_restore")


def available_memory() -> int | None:
    """Bytes the system can give this process now (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_tile(device: torch.device, pixels: int, available: int | None = None) -> int | None:
    """The tile size ``Restorer(tile="auto")`` uses for an image of ``pixels``: AUTO_TILE on a GPU (bounded
    by the GPU's memory). On the CPU, None (whole) up to CPU_WHOLE_PIXELS, else the largest multiple of 64
    up to CPU_TILE_MAX whose working memory takes at most a quarter of the memory available
    (``available_memory()`` unless given), never below CPU_TILE_MIN: the process's memory is the system's."""
    if device.type != "cpu":
        return AUTO_TILE
    if pixels <= CPU_WHOLE_PIXELS:
        return None
    available = available_memory() if available is None else available
    if available is None:
        return CPU_TILE_MAX
    side = int((available / 4 / CPU_BYTES_PER_PIXEL) ** 0.5) // 64 * 64
    return max(CPU_TILE_MIN, min(CPU_TILE_MAX, side))


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when available, else CPU; an explicit 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    return device


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 dihedral transforms (k % 4 quarter turns, then a flip for k >= 4)."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


def _inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.flip(x, dims=(3,)) if k >= 4 else x
    return torch.rot90(x, -(k % 4), dims=(2, 3))


# The transforms averaged by an N-view self-ensemble: nested subgroups of the dihedral group, so each
# N holds its own inverses: 2 = identity and half turn (the raster scan then runs the other way in both
# axes), 4 = the quarter turns, 8 = the quarter turns with and without a flip.
ENSEMBLE_VIEWS = {1: (0,), 2: (0, 2), 4: (0, 1, 2, 3), 8: tuple(range(8))}


@dataclass
class Restorer:
    """A network with the settings to run it; call it on an HxWx3 float32 image in [0, 1].

    ``cuda_graph`` (CUDA only) replays each forward pass, autocast included, as a CUDA graph captured
    once per tile/image shape (``GraphedForward``): it removes the host's per-kernel launch cost, which
    pays off where that cost is large against the GPU's work (tiles, small images, long batches). It
    excludes ``compile``: the compiled counterpart of graphs is ``torch.compile(mode="reduce-overhead")``,
    whose inductor records its own graphs, while capturing a compiled module by hand would skip the
    compiler's guards on every replay; one of the two is asked for, not both.
    """

    model: nn.Module
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    tile: int | str | None = "auto"  # "auto": default_tile(device, pixels) per image; None or 0: never tile
    tile_overlap: int = 64
    self_ensemble: int = 1  # views averaged: a key of ENSEMBLE_VIEWS (1 = a single pass)
    stride: int = 8  # the network's size multiple; smaller images are edge-padded up to it
    in_channels: int = 3
    compile: bool = False  # torch.compile the network (compiled once per tile/image shape: pays off on batches)
    keep_grey: bool = True  # a grey picture in colour channels (holds_one_picture) gets its output averaged to grey
    cuda_graph: bool = False  # replay the network as CUDA graphs, one per tile/image shape (CUDA only; not with compile)
    _graphed: GraphedForward | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.self_ensemble, bool) or self.self_ensemble not in ENSEMBLE_VIEWS:  # True is not 8
            raise ValueError(f"self_ensemble must be one of {sorted(ENSEMBLE_VIEWS)} views, got {self.self_ensemble!r}")
        if self.cuda_graph and self.compile:
            raise ValueError("cuda_graph and compile exclude each other: for both, torch.compile the model with "
                             "mode='reduce-overhead' yourself and pass it with neither")
        if self.cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph needs a CUDA device, got {self.device}: CUDA graphs replay recorded GPU "
                             "kernel launches")
        self.model = self.model.to(self.device).eval()
        if self.compile:
            self.model = torch.compile(self.model, dynamic=False)
        if self.cuda_graph:
            self._graphed = GraphedForward(self._run)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass on a device tensor, in the chosen precision, returned as float32."""
        if self.in_channels == 1 and x.shape[1] == 3:
            return torch.cat([self._net(x[:, c:c + 1]) for c in range(3)], dim=1)
        return self._run(x) if self._graphed is None else self._graphed(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The network under autocast: what ``cuda_graph`` captures, casts included."""
        dtype = PRECISIONS[self.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return self.model(x).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        views = ENSEMBLE_VIEWS[self.self_ensemble]
        if views == (0,):
            return self._net(x)
        return sum(_inverse(self._net(_transform(x, k)), k) for k in views) / len(views)

    def tile_for(self, height: int, width: int) -> int | None:
        """The tile size used for an image of this size (None or 0: whole)."""
        return default_tile(self.device, height * width) if self.tile == "auto" else self.tile

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        # on a GPU the grey test runs on the CPU meanwhile, off the GPU's critical path
        grey = _background().submit(holds_one_picture, rgb) if self.keep_grey and self.device.type == "cuda" else None
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        pad_h, pad_w = max(0, self.stride - height), max(0, self.stride - width)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        tile = self.tile_for(height, width)
        if tile and max(x.shape[2:]) > tile:
            y = tiled_forward(self._forward, x, tile, self.tile_overlap, self.device, self.stride)
        else:
            y = self._forward(x.to(self.device)).cpu()
        y = y[0, :, :height, :width].permute(1, 2, 0).numpy()
        if self.keep_grey and (grey.result() if grey is not None else holds_one_picture(rgb, self.device)):
            y = np.repeat(y.mean(axis=2, keepdims=True), 3, axis=2)
        return y
