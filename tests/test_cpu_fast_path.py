"""The in-place inference path of the SASF core op against the autograd reference, and its dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fresh_seed

from spatial_restore import kernels
from spatial_restore.kernels import sasf_core, sasf_core_inference, sasf_core_ref
from spatial_restore.kernels.reference import _linear_scan_, _softplus_, linear_scan


def core_inputs(b, d, height, width, dtype, seed, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    length = height * width

    def seq(rows):  # (b, rows, L), optionally a view of (b, L, rows) memory as the model passes it
        x = torch.randn(b, length, rows, generator=g, dtype=dtype)
        return x.transpose(1, 2) if channels_last else x.transpose(1, 2).contiguous()

    A = -torch.exp(torch.randn(d, 1, generator=g, dtype=dtype))
    scalars = [torch.randn(n, generator=g, dtype=dtype) for n in (d, d, 3)]  # Dskip, dt_bias, alpha
    kernels_ = torch.randn(3, d, 3, 3, generator=g, dtype=dtype)
    return (seq(d), seq(d), A, seq(1), seq(1), scalars[0], scalars[1], kernels_, scalars[2], height, width)


@pytest.mark.parametrize("length", [1, 2, 15, 16, 17, 255, 256, 257, 4100])
def test_inplace_scan_matches_linear_scan(length):
    g = torch.Generator().manual_seed(fresh_seed())
    a = torch.rand(2, 3, length, generator=g, dtype=torch.float64)
    b = torch.randn(2, 3, length, generator=g, dtype=torch.float64)
    h = b.transpose(1, 2).contiguous()
    _linear_scan_(a.transpose(1, 2).contiguous(), h)
    # float64, both reassociations of the same recurrence: ~1e-16 per step
    torch.testing.assert_close(h.transpose(1, 2), linear_scan(a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 5, 3, 7), (1, 4, 17, 19), (2, 6, 40, 33), (1, 2, 1, 300)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_path_matches_reference(shape, dtype, tol, channels_last):
    inputs = core_inputs(*shape, dtype, fresh_seed(), channels_last)
    y = sasf_core_inference(*inputs)
    y_ref = sasf_core_ref(*inputs)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    # relative to the output scale: rounding of reassociated sums only
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol * y_ref.abs().max().item())


def test_half_inputs_are_computed_in_float32():
    inputs = core_inputs(1, 4, 5, 6, torch.float32, fresh_seed())
    half = tuple(x.to(torch.bfloat16) if torch.is_tensor(x) else x for x in inputs)
    y = sasf_core_inference(*half)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, sasf_core_ref(*half), rtol=1e-5, atol=1e-5 * y.abs().max().item())


def test_dispatch_uses_inference_path_only_without_autograd(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "sasf_core_inference", lambda *a: calls.append("inference") or sasf_core_ref(*a))
    monkeypatch.setattr(kernels, "sasf_core_ref", lambda *a: calls.append("ref") or sasf_core_ref(*a))
    inputs = core_inputs(1, 2, 3, 4, torch.float64, fresh_seed())
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
    rgb = np.random.default_rng(fresh_seed()).random((96, 80, 3), dtype=np.float32)
    fast = restorer(rgb)  # inference mode: the in-place path
    with torch.enable_grad():  # autograd on: the reference op, as in training
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        ref = model(x)[0].permute(1, 2, 0).detach().numpy()
    assert np.abs(fast - ref).max() < 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-15), (torch.float32, 2e-7)])
@pytest.mark.parametrize("n", [1, 5, 70001])  # 70001: one full block of 65536 and a partial one
def test_blocked_softplus_matches_torch(dtype, tol, n):
    g = torch.Generator().manual_seed(fresh_seed())
    x = torch.randn(n, generator=g, dtype=dtype) * 15  # across the threshold (20) and deep below 0
    x[0] = 20.0  # the threshold itself: softplus(20) = 20, as torch's
    expected = torch.nn.functional.softplus(x)
    got = _softplus_(x.clone())
    # relative to each value: a few ulp, tiny values (x << 0, softplus ~ e^x) included
    torch.testing.assert_close(got, expected, rtol=4 * tol, atol=0)
