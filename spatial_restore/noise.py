"""The one Gaussian noise model of the project: datasets, benches, the demo and ``inference.py --add-noise``.

The Gaussian denoising literature's convention: the clean image as float in [0, 1] plus
N(0, (sigma/255)^2) per sample, not clipped (a clipped input is a different, easier problem).
"""

from __future__ import annotations

import numpy as np


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator | int,
                       shared_channels: bool = False) -> np.ndarray:
    """``image + N(0, sigma/255)`` in ``image``'s float dtype; ``rng`` a generator or a seed (a fresh
    generator per call, so every image gets the same noise for a seed). ``shared_channels``: one noise
    field broadcast over the channels of an HxWxC image, as a noisy grey file read as colour has."""
    rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
    shape = (*image.shape[:2], 1) if shared_channels else image.shape
    return (image + rng.normal(0.0, sigma / 255.0, shape)).astype(image.dtype, copy=False)
