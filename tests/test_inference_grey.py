"""A grey picture stored in colour channels is recognised, and its restoration comes out grey."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from spatial_restore.inference.restorer import Restorer, holds_one_picture


def grey_scene(rng: np.random.Generator, size: tuple[int, int] = (96, 80)) -> np.ndarray:
    """A smooth grey picture with an edge, as HxWx3 with equal channels."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    grey = 0.3 + 0.4 * xx * yy + 0.2 * (xx > 0.5) + 0.05 * rng.random(size)
    return np.repeat(grey[..., None], 3, axis=2)


@pytest.mark.parametrize("sigma", [0, 5, 25, 50])
def test_grey_with_independent_noise_per_channel_is_one_picture(sigma):
    rng = np.random.default_rng(sigma)
    noisy = grey_scene(rng) + rng.normal(0, sigma / 255, (96, 80, 3))
    assert holds_one_picture(noisy)
    assert holds_one_picture(np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8))  # 8-bit, clipped


@pytest.mark.parametrize("sigma", [0, 25, 50])
def test_colour_and_tinted_pictures_are_not(sigma):
    rng = np.random.default_rng(100 + sigma)
    grey = grey_scene(rng)
    noise = rng.normal(0, sigma / 255, grey.shape)
    colour = grey.copy()
    colour[20:60, 10:40, 0] += 0.1  # a red patch of 26/255
    tinted = grey + np.array([0.02, 0.0, -0.02])  # sepia-like, a constant tint of 5/255
    assert not holds_one_picture(colour + noise)
    assert not holds_one_picture(tinted + noise)


def test_tiny_inputs_are_grey_only_when_their_channels_are_equal():
    rng = np.random.default_rng(7)
    tiny = np.repeat(rng.random((5, 6, 1)), 3, axis=2)
    assert holds_one_picture(tiny)
    assert not holds_one_picture(tiny + rng.normal(0, 0.01, tiny.shape))  # too few blocks to tell


class ChannelOffsets(nn.Module):
    """Adds a different offset to each channel, as a colour network's residual colour noise would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tensor([0.03, 0.0, -0.03], device=x.device).view(1, 3, 1, 1)


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                             reason="needs a CUDA GPU")])])
def test_restorer_averages_the_output_of_a_grey_picture_only(device):
    """On a GPU the grey test runs on the CPU in a background thread while the GPU restores (tiled here)."""
    rng = np.random.default_rng(3)
    grey = (grey_scene(rng) + rng.normal(0, 0.1, (96, 80, 3))).astype(np.float32)
    device, tile = torch.device(device), 0 if device == "cpu" else 48
    out = Restorer(ChannelOffsets(), device, tile=tile, tile_overlap=16)(grey)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 0], grey.mean(axis=2), atol=1e-6)
    raw = Restorer(ChannelOffsets(), device, tile=tile, tile_overlap=16, keep_grey=False)(grey)
    np.testing.assert_allclose(raw, grey + [0.03, 0.0, -0.03], atol=1e-6)
    colour = grey.copy()
    colour[20:60, 10:40, 0] += 0.3
    np.testing.assert_allclose(Restorer(ChannelOffsets(), device, tile=tile, tile_overlap=16)(colour),
                               colour + [0.03, 0.0, -0.03], atol=1e-6)
