"""The Triton LayerNorm(+SiLU gate) kernel on the CPU interpreter against the reference, forward and backward."""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from conftest import case_seed, rel_err  # noqa: E402
from spatial_restore.kernels import triton_layer_norm as layer_norm  # noqa: E402

if os.environ["TRITON_INTERPRET"] == "1" and type(layer_norm._ln_fwd_kernel).__name__ != "InterpretedFunction":
    importlib.reload(layer_norm)


def case(rows_shape, n, dtype, gated, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*rows_shape, n, generator=g) * 3 + 1).to(dtype)
    w, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
    # the gate as the SASF layer has it: the second half of a wider projection (row stride 2n)
    z = torch.randn(*rows_shape, 2 * n, generator=g).to(dtype)[..., n:] if gated else None
    return x, w, b, z


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("rows_shape,n", [((2, 3, 5), 7), ((1, 9, 4), 64), ((3,), 130)])
@pytest.mark.parametrize("dtype,out_dtype,tol", [(torch.float32, torch.float32, 1e-5),
                                                 (torch.bfloat16, torch.bfloat16, 1e-2),
                                                 (torch.float32, torch.bfloat16, 1e-2)])
def test_matches_reference_forward_and_backward(rows_shape, n, dtype, out_dtype, tol, gated):
    x, w, b, z = case(rows_shape, n, dtype, gated, case_seed())
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b, z)]
    refs = [t.detach().double().requires_grad_() if t is not None else None for t in leaves]
    y = layer_norm.layer_norm_triton(leaves[0], leaves[1], leaves[2], 1e-5, leaves[3], out_dtype)
    y_ref = layer_norm.layer_norm_ref(refs[0], refs[1], refs[2], 1e-5, refs[3], torch.float64)
    assert y.dtype == out_dtype and y.shape == x.shape
    # bf16 output: one rounding (2^-8); fp32: rounding of the row statistics only
    assert rel_err(y, y_ref) < tol
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y.backward(dy.to(out_dtype))
    y_ref.backward(dy.to(out_dtype).double())
    for name, t, r in zip(("x", "weight", "bias", "gate"), leaves, refs):
        if t is None:
            continue
        assert t.grad.dtype == t.dtype, name
        # half inputs: the gradient is rounded once more (2^-8); sums over rows stay well inside 1e-2
        assert rel_err(t.grad, r.grad) < (tol if dtype == torch.float32 else 2e-2), name


def test_reference_is_torch_layer_norm_times_silu():
    x, w, b, z = case((4, 5), 6, torch.float64, True, case_seed())
    expected = torch.nn.functional.layer_norm(x, (6,), w.double(), b.double(), 1e-5) * torch.nn.functional.silu(z)
    torch.testing.assert_close(layer_norm.layer_norm_ref(x, w, b, 1e-5, z), expected)


@pytest.mark.parametrize("layout", ["contiguous", "gated", "transposed"])
def test_fake_kernels_give_the_real_outputs_metadata(layout):
    """torch.compile plans with the fake kernels; inductor asserts their strides on the real outputs."""
    x, w, b, z = case((2, 5), 8, torch.float32, layout == "gated", case_seed())
    if layout == "transposed":  # rows not in memory order, as a permuted view gives them
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    args = (x, w, b, z, 1e-5, torch.float32)
    torch.library.opcheck(torch.ops.spatial_restore.layer_norm_fwd, args, test_utils=("test_schema", "test_faketensor"))
    out, mean, rstd = torch.ops.spatial_restore.layer_norm_fwd(*args)
    dy = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    torch.library.opcheck(torch.ops.spatial_restore.layer_norm_bwd, (dy, x, w, b, z, mean, rstd),
                          test_utils=("test_schema", "test_faketensor"))
