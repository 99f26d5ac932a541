"""Tiles, padding of tiny images and self-ensemble in the Restorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from spatial_restore.archs import SpatialMambaUNet
from spatial_restore.inference.restorer import Restorer
from spatial_restore.tiling import MIN_CONTEXT, blend_weights, tile_length, tile_starts, tiled_forward, window
from spatial_restore.metrics import psnr


def smooth_image(h: int, w: int) -> np.ndarray:
    """A clean test picture: gradients and a disc, float32 in [0, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    disc = ((y - h / 2) ** 2 + (x - w / 3) ** 2 < (h / 4) ** 2).astype(np.float32)
    return np.clip(np.stack([x / w, y / h, 0.3 + 0.5 * disc], axis=2), 0, 1).astype(np.float32)


def test_tile_starts_cover_the_image_with_the_overlap():
    starts = tile_starts(500, 128, 32)
    assert starts[0] == 0 and starts[-1] == 500 - 128
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:]))
    assert tile_starts(100, 128, 32) == [0]


def test_tile_length_keeps_the_tile_count_and_shrinks_the_tiles():
    # A 4K frame at tile 1024 / overlap 64: 4 x 3 tiles either way, but 1008 x 768 instead of 1024 x 1024.
    assert (tile_length(3840, 1024, 64, 8), tile_length(2160, 1024, 64, 8)) == (1008, 768)
    assert tile_length(512, 496, 64, 8) == 480 == MIN_CONTEXT  # not 288: that would cut the scan's context
    assert tile_length(512, 384, 64, 8) == 384  # never above the tile asked for
    for size, tile, overlap, multiple in [(3840, 1024, 64, 8), (2160, 1024, 64, 8), (1025, 1024, 64, 8),
                                          (500, 128, 32, 1), (517, 100, 10, 8), (100, 128, 32, 8),
                                          (1500, 1000, 64, 8), (512, 384, 64, 8)]:
        length = tile_length(size, tile, overlap, multiple)
        starts = tile_starts(size, length, overlap)
        assert min(tile, size, MIN_CONTEXT) <= length <= min(tile, size)
        assert len(starts) == len(tile_starts(size, min(tile, size), overlap))  # no extra tiles
        assert starts[-1] + length == size and all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))
    assert tile_length(100, 128, 32, 8) == 100


def test_compile_option_runs_the_compiled_network(monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):  # stands in for torch.compile (no C++ toolchain needed here)
        compiled.append(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    net = nn.Conv2d(3, 3, 3, padding=1)
    image = smooth_image(20, 24)
    plain, fast = Restorer(net), Restorer(net, compile=True)
    assert compiled == [{"dynamic": False}]
    np.testing.assert_allclose(fast(image), plain(image), rtol=0, atol=0)


def test_window_fades_only_towards_neighbours():
    inner = window(64, 16, True, True)
    assert inner[0] == 0 and inner[-1] == 0 and torch.all(inner[12:52] == 1)
    assert torch.all(window(64, 16, False, False) == 1)
    border = window(64, 16, False, True)
    assert border[0] == 1 and border[-1] == 0


@pytest.mark.parametrize("size, length, overlap", [(500, 128, 32), (2160, 768, 64), (100, 100, 16), (517, 480, 64)])
def test_blend_weights_sum_to_one_along_an_axis(size, length, overlap):
    starts = tile_starts(size, length, overlap)
    total = torch.zeros(size)
    for start, w in zip(starts, blend_weights(size, length, overlap, starts), strict=True):
        assert w.shape == (length,) and torch.all(w >= 0)
        total[start:start + length] += w
    torch.testing.assert_close(total, torch.ones(size))


def test_tiled_forward_reads_any_layout_and_returns_float():
    """A channels-first input (validation's) and an HWC photo's permuted view give the same tiles; a half
    precision network's output is blended in float32."""
    net = nn.Conv2d(3, 2, 1).double()
    photo = torch.rand(1, 90, 70, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = net(photo.permute(0, 3, 1, 2))
        for image in (photo.permute(0, 3, 1, 2), photo.permute(0, 3, 1, 2).contiguous()):
            out = tiled_forward(lambda x: net(x).half(), image, 40, 12, torch.device("cpu"))
            assert out.shape == (1, 2, 90, 70) and out.dtype == torch.float32
            torch.testing.assert_close(out, expected.float(), atol=2e-3, rtol=2e-3)


def test_tiles_blend_without_seams_for_a_local_network():
    """A network whose receptive radius (5 px) fits in a quarter of the overlap gives the untiled result."""
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 8, 3 if i == 4 else 8, 3, padding=1, padding_mode="replicate")
                          for i in range(5)])
    img = smooth_image(200, 300)
    whole = Restorer(net, tile=0)(img)
    tiled = Restorer(net, tile=96, tile_overlap=32)(img)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiled_vs_untiled_spatial_mamba_unet_512():
    """The acceptance check on the real network: < 0.05 dB apart against ground truth on 512x512.

    The tiny preset with a fixed seed runs the same code paths as the shipped model (global scans that
    tiles cut). Its output convolution is scaled down so the untrained residual is small and the PSNR
    (about 20 dB) sits where a tiling seam would show, instead of drowning in random output.
    """
    torch.manual_seed(0)
    net = SpatialMambaUNet.from_preset("tiny")
    with torch.no_grad():
        net.output.weight.mul_(0.1)
    clean = smooth_image(512, 512)
    noisy = (clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)
    whole = psnr(Restorer(net, tile=0)(noisy), clean, data_range=1.0)
    tiled = psnr(Restorer(net, tile=384, tile_overlap=64)(noisy), clean, data_range=1.0)
    assert 15 < whole < 30
    assert abs(tiled - whole) < 0.05


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 200)])
def test_images_smaller_than_the_stride(size):
    torch.manual_seed(0)
    img = smooth_image(*size)
    out = Restorer(SpatialMambaUNet.from_preset("tiny"), tile=0)(img)
    assert out.shape == img.shape and np.isfinite(out).all()


class Pointwise(nn.Module):
    """A per-pixel colour map: equivariant to every flip and rotation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


@pytest.mark.parametrize("views", [2, 4, 8])
def test_self_ensemble_is_identity_for_an_equivariant_model(views):
    torch.manual_seed(0)
    net = Pointwise()
    img = smooth_image(40, 56)
    ensembled = Restorer(net, tile=0, self_ensemble=views)(img)
    assert ensembled.shape == img.shape
    np.testing.assert_allclose(ensembled, Restorer(net, tile=0)(img), atol=1e-6)


@pytest.mark.parametrize("views, transforms", [
    (2, [(0, False), (2, False)]),
    (4, [(k, False) for k in range(4)]),
    (8, [(k, flip) for k in range(4) for flip in (False, True)]),
])
def test_self_ensemble_averages_its_dihedral_transforms(views, transforms):
    """For a non-equivariant net the ensemble equals the explicit mean over its transforms
    (k quarter turns, then a flip of the columns), each undone on the output. 5x5: the quarter turns
    of a 3x3 kernel average to one the flip leaves alone, so x4 would equal x8."""
    net = nn.Conv2d(3, 3, 5, padding=2, bias=False)
    torch.manual_seed(0)
    nn.init.normal_(net.weight)
    img = smooth_image(24, 40)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    expected = torch.zeros_like(x)
    with torch.no_grad():
        for k, flip in transforms:
            t = torch.rot90(x, k, (2, 3))
            t = torch.flip(t, (3,)) if flip else t
            y = net(t)
            y = torch.flip(y, (3,)) if flip else y
            expected += torch.rot90(y, -k, (2, 3)) / len(transforms)
    got = Restorer(net, tile=0, self_ensemble=views)(img)
    np.testing.assert_allclose(got, expected[0].permute(1, 2, 0).numpy(), atol=1e-5)
    if views < 8:  # fewer views are a different estimate, not the x8 one
        assert np.abs(got - Restorer(net, tile=0, self_ensemble=8)(img)).max() > 1e-3


@pytest.mark.parametrize("views", [True, 3, 0])
def test_self_ensemble_refuses_view_counts_it_does_not_have(views):
    with pytest.raises(ValueError, match="self_ensemble"):
        Restorer(nn.Identity(), self_ensemble=views)


def test_bf16_precision_runs_and_stays_close():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3, padding=1)
    img = smooth_image(32, 32)
    assert np.abs(Restorer(net, precision="bf16", tile=0)(img) - Restorer(net, tile=0)(img)).max() < 0.05
