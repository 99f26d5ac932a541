"""The pure-PyTorch SASF core op against the official scan fixture, a sequential loop, and its own contract."""

from __future__ import annotations

import pytest
import torch

from conftest import rel_err
from sasf_inputs import random_sasf_inputs
from spatial_restore import kernels
from spatial_restore.kernels import linear_scan, sasf_core, sasf_core_ref, selective_scan_ref, state_fusion_ref


def sequential_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, out = torch.zeros_like(a[..., 0]), []
    for t in range(a.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, -1)


@pytest.mark.parametrize("length", [1, 2, 7, 63, 64, 65, 300, 4100])
@pytest.mark.parametrize("chunk", [4, 64])
def test_linear_scan_matches_sequential_loop(length, chunk):
    g = torch.Generator().manual_seed(1000 + length + chunk)
    a = torch.rand(2, 3, length, generator=g, dtype=torch.float64)  # decays in [0, 1)
    b = torch.randn(2, 3, length, generator=g, dtype=torch.float64)
    # float64 log-depth scan vs loop: reassociation error only, ~1e-16 per step
    torch.testing.assert_close(linear_scan(a, b, chunk=chunk), sequential_scan(a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_selective_scan_matches_official_fixture(load_ref, dtype, tol):
    fx = load_ref("scan_op.pt")
    inputs = {k: fx[k].to(dtype).detach().requires_grad_() for k in ("u", "delta", "A", "B", "delta_bias")}
    hs = selective_scan_ref(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["delta_bias"])
    assert rel_err(hs, fx["hidden_states"][:, :, 0]) < tol
    (hs * fx["dout"][:, :, 0].to(dtype)).sum().backward()
    for name, grad_key in [("u", "grad_u"), ("delta", "grad_delta"), ("A", "grad_A"), ("B", "grad_B"),
                           ("delta_bias", "grad_delta_bias")]:
        # gradients accumulate over 37 steps: allow 10x the forward tolerance in float32
        assert rel_err(inputs[name].grad, fx[grad_key]) < tol * 10, name


def test_state_fusion_matches_official_merged_kernel(load_ref):
    fx = load_ref("layer_sasf.pt")
    sd = fx["layer_state_dict"]
    kernels_ = torch.stack([sd[f"self_attention.state_fusion.{k}"][:, 0] for k in ("kernel_3", "kernel_3_1", "kernel_3_2")])
    for case in fx["cases"].values():
        h = case["hidden_states"].view(1, -1, case["H"], case["W"])
        fused = state_fusion_ref(h, kernels_, sd["self_attention.state_fusion.alpha"])
        assert rel_err(fused, case["fused_states"]) < 1e-12
        assert rel_err(fused, case["fused_states_train_path"]) < 1e-12


def random_core_inputs(b=2, d=5, height=3, width=7, dtype=torch.float64, seed=0):
    inputs = random_sasf_inputs(b, d, height, width, seed=seed, channels_last=False)
    return tuple(a.to(dtype) if torch.is_tensor(a) else a for a in inputs.channels_first())


@pytest.mark.parametrize("dtype,out_dtype", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.bfloat16, torch.float32), (torch.float16, torch.float32)])
def test_output_dtype_contract(dtype, out_dtype):
    y = sasf_core_ref(*random_core_inputs(dtype=dtype))
    assert y.dtype == out_dtype and y.shape == (2, 5, 21)


def test_half_precision_inputs_close_to_float64():
    args64 = random_core_inputs(seed=3)
    args16 = [a.to(torch.bfloat16) if isinstance(a, torch.Tensor) else a for a in args64]
    rounded = [a.double() if isinstance(a, torch.Tensor) else a for a in args16]
    # same (bf16-rounded) inputs: only fp32 compute error remains
    assert rel_err(sasf_core_ref(*args16), sasf_core_ref(*rounded)) < 1e-5


def test_dispatch_choices(monkeypatch):
    args = random_core_inputs()
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    sasf_core(*args)
    assert kernels.last_backend() == "reference"  # CPU tensors, no explicit choice
    monkeypatch.setenv(kernels.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="unknown SASF backend"):
        sasf_core(*args)
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    torch.testing.assert_close(sasf_core(*args), sasf_core_ref(*args), rtol=0, atol=0)


def test_shape_errors_are_clear():
    args = list(random_core_inputs())
    with pytest.raises(ValueError, match="height\\*width"):
        sasf_core(*args[:9], 4, 7)
    args[7] = args[7][:, :4]
    with pytest.raises(ValueError, match="fusion_kernels"):
        sasf_core(*args)


def test_auto_dispatch_keeps_float64_on_the_reference(monkeypatch):
    """Triton kernels take fp32/fp16/bf16; auto must never route float64 CUDA tensors to them."""
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    cuda = torch.device("cuda")
    if kernels.triton_available():
        assert kernels.resolve_backend(None, cuda, torch.float32) == "triton"
    assert kernels.resolve_backend(None, cuda, torch.float64) == "reference"
    assert kernels.resolve_backend(None, torch.device("cpu"), torch.float32) == "reference"


def test_backend_resolution_compiles_without_tracing_an_import(monkeypatch):
    """A first resolution inside torch.compile imports every Triton module outside the trace (fullgraph)."""
    monkeypatch.setattr(kernels, "_triton_modules", {})

    def triton_or_not(x):
        return x + 1 if kernels.triton_available() else x - 1

    out = torch.compile(triton_or_not, fullgraph=True, backend="eager")(torch.zeros(3))
    assert sorted(kernels._triton_modules) == sorted(kernels.TRITON_MODULES)
    assert torch.equal(out, torch.full((3,), 1.0 if kernels.triton_available() else -1.0))


@pytest.mark.parametrize("scan", ["row_reverse", "col", "col_reverse"])
def test_a_scan_order_is_the_row_scan_of_the_turned_image(scan):
    # Independent oracle: turn the image (transpose for "col", half turn for "_reverse") and the
    # fusion kernels with it, scan row-major, turn back. Stencil and readout commute with the turn.
    height, width = 4, 6
    u, delta, A, B, C, Dskip, dt_bias, K, alpha, _, _ = random_core_inputs(b=2, d=3, height=height, width=width)
    transpose, half_turn = scan.startswith("col"), scan.endswith("_reverse")

    def turn(x, h, w):  # (..., h*w) image -> the turned image, flattened
        x = x.unflatten(-1, (h, w))
        x = x.transpose(-2, -1) if transpose else x
        return (x.flip(-2, -1) if half_turn else x).flatten(-2)

    def turn_kernels(k):
        k = k.transpose(-2, -1) if transpose else k
        return k.flip(-2, -1) if half_turn else k

    th, tw = (width, height) if transpose else (height, width)
    turned = sasf_core_ref(turn(u, height, width), turn(delta, height, width), A, turn(B, height, width),
                           turn(C, height, width), Dskip, dt_bias, turn_kernels(K), alpha, th, tw)
    back = turned.unflatten(-1, (th, tw)).flip(-2, -1) if half_turn else turned.unflatten(-1, (th, tw))
    back = (back.transpose(-2, -1) if transpose else back).flatten(-2)
    y = sasf_core_ref(u, delta, A, B, C, Dskip, dt_bias, K, alpha, height, width, scan=scan)
    torch.testing.assert_close(y, back, rtol=1e-12, atol=1e-12)
    assert rel_err(sasf_core_ref(u, delta, A, B, C, Dskip, dt_bias, K, alpha, height, width), y) > 1e-3
