"""Triton SASF kernels on the CPU (TRITON_INTERPRET=1) against the float64 reference, forward and every gradient.

Triton decides at decoration time whether a kernel is interpreted, so the variable is set before the
kernel module is imported (and the module is reloaded if something imported it earlier). The
variable only concerns Triton; other test modules are unaffected. Shapes are tiny because the
interpreter runs every program in Python; tile sizes shrink with them so that the scan still
crosses several tiles and several parallel chunks, and the stencil several position blocks.
Both memory layouts (channels-last, the network's; channels-first, the public wrapper's) and every
scan order run through the same kernels.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from conftest import case_seed, rel_err  # noqa: E402
from sasf_inputs import random_sasf_inputs  # noqa: E402
from spatial_restore import kernels  # noqa: E402
from spatial_restore.kernels import SCAN_CODES, sasf, sasf_core, sasf_core_ref  # noqa: E402
from spatial_restore.kernels import triton_offsets, triton_sasf  # noqa: E402

if os.environ["TRITON_INTERPRET"] == "1" and type(triton_sasf._fwd_scan_kernel).__name__ != "InterpretedFunction":
    importlib.reload(triton_offsets)  # imported before the variable was set: re-decorate the kernels
    importlib.reload(triton_sasf)

# tiles of 2 channels x 8 positions (scan; 16-position chunks) and 2 x 64 (stencil): D = 3 leaves a ragged tile
SMALL = triton_sasf.TritonConfig(scan_rows=2, scan_block=8, chunk_len=16, fuse_rows=2, fuse_block=64)
NAMES = ("u", "delta", "A", "B", "C", "Dskip", "dt_bias", "fusion_kernels", "alpha")
HALF = ("u", "delta", "B", "C")  # the activations; parameters stay float32 as in the model


def run_both(inputs, act_dtype, config=SMALL):
    """Triton on inputs cast to act_dtype vs the float64 reference on the same (rounded) values.

    Returns (y, y_ref, triton leaf tensors, reference leaf tensors), y channels-last (b, L, d).
    """
    tri = {}
    for name in NAMES:
        v = getattr(inputs, name)
        tri[name] = v.to(act_dtype if name in HALF else torch.float32).detach().requires_grad_()
    assert tri["u"].stride() == inputs.u.stride()  # the memory layout under test is kept
    ref = {k: v.detach().double().requires_grad_() for k, v in tri.items()}
    y_ref = sasf_core_ref(*inputs.replace(**ref).channels_first(), scan=inputs.scan).transpose(1, 2)
    dy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y_ref.backward(dy)
    y = triton_sasf.sasf_triton(inputs.replace(**tri), config)
    y.backward(dy.float())
    return y, y_ref, tri, ref


SHAPES = [
    (2, 3, 5, 7),  # odd and non-square: every dilation-5 tap is clamped
    (1, 2, 13, 12),  # large enough for unclamped dilation-5 taps; 20 scan tiles, 10 chunks, 3 blocks
    (2, 2, 1, 9),  # H = 1: top and bottom border terms coincide
    (1, 2, 11, 1),  # W = 1
]


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "channels_first"])
@pytest.mark.parametrize("b,d,height,width", SHAPES)
def test_float32_matches_float64_reference(b, d, height, width, channels_last):
    inputs = random_sasf_inputs(b, d, height, width, seed=case_seed(), channels_last=channels_last)
    y, y_ref, tri, ref = run_both(inputs, torch.float32)
    assert y.dtype == torch.float32 and y.shape == (b, height * width, d)
    # fp32 state and arithmetic, error ~1e-7 relative: 1e-5 leaves a 100x margin and still catches
    # any wrong tap, border or carry (those give errors of order 1).
    assert rel_err(y, y_ref) < 1e-5
    for name in NAMES:
        # gradients sum many fp32 products (over L, b, d): 1e-4 relative to the tensor's max
        assert tri[name].grad.dtype == torch.float32
        assert rel_err(tri[name].grad, ref[name].grad) < 1e-4, name


@pytest.mark.parametrize("scan", ["row_reverse", "col", "col_reverse"])
@pytest.mark.parametrize("b,d,height,width,channels_last", [(1, 3, 5, 7, True), (2, 2, 6, 3, False), (1, 2, 2, 9, True)])
def test_scan_orders_match_the_reference(scan, b, d, height, width, channels_last):
    inputs = random_sasf_inputs(b, d, height, width, seed=case_seed(), scan=scan, channels_last=channels_last)
    y, y_ref, tri, ref = run_both(inputs, torch.float32)
    assert rel_err(y, y_ref) < 1e-5
    for name in NAMES:
        assert rel_err(tri[name].grad, ref[name].grad) < 1e-4, name
    row = run_both(inputs.replace(scan="row"), torch.float32)[0]
    assert rel_err(row, y) > 1e-2  # the order matters: the test can fail


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "channels_first"])
def test_half_inputs(dtype, channels_last):
    inputs = random_sasf_inputs(2, 2, 6, 5, seed=case_seed(), channels_last=channels_last, scan="col")
    y, y_ref, tri, ref = run_both(inputs, dtype)
    # The kernels upcast on load and compute in fp32, so against the reference on the same rounded
    # inputs the output is as exact as in the fp32 test.
    assert y.dtype == torch.float32
    assert rel_err(y, y_ref) < 1e-5
    # Against the unrounded float64 inputs: input rounding (bf16 eps 2^-8) stays within 1e-2.
    y_exact = sasf_core_ref(*inputs.channels_first(), scan=inputs.scan).transpose(1, 2)
    assert rel_err(y, y_exact) < 1e-2
    for name in NAMES:
        # activation gradients come back in the activation dtype: one rounding, 2^-8 for bf16
        tol = 1e-2 if name in HALF else 1e-4
        assert tri[name].grad.dtype == tri[name].dtype
        assert rel_err(tri[name].grad, ref[name].grad) < tol, name


@pytest.mark.parametrize("config", [triton_sasf.DEFAULT_CONFIG, triton_sasf.CHANNELS_LAST_CONFIG],
                         ids=["default", "channels_last_default"])
def test_shipped_tiles_single_chunk(config):
    """The shipped tile sizes (one chunk, one block per plane here) give the same answer."""
    inputs = random_sasf_inputs(1, 3, 4, 6, seed=case_seed())
    y, y_ref, tri, ref = run_both(inputs, torch.float32, config)
    assert rel_err(y, y_ref) < 1e-5
    assert rel_err(tri["u"].grad, ref["u"].grad) < 1e-4


@pytest.mark.parametrize("height,width", [(3, 66), (66, 3)])
def test_border_terms_over_several_blocks_and_channel_tiles(height, width):
    """The border kernel's tiles (32 channels x 64 border positions channels-last): a side of 66 gives two
    blocks of its rows (or columns), the corners in the first and last; 33 channels a ragged second tile."""
    inputs = random_sasf_inputs(1, 33, height, width, seed=case_seed(), scan="row_reverse")
    y, y_ref, tri, ref = run_both(inputs, torch.float32, triton_sasf.CHANNELS_LAST_CONFIG)
    assert triton_sasf._border_tile(33, height, width, True) == (32, 64)
    assert rel_err(y, y_ref) < 1e-5
    for name in NAMES:
        assert rel_err(tri[name].grad, ref[name].grad) < 1e-4, name


# stencil tiles of 4 rows x 16 columns: (22, 45) has two tiles whose every tap stays inside the image
# (rows 8-15, columns 16-31), beside border tiles; D = 3 leaves a ragged channel tile (never "inside").
# The scan keeps its default tiles (not under test here; small ones make the interpreter slow).
INSIDE = triton_sasf.TritonConfig(fuse_rows=2, fuse_block=64, fuse_width=16)


@pytest.mark.parametrize("config,b,d,height,width,channels_last", [
    (INSIDE, 2, 3, 22, 45, True), (INSIDE, 2, 3, 22, 45, False),
    (triton_sasf.CHANNELS_LAST_CONFIG, 1, 33, 17, 37, True)],
    ids=["small_tiles-channels_last", "small_tiles-channels_first", "shipped_tiles-channels_last"])
def test_tiles_inside_the_image_match_the_clamped_ones(config, b, d, height, width, channels_last):
    """Tiles away from the border take the stencil and its adjoint without clamps, masks or border terms
    (the shipped tiles: one of 15 at rows 8-11, columns 16-31, channels 0-31): every value and gradient
    still matches the reference."""
    inputs = random_sasf_inputs(b, d, height, width, seed=case_seed(), channels_last=channels_last)
    plan = triton_sasf._Plan.make(b, d, height, width, torch.device("cpu"), config)
    assert (plan.FH, plan.FW) == (4, 16)
    y, y_ref, tri, ref = run_both(inputs, torch.float32, config)
    assert rel_err(y, y_ref) < 1e-5
    for name in NAMES:
        assert rel_err(tri[name].grad, ref[name].grad) < 1e-4, name


@triton.jit
def _softplus_probe(x_ptr, sp_ptr, y_ptr, N: tl.constexpr):
    x = tl.load(x_ptr + tl.arange(0, N))
    sp, y = triton_sasf._softplus_parts(x)
    tl.store(sp_ptr + tl.arange(0, N), sp)
    tl.store(y_ptr + tl.arange(0, N), y)


def test_softplus_series_is_accurate_from_tiny_to_past_the_threshold():
    """The kernels' softplus (a short atanh series instead of a log) against float64, relative to each
    value: tiny results (x << 0, softplus ~ e^x) keep their precision, and 20 and above return x itself.
    The interpreter's exp and division are exact; on a GPU their fast forms add a few ulp (as the log did)."""
    x = torch.cat([torch.tensor([-87.0, -30.0, -1e-6, 0.0, 1e-6, 19.999, 20.0, 20.001, 60.0]),
                   torch.linspace(-25, 25, 1015)])
    sp, y = torch.empty_like(x), torch.empty_like(x)
    _softplus_probe[(1,)](x, sp, y, N=x.numel())
    exact = torch.nn.functional.softplus(x.double(), threshold=1e9)
    assert ((sp.double() - exact).abs() / exact).max() < 1e-6
    assert torch.equal(sp[x >= 20], x[x >= 20])  # torch's threshold: softplus(x) = x
    assert torch.allclose(y.double(), torch.exp(-x.double().abs()), rtol=1e-6, atol=0)


def test_offsets_widen_to_64_bits_only_for_buffers_past_int32():
    geometry = triton_sasf._cached_geometry
    config = tuple(triton_sasf.CHANNELS_LAST_CONFIG.as_list())
    assert not geometry(8, 384, 256, 256, 0, True, config, torch.device("cpu")).wide  # 2.0e8 elements
    assert geometry(1, 192, 4096, 3840, 0, True, config, torch.device("cpu")).wide  # 3.0e9 elements


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "channels_first"])
def test_64_bit_offsets_give_the_same_answer(monkeypatch, channels_last):
    """The I64 kernels (taken for buffers of 2**31 elements or more) on a small shape, by lowering the limit."""
    monkeypatch.setattr(triton_offsets, "INT32_OFFSETS_BELOW", 0)
    triton_sasf._cached_geometry.cache_clear()
    try:
        inputs = random_sasf_inputs(2, 3, 5, 7, seed=case_seed(), channels_last=channels_last, scan="col_reverse")
        assert triton_sasf._geometry(inputs.u if channels_last else inputs.u.transpose(1, 2), 5, 7, 3,
                                     channels_last, SMALL.as_list()).wide
        y, y_ref, tri, ref = run_both(inputs, torch.float32)
        assert rel_err(y, y_ref) < 1e-5
        for name in NAMES:
            assert rel_err(tri[name].grad, ref[name].grad) < 1e-4, name
    finally:
        triton_sasf._cached_geometry.cache_clear()  # no wide plans left for the other tests


def test_the_op_is_a_registered_custom_op_with_autograd():
    """torch.compile sees one opaque op (no graph break); its fake kernel gives the real output's metadata."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    inputs = random_sasf_inputs(1, 2, 3, 4, seed=case_seed(), dtype=torch.float32)
    args = (inputs.u, inputs.delta, inputs.A.view(-1).float(), inputs.B, inputs.C, inputs.Dskip.float(),
            inputs.dt_bias.float(), triton_sasf.stencil_weights(inputs.fusion_kernels.float(), inputs.alpha.float()),
            3, 4, 0, True,
            triton_sasf.DEFAULT_CONFIG.as_list())
    torch.library.opcheck(torch.ops.spatial_restore.sasf_fwd, args, test_utils=("test_schema", "test_faketensor"))
    dy = torch.randn(inputs.u.shape, generator=torch.Generator().manual_seed(1))
    torch.library.opcheck(torch.ops.spatial_restore.sasf_bwd, (dy, *args),
                          test_utils=("test_schema", "test_faketensor"))
    with FakeTensorMode() as mode:
        fake = torch.ops.spatial_restore.sasf_fwd(*(mode.from_tensor(a) if torch.is_tensor(a) else a for a in args))
    real = torch.ops.spatial_restore.sasf_fwd(*args)
    assert fake.shape == real.shape and fake.dtype == real.dtype == torch.float32


def test_dispatch_argument_and_environment(monkeypatch):
    inputs = random_sasf_inputs(1, 2, 3, 4, seed=case_seed())
    args = [a.float() if torch.is_tensor(a) else a for a in inputs.channels_first()]
    expected = sasf_core_ref(*inputs.channels_first())
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    y = sasf_core(*args, backend="triton")
    assert kernels.last_backend() == "triton"
    assert rel_err(y, expected) < 1e-5
    sasf_core(*args)  # CPU tensors: auto picks the reference
    assert kernels.last_backend() == "reference"
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    y = sasf_core(*args)
    assert kernels.last_backend() == "triton"
    assert rel_err(y, expected) < 1e-5
    sasf_core(*args, backend="reference")  # the argument beats the variable
    assert kernels.last_backend() == "reference"
    # the channels-last form dispatches the same way
    y_cl = sasf(inputs.replace(**{k: getattr(inputs, k).float() for k in NAMES}), backend="triton")
    assert rel_err(y_cl.transpose(1, 2), expected) < 1e-5


def test_rejects_unsupported_dtype_and_tiles():
    inputs = random_sasf_inputs(1, 2, 2, 2, seed=0)  # float64
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        triton_sasf.sasf_triton(inputs)
    with pytest.raises(ValueError, match="power of two"):
        triton_sasf.TritonConfig(scan_block=6)
    with pytest.raises(ValueError, match="scan must be one of"):
        inputs.replace(scan="diagonal")
    assert sorted(SCAN_CODES) == ["col", "col_reverse", "row", "row_reverse"]
