"""Triton SASF kernels on the CPU (TRITON_INTERPRET=1) against the float64 reference, forward and every gradient.

Triton decides at decoration time whether a kernel is interpreted, so the variable is set before the
kernel module is imported (and the module is reloaded if something imported it earlier). The
variable only concerns Triton; other test modules are unaffected. Shapes are tiny because the
interpreter runs every program in Python; tile sizes shrink with them so that the scan still
crosses several tiles and several parallel chunks, and the stencil several position blocks.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from conftest import fresh_seed, rel_err  # noqa: E402
from spatial_restore import kernels  # noqa: E402
from spatial_restore.kernels import sasf_core, sasf_core_ref  # noqa: E402
from spatial_restore.kernels import triton_sasf  # noqa: E402

if os.environ["TRITON_INTERPRET"] == "1" and type(triton_sasf._fwd_scan_kernel).__name__ != "InterpretedFunction":
    importlib.reload(triton_sasf)  # imported before the variable was set: re-decorate the kernels

# tiles of 2 channels x 8 positions (scan; 16-position chunks) and 2 x 64 (stencil): D = 3 leaves a ragged tile
SMALL = triton_sasf.TritonConfig(scan_rows=2, scan_block=8, chunk_len=16, fuse_rows=2, fuse_block=64)
NAMES = ("u", "delta", "A", "B", "C", "Dskip", "dt_bias", "fusion_kernels", "alpha")
HALF = ("u", "delta", "B", "C")  # the activations; parameters stay float32 as in the model


def core_inputs(b, d, height, width, seed):
    """Random float64 inputs; a few delta entries cross the softplus threshold 20."""
    g = torch.Generator().manual_seed(seed)
    length = height * width

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    delta = r(b, d, length) - 1.0
    delta[..., ::7] += 25.0
    return {
        "u": r(b, d, length), "delta": delta, "A": -torch.exp(0.5 * r(d, 1)), "B": r(b, 1, length),
        "C": r(b, 1, length), "Dskip": r(d), "dt_bias": 0.5 * r(d), "fusion_kernels": r(3, d, 3, 3), "alpha": r(3),
    }  # fmt: skip


def run_both(inputs, height, width, act_dtype, config=SMALL):
    """Triton on inputs cast to act_dtype vs the float64 reference on the same (rounded) values."""
    tri = {k: v.to(act_dtype if k in HALF else torch.float32).requires_grad_() for k, v in inputs.items()}
    ref = {k: v.detach().double().requires_grad_() for k, v in tri.items()}
    y_ref = sasf_core_ref(*ref.values(), height, width)
    dy = torch.randn_like(y_ref)
    y_ref.backward(dy)
    y = triton_sasf.sasf_core_triton(*tri.values(), height, width, config=config)
    y.backward(dy.float())
    return y, y_ref, tri, ref


@pytest.mark.parametrize(
    "b,d,height,width",
    [
        (2, 3, 5, 7),  # odd and non-square: every dilation-5 tap is clamped
        (1, 2, 13, 12),  # large enough for unclamped dilation-5 taps; 20 scan tiles, 10 chunks, 3 blocks
        (2, 2, 1, 9),  # H = 1: top and bottom border terms coincide
        (1, 2, 11, 1),  # W = 1
    ],
)
def test_float32_matches_float64_reference(b, d, height, width):
    seed = fresh_seed()
    y, y_ref, tri, ref = run_both(core_inputs(b, d, height, width, seed), height, width, torch.float32)
    assert y.dtype == torch.float32
    # fp32 state and arithmetic, error ~1e-7 relative: 1e-5 leaves a 100x margin and still catches
    # any wrong tap, border or carry (those give errors of order 1).
    assert rel_err(y, y_ref) < 1e-5, f"seed {seed}"
    for name in NAMES:
        # gradients sum many fp32 products (over L, b, d): 1e-4 relative to the tensor's max
        assert tri[name].grad.dtype == torch.float32
        assert rel_err(tri[name].grad, ref[name].grad) < 1e-4, f"{name}, seed {seed}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs(dtype):
    b, d, height, width = 2, 2, 6, 5
    seed = fresh_seed()
    inputs = core_inputs(b, d, height, width, seed)
    y, y_ref, tri, ref = run_both(inputs, height, width, dtype)
    # The kernels upcast on load and compute in fp32, so against the reference on the same rounded
    # inputs the output is as exact as in the fp32 test.
    assert y.dtype == torch.float32
    assert rel_err(y, y_ref) < 1e-5, f"seed {seed}"
    # Against the unrounded float64 inputs: input rounding (bf16 eps 2^-8) stays within 1e-2.
    y_exact = sasf_core_ref(*inputs.values(), height, width)
    assert rel_err(y, y_exact) < 1e-2, f"seed {seed}"
    for name in NAMES:
        # activation gradients come back in the activation dtype: one rounding, 2^-8 for bf16
        tol = 1e-2 if name in HALF else 1e-4
        assert tri[name].grad.dtype == tri[name].dtype
        assert rel_err(tri[name].grad, ref[name].grad) < tol, f"{name}, seed {seed}"


def test_default_tiles_single_chunk():
    """The shipped tile sizes (one chunk, one block per plane here) give the same answer."""
    seed = fresh_seed()
    y, y_ref, tri, ref = run_both(core_inputs(1, 3, 4, 6, seed), 4, 6, torch.float32, triton_sasf.DEFAULT_CONFIG)
    assert rel_err(y, y_ref) < 1e-5, f"seed {seed}"
    assert rel_err(tri["u"].grad, ref["u"].grad) < 1e-4, f"seed {seed}"


def test_dispatch_argument_and_environment(monkeypatch):
    height, width = 3, 4
    inputs = core_inputs(1, 2, height, width, fresh_seed())
    args = [v.float() for v in inputs.values()]
    expected = sasf_core_ref(*inputs.values(), height, width)
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    y = sasf_core(*args, height, width, backend="triton")
    assert kernels.last_backend() == "triton"
    assert rel_err(y, expected) < 1e-5
    sasf_core(*args, height, width)  # CPU tensors: auto picks the reference
    assert kernels.last_backend() == "reference"
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    y = sasf_core(*args, height, width)
    assert kernels.last_backend() == "triton"
    assert rel_err(y, expected) < 1e-5
    sasf_core(*args, height, width, backend="reference")  # the argument beats the variable
    assert kernels.last_backend() == "reference"


def test_rejects_unsupported_dtype_and_tiles():
    inputs = core_inputs(1, 2, 2, 2, 0)
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        triton_sasf.sasf_core_triton(*inputs.values(), 2, 2)
    with pytest.raises(ValueError, match="power of two"):
        triton_sasf.TritonConfig(scan_block=6)
