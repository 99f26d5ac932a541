"""SASF scan directions: which pixels each direction lets a pixel see, and how the U-Net assigns them."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import case_seed

from spatial_restore.archs import SpatialMambaUNet
from spatial_restore.archs.spatial_mamba_arch import StructureAwareSSM
from spatial_restore.archs.spatial_mamba_unet_arch import parse_scans

CYCLE = ["row", "col", "row_reverse", "col_reverse"]
# The oracle's definition of each direction: (transpose, half turn) of the image before a row scan.
TURNS = {"row": (False, False), "row_reverse": (False, True), "col": (True, False), "col_reverse": (True, True)}


def random_layer(direction: str, dim: int = 4, seed: int = 0) -> StructureAwareSSM:
    """A float64 layer with every parameter random (the depthwise kernels asymmetric), so that any
    orientation mistake changes the output."""
    torch.manual_seed(seed)
    layer = StructureAwareSSM(dim, scan_direction=direction).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        layer.A_logs.uniform_(-1, 1)
    return layer


def scan_position(direction: str, h: int, w: int) -> torch.Tensor:
    """(h, w): when each pixel comes in the scan, from how the direction is defined in words."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    by_row, by_col = rows * w + cols, cols * h + rows
    return {"row": by_row, "col": by_col, "row_reverse": h * w - 1 - by_row, "col_reverse": h * w - 1 - by_col}[direction]


def neighbourhood_extreme(values: torch.Tensor, offsets: list[int], reduce) -> torch.Tensor:
    """Per pixel, max or min of ``values`` over the pixels at (dy, dx) in offsets², clamped to the image."""
    h, w = values.shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows_at = [(rows + d).clamp(0, h - 1) for d in offsets]
    cols_at = [(cols + d).clamp(0, w - 1) for d in offsets]
    stack = [values[r, c] for r in rows_at for c in cols_at]
    return reduce(torch.stack(stack), dim=0).values


@pytest.mark.parametrize("direction", CYCLE)
def test_a_pixel_sees_what_its_stencil_scanned_before_it(direction):
    # Output at p reads the fused states at p + {0, ±1, ±3, ±5}² (clamped), each holding every input
    # scanned up to there; an input enters through the 3x3 depthwise conv. So p depends on x[q] iff the
    # earliest pixel of q's 3x3 neighbourhood comes no later than the latest of p's stencil. Autograd
    # must show exactly that, every pixel against every pixel.
    h, w = 12, 13
    layer = random_layer(direction, seed=case_seed())
    order = scan_position(direction, h, w)
    reach = neighbourhood_extreme(order, [-5, -3, -1, 0, 1, 3, 5], torch.max)  # latest state read by p
    first = neighbourhood_extreme(order, [-1, 0, 1], torch.min)  # earliest scan step x[q] enters
    x = torch.randn(1, h, w, 4, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    blind_spots = 0
    for p in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (6, 6), (3, 9)]:
        (grad,) = torch.autograd.grad(out[0, p[0], p[1]].sum(), x, retain_graph=True)
        seen = grad[0].abs().amax(dim=-1) > 0
        assert torch.equal(seen, first <= reach[p]), (direction, p)
        blind_spots += int((~seen).sum())
    assert blind_spots > 100  # the direction shows: the pixels early in the scan miss much of the image


@pytest.mark.parametrize("direction", ["row_reverse", "col", "col_reverse"])
@pytest.mark.parametrize("shape", [(1, 5, 7), (2, 9, 4)])
def test_a_direction_is_the_row_scan_of_the_transformed_image(direction, shape):
    # Scanning x another way = the row-scan layer on the transformed image, with its depthwise kernels
    # transformed the same way (every other operation is per pixel), transformed back.
    layer = random_layer(direction, seed=case_seed())
    row = copy.deepcopy(layer)
    row.scan_direction = "row"
    transpose, reverse = TURNS[direction]

    def transform(t, dims):
        t = t.transpose(*dims) if transpose else t
        return t.flip(dims) if reverse else t

    with torch.no_grad():
        row.conv2d.weight.copy_(transform(layer.conv2d.weight, (2, 3)))
        for name in ("kernel_3", "kernel_3_1", "kernel_3_2"):
            getattr(row.state_fusion, name).copy_(transform(getattr(layer.state_fusion, name), (2, 3)))
    x = torch.randn(*shape, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), transform(row(transform(x, (1, 2))), (1, 2)), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(layer(x), row(x))  # the direction matters: the test can fail


@pytest.mark.parametrize("bad", ["diagonal", "row+col", ""])
def test_unknown_directions_are_refused(bad):
    with pytest.raises(ValueError, match="scan_direction"):
        StructureAwareSSM(4, scan_direction=bad)


def test_unet_assigns_scans_cyclically_in_build_order():
    net = SpatialMambaUNet.from_preset("tiny", scans=["row", "col", "col_reverse"])
    layers = [m.scan_direction for m in net.modules() if isinstance(m, StructureAwareSSM)]
    assert len(layers) == 8  # tiny: 1 block in each of 7 levels + 1 refinement block
    assert layers == ["row", "col", "col_reverse"] * 2 + ["row", "col"]
    assert parse_scans(["row"], 3) == ["row"] * 3
    with pytest.raises(ValueError, match="scans"):
        SpatialMambaUNet.from_preset("tiny", scans="row")
    with pytest.raises(ValueError, match="scan_direction"):
        SpatialMambaUNet.from_preset("tiny", scans=["row", "up"])


def test_weights_load_across_scans():
    # A direction adds no parameter: official row-scan weights load strictly into any scans.
    official = SpatialMambaUNet.from_preset("tiny").state_dict()
    SpatialMambaUNet.from_preset("tiny", scans=CYCLE).load_state_dict(official)


def test_inference_path_matches_autograd_path():
    # Without autograd the CPU takes the in-place path (sasf_core_inference and in-place activations),
    # which must not write into the views the transforms make.
    torch.manual_seed(case_seed())
    net = SpatialMambaUNet.from_preset("tiny", scans=CYCLE).eval()
    x = torch.rand(1, 3, 19, 26)
    with torch.no_grad():
        fast = net(x)
    torch.testing.assert_close(fast, net(x).detach(), rtol=1e-5, atol=1e-5)


def test_operation_count_does_not_depend_on_scans():
    # The FLOP counter hooks modules; a direction changes only the order of the scan.
    from spatial_restore.complexity import count_flops

    row, turning = (count_flops(SpatialMambaUNet.from_preset("tiny", scans=s), (1, 3, 32, 40))
                    for s in (["row"], CYCLE))
    assert row == turning and row["conv"] > 0
