"""The in-place inference path of the SASF core op against the autograd reference, and its dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import case_seed
from sasf_inputs import random_sasf_inputs

from spatial_restore import kernels
from spatial_restore.kernels import sasf_core, sasf_core_inference, sasf_core_ref
from spatial_restore.kernels.reference import _linear_scan_, _softplus_, linear_scan


def core_inputs(b, d, height, width, dtype, seed, channels_last=False, scan="row"):
    """The public (b, d, L) arguments; channels_last: views of (b, L, d) memory, as the model passes them."""
    inputs = random_sasf_inputs(b, d, height, width, seed=seed, scan=scan, channels_last=channels_last)
    cast = inputs.replace(**{k: getattr(inputs, k).to(dtype) for k in ("A", "Dskip", "dt_bias", "fusion_kernels",
                                                                       "alpha", "u", "delta", "B", "C")})
    return cast.channels_first()


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("length", [1, 2, 15, 16, 17, 255, 256, 257, 4100])
def test_inplace_scan_matches_linear_scan(length, reverse):
    g = torch.Generator().manual_seed(case_seed())
    a = torch.rand(2, 3, length, generator=g, dtype=torch.float64)
    b = torch.randn(2, 3, length, generator=g, dtype=torch.float64)
    h = b.transpose(1, 2).contiguous()
    _linear_scan_(a.transpose(1, 2).contiguous(), h, reverse=reverse)
    # the reverse scan is the forward one on the flipped sequence
    expected = linear_scan(a.flip(-1), b.flip(-1)).flip(-1) if reverse else linear_scan(a, b)
    # float64, both reassociations of the same recurrence: ~1e-16 per step
    torch.testing.assert_close(h.transpose(1, 2), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 5, 3, 7), (1, 4, 17, 19), (2, 6, 40, 33), (1, 2, 1, 300)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("scan", ["row", "row_reverse", "col", "col_reverse"])
def test_inference_path_matches_reference(shape, dtype, tol, channels_last, scan):
    inputs = core_inputs(*shape, dtype, case_seed(), channels_last)
    y = sasf_core_inference(*inputs, scan=scan)
    y_ref = sasf_core_ref(*inputs, scan=scan)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    # relative to the output scale: rounding of reassociated sums only
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol * y_ref.abs().max().item())


def test_half_inputs_are_computed_in_float32():
    inputs = core_inputs(1, 4, 5, 6, torch.float32, case_seed())
    half = tuple(x.to(torch.bfloat16) if torch.is_tensor(x) else x for x in inputs)
    y = sasf_core_inference(*half)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, sasf_core_ref(*half), rtol=1e-5, atol=1e-5 * y.abs().max().item())


def test_dispatch_uses_inference_path_only_without_autograd(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "sasf_core_inference", lambda *a, **k: calls.append("inference") or sasf_core_ref(*a, **k))
    monkeypatch.setattr(kernels, "sasf_core_ref", lambda *a, **k: calls.append("ref") or sasf_core_ref(*a, **k))
    inputs = core_inputs(1, 2, 3, 4, torch.float64, case_seed())
    u = inputs[0].clone().requires_grad_()
    sasf_core(u, *inputs[1:], backend="reference").sum().backward()
    assert u.grad is not None
    with torch.no_grad():
        sasf_core(*inputs, backend="reference")
    with torch.inference_mode():
        sasf_core(*inputs, backend="reference")
    assert calls == ["ref", "inference", "inference"]
    assert kernels.last_backend() == "reference"


def test_shipped_model_restores_the_same_image_either_path():
    from spatial_restore.inference.restorer import Restorer, pick_device
    from spatial_restore.weights import load_model

    model, card = load_model("default")
    # keep_grey off: independent uniform noise per channel is, to its test, a grey picture plus noise
    restorer = Restorer(model, pick_device("cpu"), "fp32", stride=card.stride, in_channels=card.in_channels,
                        keep_grey=False)
    rgb = np.random.default_rng(case_seed()).random((96, 80, 3), dtype=np.float32)
    fast = restorer(rgb)  # inference mode: the in-place path
    with torch.enable_grad():  # autograd on: the reference op, as in training
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        ref = model(x)[0].permute(1, 2, 0).detach().numpy()
    assert np.abs(fast - ref).max() < 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-15), (torch.float32, 2e-7)])
@pytest.mark.parametrize("n", [1, 5, 70001])  # 70001: one full block of 65536 and a partial one
def test_blocked_softplus_matches_torch(dtype, tol, n):
    g = torch.Generator().manual_seed(case_seed())
    x = torch.randn(n, generator=g, dtype=dtype) * 15  # across the threshold (20) and deep below 0
    x[0] = 20.0  # the threshold itself: softplus(20) = 20, as torch's
    expected = torch.nn.functional.softplus(x)
    got = _softplus_(x.clone())
    # relative to each value: a few ulp, tiny values (x << 0, softplus ~ e^x) included
    torch.testing.assert_close(got, expected, rtol=4 * tol, atol=0)
