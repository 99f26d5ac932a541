"""Without autograd the network overwrites its own temporaries in place: same output, inputs untouched."""

from __future__ import annotations

import torch

from spatial_restore.archs import SpatialMambaBlock, SpatialMambaUNet


def test_unet_no_grad_matches_autograd_path_and_keeps_its_input():
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny").double().eval()
    x = torch.rand(1, 3, 21, 30, dtype=torch.float64)
    kept = x.clone()
    with torch.no_grad():
        fast = model(x)
    assert torch.equal(x, kept)
    ref = model(x)  # autograd on: out-of-place ops and the reference core op
    assert ref.requires_grad
    torch.testing.assert_close(fast, ref.detach(), rtol=1e-12, atol=1e-12)


def test_block_no_grad_keeps_its_input():
    torch.manual_seed(0)
    block = SpatialMambaBlock(8, ffn="gdfn", mlp_ratio=2.0).double().eval()
    x = torch.randn(2, 5, 7, 8, dtype=torch.float64)
    kept = x.clone()
    with torch.inference_mode():
        fast = block(x)
    assert torch.equal(x, kept)
    torch.testing.assert_close(fast, block(x).detach(), rtol=1e-12, atol=1e-12)


def test_in_place_adds_never_round_to_the_lower_precision():
    from spatial_restore.archs.spatial_mamba_arch import _add, _mul

    low, high = torch.full((4,), 1.0, dtype=torch.bfloat16), torch.full((4,), 1e-3)
    with torch.no_grad():
        for op, exact in ((_add, 1.001), (_mul, 1e-3)):
            out = op(low, high)  # as under autocast: a bf16 temporary meets an fp32 one
            assert out.dtype == torch.float32 and torch.allclose(out, torch.full((4,), exact))
            assert torch.equal(low, torch.ones(4, dtype=torch.bfloat16))  # not written into
        same = torch.ones(4)
        assert _add(same, high) is same  # equal dtypes: written in place
