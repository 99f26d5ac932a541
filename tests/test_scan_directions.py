"""SASF scan directions: what each direction computes, how several mix, and how the U-Net assigns them."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from spatial_restore.archs import SpatialMambaUNet
from spatial_restore.archs.spatial_mamba_arch import SCAN_DIRECTIONS, StructureAwareSSM, _orient
from spatial_restore.archs.spatial_mamba_unet_arch import parse_scans


def fresh_seed() -> int:
    seed = random.randrange(2**31)
    print(f"seed {seed}")  # shown on failure, so the case can be replayed
    return seed


def random_layer(directions, dim: int = 6, seed: int = 0) -> StructureAwareSSM:
    """A float64 layer with every parameter random (the fusion kernels asymmetric), so that any
    orientation mistake changes the output."""
    torch.manual_seed(seed)
    layer = StructureAwareSSM(dim, scan_directions=directions).double()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name != "direction_mix":  # kept at its init (the mean of the directions)
                p.copy_(torch.randn_like(p) * 0.5)
        layer.A_logs.uniform_(-1, 1)
    return layer


def image_transform(x: torch.Tensor, direction: str, dims=(1, 2)) -> torch.Tensor:
    transpose, reverse = SCAN_DIRECTIONS[direction]
    x = x.transpose(*dims) if transpose else x
    return x.flip(dims) if reverse else x


@pytest.mark.parametrize("direction", ["row_reverse", "col", "col_reverse"])
@pytest.mark.parametrize("shape", [(1, 5, 7), (2, 9, 4)])
def test_a_direction_is_the_row_scan_of_the_transformed_image(direction, shape):
    # Scanning x in another direction = the row-scan layer on the transformed image, with its depthwise
    # kernels transformed the same way (every other operation is per pixel), transformed back.
    seed = fresh_seed()
    layer = random_layer((direction,), seed=seed)
    row = copy.deepcopy(layer)
    row.scan_directions = ("row",)
    with torch.no_grad():
        row.conv2d.weight.copy_(image_transform(layer.conv2d.weight, direction, dims=(2, 3)))
        for name in ("kernel_3", "kernel_3_1", "kernel_3_2"):
            getattr(row.state_fusion, name).copy_(image_transform(getattr(layer.state_fusion, name), direction, dims=(2, 3)))
    b, h, w = shape
    x = torch.randn(b, h, w, 6, dtype=torch.float64)
    expected = image_transform(row(image_transform(x, direction)), direction)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(layer(x), row(x))  # the direction matters: the test can fail


@pytest.mark.parametrize("channels_last", [True, False])
def test_orient_reorders_the_sequence(channels_last):
    h, w = 3, 4
    seq = torch.arange(2 * h * w, dtype=torch.float64).view(1, 2, -1)  # two channels: 0..11, 12..23
    row_major = seq[0, 0].view(h, w)
    orders = {(False, True): list(range(h * w))[::-1], (True, False): row_major.T.flatten().tolist(),
              (True, True): row_major.T.flatten().tolist()[::-1]}
    for (transpose, reverse), order in orders.items():
        out = _orient(seq, h, w, transpose, reverse, channels_last)
        assert out.shape == seq.shape
        assert out[0, 0].tolist() == order and out[0, 1].tolist() == [i + h * w for i in order]
        assert (out.transpose(1, 2) if channels_last else out).is_contiguous()


def test_mixed_directions_start_as_their_mean_and_span_each_direction():
    seed = fresh_seed()
    mixed = random_layer(("row", "col", "row_reverse"), seed=seed)
    # the layer was built in float32, so 1/3 carries float32 rounding (relative 3e-8) into float64
    torch.testing.assert_close(mixed.direction_mix[:, 0], torch.tensor([1 / 2, 1 / 3], dtype=torch.float64), rtol=1e-7, atol=0)
    x = torch.randn(2, 6, 5, 6, dtype=torch.float64)
    args, _ = mixed.core_inputs(x)
    mean = sum(mixed.scan(args, d) for d in mixed.scan_directions) / 3
    with torch.no_grad():
        torch.testing.assert_close(mixed.scan(args, "row") + mixed.direction_mix[0] * (mixed.scan(args, "col") - mixed.scan(args, "row")),
                                   (mixed.scan(args, "row") + mixed.scan(args, "col")) / 2)
    # the forward uses the mix: with the mean it equals out_proj(out_norm(mean) * silu(z))
    _, z = mixed.core_inputs(x)
    expected = mixed.out_proj(mixed.out_norm(mean) * torch.nn.functional.silu(z))
    torch.testing.assert_close(mixed(x), expected, rtol=1e-6, atol=1e-6)  # that rounding, through LayerNorm
    # mix 0 for every extra direction is the first direction's layer; mix (1, 0) is the second's
    for mix, alone in (((0.0, 0.0), "row"), ((1.0, 0.0), "col"), ((0.0, 1.0), "row_reverse")):
        single = copy.deepcopy(mixed)
        single.scan_directions = (alone,)
        with torch.no_grad():
            mixed.direction_mix.copy_(torch.tensor(mix, dtype=torch.float64)[:, None].expand_as(mixed.direction_mix))
        torch.testing.assert_close(mixed(x), single(x), rtol=1e-10, atol=1e-10)


def test_mixing_weights_learn():
    layer = random_layer(("row", "col"), seed=fresh_seed())
    layer(torch.randn(1, 4, 7, 6, dtype=torch.float64)).square().sum().backward()
    assert layer.direction_mix.grad is not None and layer.direction_mix.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [(), ("row", "row"), ("diagonal",), "row_col"])
def test_bad_directions_are_refused(bad):
    with pytest.raises(ValueError, match="scan_directions"):
        StructureAwareSSM(4, scan_directions=bad)


def test_unet_assigns_scans_cyclically_in_build_order():
    net = SpatialMambaUNet.from_preset("tiny", scans=["row", "col+row_reverse", "col_reverse"])
    layers = [m.scan_directions for m in net.modules() if isinstance(m, StructureAwareSSM)]
    assert len(layers) == 8  # tiny: 1 block in each of 7 levels + 1 refinement block
    assert layers == [("row",), ("col", "row_reverse"), ("col_reverse",)] * 2 + [("row",), ("col", "row_reverse")]
    assert parse_scans(["row"], 3) == [("row",)] * 3
    with pytest.raises(ValueError, match="scans"):
        SpatialMambaUNet.from_preset("tiny", scans="row")
    with pytest.raises(ValueError, match="scan_directions"):
        SpatialMambaUNet.from_preset("tiny", scans=["row", "up"])


def test_single_direction_weights_load_into_other_scans():
    official = SpatialMambaUNet.from_preset("tiny").state_dict()
    cycled = SpatialMambaUNet.from_preset("tiny", scans=["row", "col", "row_reverse", "col_reverse"])
    cycled.load_state_dict(official)  # strict: a cycle adds no parameter
    mixed = SpatialMambaUNet.from_preset("tiny", scans=["row+col"])
    missing, unexpected = mixed.load_state_dict(official, strict=False)
    assert not unexpected and missing and all(k.endswith("self_attention.direction_mix") for k in missing)


@pytest.mark.parametrize("scans", [["row", "col", "row_reverse", "col_reverse"], ["row+col_reverse"]])
def test_inference_path_matches_autograd_path(scans):
    # Without autograd the CPU takes the in-place path (sasf_core_inference and in-place activations).
    torch.manual_seed(fresh_seed())
    net = SpatialMambaUNet.from_preset("tiny", scans=scans).eval()
    x = torch.rand(1, 3, 19, 26)
    with torch.no_grad():
        fast = net(x)
    torch.testing.assert_close(fast, net(x).detach(), rtol=1e-5, atol=1e-5)
