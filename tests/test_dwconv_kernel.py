"""The Triton depthwise-conv kernels (residual, SiLU and GELU-gate epilogues) on the CPU interpreter against
the reference, forward and every gradient; and the network's blocks with the fusion on against it off.

Shapes are tiny (the interpreter runs every program in Python); a tile override makes the kernels cross
tile borders in rows, columns and channels, where a wrong halo or mask would show.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from conftest import case_seed, rel_err  # noqa: E402
from spatial_restore import kernels  # noqa: E402
from spatial_restore.kernels import triton_dwconv as dwconv  # noqa: E402
from spatial_restore.kernels import triton_offsets  # noqa: E402

if os.environ["TRITON_INTERPRET"] == "1" and type(dwconv._dwconv_kernel).__name__ != "InterpretedFunction":
    importlib.reload(triton_offsets)  # imported before the variable was set: re-decorate the kernels
    importlib.reload(dwconv)

# (B, H, W, C out, tiles): C out is the conv's channel count, except for the gate (half of it)
SHAPES = [
    (2, 5, 7, 6, None),  # odd, non-square, C not a power of two; one tile per image, batch offsets
    (1, 5, 7, 6, [2, 4, 4, 2]),  # ragged tiles in rows, columns, channels (halos cross every border);
    # two row tiles per backward program, the second group half off the image
    (1, 9, 11, 40, None),  # the default tiles (4 rows x 16 columns x 64 channels): rows cross tiles
    (2, 7, 11, 6, [2, 4, 4, 1]),  # tiles with their halo inside the image (rows 2-5, columns 4-7, channels
    # 0-3; the backward's 1-row tiles rows 1-5) take the unmasked path, beside masked ones
    (2, 1, 6, 5, None),  # H = 1: the vertical taps are all padding
    (1, 4, 1, 3, None),  # W = 1
    (1, 1, 1, 3, [1, 1, 2, 2]),  # one pixel, one-element tiles, backward loop half off the image
]
EPILOGUES = ("residual", "silu", "gate")


def case(b, h, w, c, epilogue, seed):
    g = torch.Generator().manual_seed(seed)
    n = 2 * c if epilogue == "gate" else c
    x = torch.randn(b, h, w, n, generator=g, dtype=torch.float64)
    return x, torch.randn(n, 1, 3, 3, generator=g, dtype=torch.float64) / 3, torch.randn(n, generator=g,
                                                                                         dtype=torch.float64)


def run_both(shape, epilogue, dtype, slice_of: int = 0):
    """Triton on x cast to dtype (parameters fp32) vs the float64 reference on the same rounded values.
    ``slice_of`` > 0: x is the first channels of a contiguous tensor that many channels wider (read in
    place, as the mixer's x half of in_proj's output)."""
    b, h, w, c, tiles = shape
    x, weight, bias = case(b, h, w, c, epilogue, case_seed())
    wide = torch.cat([x, torch.full((*x.shape[:-1], slice_of), float("nan"), dtype=x.dtype)], dim=-1)
    leaf = wide.to(dtype).requires_grad_()
    tri = [leaf, weight.float().requires_grad_(), bias.float().requires_grad_()]
    x_in = leaf[..., : x.shape[-1]]
    ref = [t.detach().double().requires_grad_() for t in (x_in, *tri[1:])]
    y = dwconv.dwconv_triton(x_in, *tri[1:], epilogue, tiles)
    y_ref = dwconv.dwconv_ref(*ref, epilogue)
    dy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)
    y.backward(dy)
    y_ref.backward(dy.double())
    grads = [t.grad for t in tri]
    if slice_of:  # the gradient of the unread channels is zero
        assert torch.equal(grads[0][..., x.shape[-1]:], torch.zeros_like(grads[0][..., x.shape[-1]:]))
        grads[0] = grads[0][..., : x.shape[-1]]
    return y, y_ref, grads, [r.grad for r in ref]


@pytest.mark.parametrize("epilogue", EPILOGUES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:4])) + ("-tiled" if s[4] else ""))
def test_float32_matches_reference(shape, epilogue):
    y, y_ref, grads, ref_grads = run_both(shape, epilogue, torch.float32)
    b, h, w, c, _ = shape
    assert y.dtype == torch.float32 and y.shape == (b, h, w, c) and y.is_contiguous()
    # fp32 arithmetic (observed ~1e-7): 1e-5 relative to the tensor's max still catches any wrong
    # tap, halo, mask or flip (errors of order 1)
    assert rel_err(y, y_ref) < 1e-5
    for name, g, r in zip(("x", "weight", "bias"), grads, ref_grads):
        assert g.dtype == torch.float32 and g.shape == r.shape, name
        assert rel_err(g, r) < 1e-5, name


@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_64_bit_offsets_give_the_same_answer(monkeypatch, epilogue):
    """The I64 kernels (taken for tensors of 2**31 elements or more) on a small sliced input, by lowering
    the limit; the decision itself on the sizes."""
    assert dwconv._int64(torch.empty(1, 2**16, 2**15, 8, device="meta"), 8)
    assert not dwconv._int64(torch.empty(8, 256, 256, 384, device="meta"), 384)
    monkeypatch.setattr(triton_offsets, "INT32_OFFSETS_BELOW", 0)
    y, y_ref, grads, ref_grads = run_both(SHAPES[1], epilogue, torch.float32, slice_of=3)
    assert rel_err(y, y_ref) < 1e-5
    for name, g, r in zip(("x", "weight", "bias"), grads, ref_grads):
        assert rel_err(g, r) < 1e-5, name


@pytest.mark.parametrize("epilogue", EPILOGUES)
@pytest.mark.parametrize("shape", SHAPES[:1], ids=["2x5x7x6"])  # the dtype only enters loads and stores
def test_bfloat16_matches_reference(shape, epilogue):
    y, y_ref, grads, ref_grads = run_both(shape, epilogue, torch.bfloat16)
    assert y.dtype == torch.bfloat16
    # fp32 arithmetic, output rounded once to bf16 (2^-8 relative)
    assert rel_err(y, y_ref) < 1e-2
    # dx is rounded to bf16 once more (and the gate's (da, dv) before the transposed conv); dweight and
    # dbias are fp32 sums of those: 2e-2 relative to the tensor's max
    assert grads[0].dtype == torch.bfloat16
    for name, g, r in zip(("x", "weight", "bias"), grads, ref_grads):
        assert rel_err(g, r) < 2e-2, name


@pytest.mark.parametrize("epilogue", EPILOGUES)
@pytest.mark.parametrize("shape", SHAPES[:2], ids=["2x5x7x6", "1x5x7x6-tiled"])
def test_channel_slice_is_read_in_place(shape, epilogue, monkeypatch):
    """A channel slice of a wider tensor (NaN in the channels beyond it, which must never be read) gives
    the same results as the contiguous tensor, and the kernels read it where it lies (no copy)."""
    read = []
    launch = dwconv._launch
    monkeypatch.setattr(dwconv, "_launch", lambda x, *a: (read.append(x.stride(2)), launch(x, *a))[1])
    y, y_ref, grads, ref_grads = run_both(shape, epilogue, torch.float32, slice_of=3)
    n = shape[3] * (2 if epilogue == "gate" else 1)
    assert read and set(read) == {n + 3}  # every launch read the wide tensor's positions, never a copy
    assert rel_err(y, y_ref) < 1e-5
    for name, g, r in zip(("x", "weight", "bias"), grads, ref_grads):
        assert rel_err(g, r) < 1e-5, name


def test_channel_tiles_divide_the_channels_where_a_power_of_two_of_16_or_more_does():
    # the network's channel counts (48 and 96 at `base`'s first level) get whole tiles, no idle lanes
    assert [dwconv._channel_tile(c) for c in (48, 96, 192, 768, 32, 16)] == [16, 32, 64, 64, 32, 16]
    assert [dwconv._channel_tile(c) for c in (40, 6, 3)] == [64, 8, 4]  # otherwise rounded up: one ragged tile


def test_reference_is_the_unfused_network_code():
    """dwconv_ref equals what the blocks compute without fusion (nn.Conv2d, chunk, exact GELU)."""
    x, weight, bias = case(2, 3, 4, 5, "gate", case_seed())
    conv = torch.nn.Conv2d(10, 10, 3, padding=1, groups=10).double()
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        a, v = conv(x.permute(0, 3, 1, 2)).chunk(2, dim=1)
        gated = (torch.nn.functional.gelu(a) * v).permute(0, 2, 3, 1)
        torch.testing.assert_close(dwconv.dwconv_ref(x, weight, bias, "gate"), gated)
        x5 = x[..., :5]
        conv5 = torch.nn.Conv2d(5, 5, 3, padding=1, groups=5).double()
        conv5.weight.copy_(weight[:5])
        conv5.bias.copy_(bias[:5])
        torch.testing.assert_close(dwconv.dwconv_ref(x5, weight[:5], bias[:5], "residual"),
                                   x5 + conv5(x5.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        torch.testing.assert_close(dwconv.dwconv_ref(x5, weight[:5], bias[:5], "silu"),
                                   torch.nn.functional.silu(conv5(x5.permute(0, 3, 1, 2))).permute(0, 2, 3, 1))


def test_custom_op_is_registered_with_autograd_and_compiles_without_graph_break():
    x, weight, bias = (t.float() for t in case(1, 3, 4, 3, "gate", case_seed()))
    for code in dwconv.EPILOGUES.values():
        args = (x, dwconv.taps_major(weight), bias, code, [2, 4, 4, 2])
        torch.library.opcheck(torch.ops.spatial_restore.dwconv_fwd, args,
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
        # the backward op's fake must give its real strides too: inductor asserts them in compiled backwards
        dy = torch.randn(*x.shape[:-1], dwconv._out_channels(x.shape[-1], code),
                         generator=torch.Generator().manual_seed(code))
        torch.library.opcheck(torch.ops.spatial_restore.dwconv_bwd, (dy, *args),
                              test_utils=("test_schema", "test_faketensor"))
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    compiled = torch.compile(lambda *a: dwconv.dwconv_triton(*a, "gate"), backend="aot_eager", fullgraph=True)
    compiled(*leaves).square().sum().backward()
    refs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    dwconv.dwconv_ref(*refs, "gate").square().sum().backward()
    for t, r in zip(leaves, refs):
        assert rel_err(t.grad, r.grad) < 1e-5


def test_dispatch_returns_none_unless_the_backend_is_triton(monkeypatch):
    x, weight, bias = (t.float() for t in case(1, 3, 4, 4, "residual", case_seed()))
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    for epilogue in EPILOGUES:  # CPU tensors: the reference backend
        assert kernels.fused_dwconv(x, weight, bias, epilogue) is None
    assert kernels.fused_dwconv(x, weight, bias, "residual", backend="reference") is None
    y = kernels.fused_dwconv(x, weight, bias, "gate", backend="triton")
    assert y.shape == (1, 3, 4, 2) and rel_err(y, dwconv.dwconv_ref(x, weight, bias, "gate")) < 1e-5
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    y = kernels.fused_dwconv(x, weight, bias, "silu")
    assert rel_err(y, dwconv.dwconv_ref(x, weight, bias, "silu")) < 1e-5


def test_rejects_bad_inputs():
    x, weight, bias = case(1, 2, 2, 3, "residual", 0)
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        dwconv.dwconv_triton(x, weight, bias, "residual")  # float64
    x, weight, bias = x.float(), weight.float(), bias.float()
    with pytest.raises(ValueError, match="odd"):
        dwconv.dwconv_triton(x, weight, bias, "gate")
    with pytest.raises(ValueError, match="powers of two"):
        dwconv.dwconv_triton(x, weight, bias, "residual", [3, 4, 4, 1])
    with pytest.raises(ValueError, match="epilogue"):
        dwconv.dwconv_triton(x, weight, bias, "relu")
    with pytest.raises(ValueError, match="weight"):
        dwconv.dwconv_triton(x, weight[:2], bias, "residual")


@pytest.fixture
def count_fused(monkeypatch):
    """Counts the fused kernel's calls per epilogue; the SASF op runs the reference (its Triton kernels
    have their own tests, and interpreted they would take most of this file's time)."""
    from spatial_restore.archs import spatial_mamba_arch

    calls: dict[str, int] = {}
    run = dwconv.dwconv_triton

    def counting(x, weight, bias, epilogue, tiles=None):
        calls[epilogue] = calls.get(epilogue, 0) + 1
        return run(x, weight, bias, epilogue, tiles)

    monkeypatch.setattr(dwconv, "dwconv_triton", counting)
    monkeypatch.setattr(spatial_mamba_arch, "sasf", lambda inputs, backend=None: kernels.sasf(inputs,
                                                                                           backend="reference"))
    return calls


def fused_against_unfused(cls, x, **kw):
    """Output and every gradient of cls(**kw) with the fusion on (Triton backend) vs off (same weights)."""
    torch.manual_seed(case_seed())
    fused = cls(**kw, backend="triton")
    plain = cls(**kw, backend="triton", fuse_dwconv=False)
    plain.load_state_dict(fused.state_dict())  # same parameters, same names: checkpoints load unchanged
    results = []
    for module in (fused, plain):
        xi = x.clone().requires_grad_()
        y = module(xi)
        y.square().sum().backward()
        results.append((y, xi.grad, {k: p.grad for k, p in module.named_parameters()}))
    (y, dx, grads), (y0, dx0, grads0) = results
    assert rel_err(y, y0) < 1e-5 and rel_err(dx, dx0) < 1e-5
    for name, g in grads0.items():
        assert rel_err(grads[name], g) < 1e-5, name


def test_gdfn_fused_equals_unfused(count_fused):
    from spatial_restore.archs.spatial_mamba_arch import GatedDWConvFFN

    x = torch.randn(2, 5, 7, 6, generator=torch.Generator().manual_seed(case_seed()))
    fused_against_unfused(lambda **kw: GatedDWConvFFN(6, 5, **kw), x)
    assert count_fused == {"gate": 1}  # the unfused module ran none


def test_block_fused_equals_unfused_and_cpu_default_is_unchanged(count_fused):
    from spatial_restore.archs.spatial_mamba_arch import SpatialMambaBlock

    x = torch.randn(1, 3, 5, 6, generator=torch.Generator().manual_seed(case_seed()))
    fused_against_unfused(lambda **kw: SpatialMambaBlock(6, ffn="gdfn", mlp_ratio=1.5, **kw), x)
    assert count_fused == {"residual": 2, "silu": 1, "gate": 1}  # the unfused module ran none
    SpatialMambaBlock(6, ffn="gdfn")(x)  # the default backend on CPU tensors: torch's ops
    assert count_fused == {"residual": 2, "silu": 1, "gate": 1}
