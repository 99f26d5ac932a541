"""The app's only link to the library: every call into ``spatial_restore`` goes through this module.

The web app must restore exactly as ``inference.py`` does, so it runs the CLI's own per-file path
(``inference.batch.process``: read, the CLI's ``--add-blur`` and ``--add-noise``, Restorer, write, PSNR)
rather than a copy;
keeping those calls in one place lets them be re-pointed when the inference package is reorganised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..cpu_memory import keep_freed_memory
from ..data.blur import BLUR_SPECS, kernel_from_spec
from ..image_io import IMAGE_SUFFIXES, to_display_u8, write_png
from ..inference import Restorer, pick_device
from ..inference.batch import Job, Options, load_input, process
from ..tiling import tile_length, tile_starts
from ..weights import SHIPPED, load_model

__all__ = ["BLUR_SPECS", "IMAGE_SUFFIXES", "Model", "kernel_from_spec", "load", "model_names", "pick_device",
           "prepare_process", "restore_file", "write_preview"]

Tick = Callable[[int, int], None]  # (network passes done, passes in all)


def model_names() -> list[str]:
    """Every shipped model, from the registry, so a model added there appears in the app by itself."""
    return list(SHIPPED)


def prepare_process() -> None:
    """What the CLI sets for its process, for the app's server process: glibc keeps freed memory
    (about 2x faster on the CPU, see cpu_memory.py) and OpenCV logs errors only."""
    import cv2

    keep_freed_memory()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class _Counted(nn.Module):
    """The network, reporting each forward pass: Restorer makes one per tile, which is the progress."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.tick: Callable[[], None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.network(x)
        if self.tick is not None:
            self.tick()
        return y


@dataclass
class Model:
    """A loaded model with the CLI's default settings (fp32, tiles chosen for the device, one view, grey kept)."""

    name: str
    restorer: Restorer
    stride: int
    counted: _Counted = field(repr=False)

    def passes(self, height: int, width: int) -> int:
        """Forward passes Restorer makes for an image: one per tile (three per tile for a grey network)."""
        r = self.restorer
        tile, tiles = r.tile_for(height, width), 1
        if tile and max(height, width) > tile:
            tiles = (len(tile_starts(height, tile_length(height, tile, r.tile_overlap, r.stride), r.tile_overlap))
                     * len(tile_starts(width, tile_length(width, tile, r.tile_overlap, r.stride), r.tile_overlap)))
        return tiles * (3 if r.in_channels == 1 else 1)


def load(name: str, device: torch.device) -> Model:
    """A shipped model by name on ``device``; raises the library's one-line errors for a missing one."""
    network, card = load_model(name)
    counted = _Counted(network)
    restorer = Restorer(counted, device, stride=card.stride, in_channels=card.in_channels)
    return Model(name, restorer, card.stride, counted)


def _degrade(sigma: float, blur: np.ndarray | None, seed: int, stride: int = 8) -> Options:
    """The CLI's options for ``--add-blur`` (a kernel or None) and ``--add-noise sigma`` (0: none)."""
    return Options(add_noise=sigma or None, add_blur=blur, seed=seed, lpips=False, stride=stride)


def restore_file(model: Model, source: Path, output: Path, sigma: float, seed: int, tick: Tick | None,
                 total: int, blur: np.ndarray | None = None) -> tuple[dict[str, Any], list[str]]:
    """Restore ``source`` into the PNG ``output`` as the CLI does; returns its record and notes.

    ``blur`` (a kernel) and ``sigma`` > 0 degrade the file first as the CLI's ``--add-blur`` and
    ``--add-noise`` do, and the clean file is then the ground truth.
    """
    notes: list[str] = []
    done = 0

    def count() -> None:
        nonlocal done
        done += 1
        if tick is not None:
            tick(done, total)

    options = _degrade(sigma, blur, seed, model.stride)
    model.counted.tick = count
    try:
        record = process(Job(str(source), source, output=output), model.restorer, options, single=True,
                         log=notes.append)
    finally:
        model.counted.tick = None
    prefix = f"note: {source}: "  # how process() words its notes
    return record, [note.removeprefix(prefix) for note in notes]


def write_preview(source: Path, sigma: float, seed: int, path: Path, blur: np.ndarray | None = None) -> None:
    """An 8-bit PNG of what the network was given (the file, degraded as for the restore), for the 'before' side."""
    picture, rgb = load_input(Job(str(source), source), _degrade(sigma, blur, seed))
    write_png(path, to_display_u8(picture.visible(np.clip(rgb, 0.0, 1.0))))
