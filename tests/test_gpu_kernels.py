"""GPU correctness of the Triton SASF core op at real shapes: forward and every gradient vs the reference.

Marked ``gpu``: run on a CUDA machine with ``pytest -m gpu tests`` (conftest then compiles the Triton
kernels instead of interpreting them); elsewhere every case is skipped, saying why. The reference runs
on the GPU in float64 on the very inputs the kernels see (half inputs are rounded first), so the error
is the kernels' own fp32 arithmetic. Free caching-allocator memory is filled with NaN before each run,
so an element the kernels forget to write shows up as NaN.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton kernels' "
                                 "CPU-interpreter tests are tests/test_triton_kernels.py)")]

NAMES = ("u", "delta", "A", "B", "C", "Dskip", "dt_bias", "fusion_kernels", "alpha")
ACTIVATIONS = ("u", "delta", "B", "C")
# (B, D, H, W): odd/tiny, H = 1 and non-square with L > 2^16, and the benchmark shapes
SHAPES = [(2, 8, 17, 19), (3, 5, 1, 70001), (1, 8, 300, 301), (128, 128, 56, 56), (8, 96, 256, 256),
          (1, 96, 1024, 1024)]
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# (memory layout, scan order): the network's channels-last layout in every order, the public one in two
LAYOUTS = [(True, "row"), (True, "col_reverse"), (False, "row"), (False, "col")]
# fp32 arithmetic: 1e-5 (output) and 1e-4 (gradients, long sums) relative to each tensor's max;
# activation gradients of half inputs are rounded to that dtype on output: 1e-2.
TOL_Y, TOL_GRAD, TOL_HALF_GRAD = 1e-5, 1e-4, 1e-2


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """max |x - ref| / max |ref|; NaN anywhere gives inf."""
    diff = (x.double() - ref).abs().max().item()
    return float("inf") if diff != diff else diff / max(ref.abs().max().item(), 1e-300)


def poison_allocator(nbytes: int) -> None:
    try:
        torch.empty(nbytes // 4, device="cuda").fill_(float("nan"))
    except torch.OutOfMemoryError:
        pass


@pytest.mark.parametrize("channels_last,scan", LAYOUTS, ids=lambda v: {True: "CL", False: "CF"}.get(v, v))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t).removeprefix("torch."))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_triton_matches_float64_reference(shape, dtype, channels_last, scan):
    from sasf_inputs import random_sasf_inputs

    from spatial_restore.kernels import sasf_core_ref
    from spatial_restore.kernels.triton_sasf import sasf_triton

    b, d, height, width = shape
    cpu = random_sasf_inputs(b, d, height, width, seed=SHAPES.index(shape), dtype=torch.float32, scan=scan,
                             channels_last=channels_last)
    x = {k: getattr(cpu, k).cuda().to(dtype if k in ACTIVATIONS else torch.float32) for k in NAMES}
    dy = torch.randn(b, height * width, d, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    poison_allocator(4 * x["u"].numel() * 8)
    tri = {k: v.clone().requires_grad_() for k, v in x.items()}
    sasf_triton(cpu.replace(**tri)).backward(dy)
    ref = {k: v.double().requires_grad_() for k, v in x.items()}
    y_ref = sasf_core_ref(*cpu.replace(**ref).channels_first(), scan=scan).transpose(1, 2)
    y_ref.backward(dy.double())
    with torch.no_grad():
        y = sasf_triton(cpu.replace(**{k: v.detach() for k, v in tri.items()}))
    errors = {"y": rel_err(y, y_ref)}
    for name in NAMES:
        assert tri[name].grad.dtype == tri[name].dtype, name
        errors["d" + name] = rel_err(tri[name].grad, ref[name].grad)
    limits = {"y": TOL_Y, **{"d" + n: TOL_HALF_GRAD if dtype != torch.float32 and n in ACTIVATIONS else TOL_GRAD
                             for n in NAMES}}
    assert {k: v for k, v in errors.items() if v >= limits[k]} == {}


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("n", [32, 128, 768])
def test_layer_norm_kernel_matches_reference(n, gated):
    from spatial_restore.kernels.triton_layer_norm import layer_norm_ref, layer_norm_triton

    g = torch.Generator(device="cuda").manual_seed(n)
    x = torch.randn(2, 300, 301, n, device="cuda", generator=g).bfloat16()
    w, b = torch.randn(n, device="cuda", generator=g), torch.randn(n, device="cuda", generator=g)
    z = torch.randn(2, 300, 301, 2 * n, device="cuda", generator=g).bfloat16()[..., n:] if gated else None
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b, z)]
    refs = [t.detach().double().requires_grad_() if t is not None else None for t in leaves]
    y = layer_norm_triton(*leaves[:3], 1e-5, leaves[3], torch.bfloat16)
    y_ref = layer_norm_ref(*refs[:3], 1e-5, refs[3], torch.float64)
    dy = torch.randn(y_ref.shape, device="cuda", generator=g, dtype=torch.float64)
    y.backward(dy.bfloat16())
    y_ref.backward(dy.bfloat16().double())
    # bf16 output and activation gradients: one rounding (2^-8); parameter grads sum in fp32
    assert rel_err(y, y_ref) < 1e-2
    for t, r in zip(leaves, refs):
        if t is not None:
            assert rel_err(t.grad, r.grad) < 2e-2


# (B, H, W, C out): odd/tiny, ragged tiles in every direction, and the U-Net's level-1 shapes at 1024²
# and in training (batch 8 at 256²)
DWCONV_SHAPES = [(2, 17, 19, 40), (1, 300, 301, 64), (1, 1024, 1024, 128), (8, 256, 256, 96)]


@pytest.mark.parametrize("epilogue", ["residual", "silu", "gate"])
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=lambda t: str(t).removeprefix("torch."))
@pytest.mark.parametrize("shape", DWCONV_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dwconv_kernel_matches_reference(shape, dtype, epilogue):
    from spatial_restore.kernels.triton_dwconv import dwconv_ref, dwconv_triton

    b, h, w, c = shape
    n = 2 * c if epilogue == "gate" else c
    g = torch.Generator(device="cuda").manual_seed(n)
    x = torch.randn(b, h, w, n, device="cuda", generator=g).to(dtype)
    weight = torch.randn(n, 1, 3, 3, device="cuda", generator=g) / 3
    bias = torch.randn(n, device="cuda", generator=g)
    poison_allocator(4 * x.numel() * 8)
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
    refs = [t.detach().double().requires_grad_() for t in leaves]
    y = dwconv_triton(*leaves, epilogue)
    y_ref = dwconv_ref(*refs, epilogue)
    dy = torch.randn(y_ref.shape, device="cuda", generator=g, dtype=torch.float64)
    y.backward(dy.to(dtype))
    y_ref.backward(dy.to(dtype).double())
    # fp32: 1e-5 (output), 1e-4 (gradients: dweight sums over every position); bf16: the output and dx
    # are rounded once (2^-8), dweight/dbias are fp32 sums of the rounded gate gradients
    tol_y, tol_grad = (1e-5, 1e-4) if dtype == torch.float32 else (1e-2, 2e-2)
    errors = {"y": rel_err(y, y_ref), **{"d" + k: rel_err(t.grad, r.grad)
                                         for k, t, r in zip(("x", "weight", "bias"), leaves, refs)}}
    assert {k: v for k, v in errors.items() if v >= (tol_y if k == "y" else tol_grad)} == {}


def test_pointwise_gemm_equals_the_conv(monkeypatch):
    """The GDFN's 1x1 convs run as a GEMM with a bias epilogue on CUDA: the same map as the conv (fp32, no TF32)."""
    from spatial_restore.archs.spatial_mamba_arch import _pointwise

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(24, 40, 1).cuda()
    x = torch.randn(2, 13, 17, 24, device="cuda")
    y = _pointwise(conv, x)
    ref = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert y.shape == (2, 13, 17, 40) and y.is_contiguous() and rel_err(y, ref.double()) < 1e-5


def _unet_pair(**kw):
    from spatial_restore.archs import SpatialMambaUNet

    torch.manual_seed(0)
    fused = SpatialMambaUNet.from_preset("tiny", **kw).cuda()
    plain = SpatialMambaUNet.from_preset("tiny", fuse_dwconv=False, **kw).cuda()
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def test_unet_with_fused_dwconv_equals_unfused(monkeypatch):
    """The whole network (every block's two x + cpe(x), mixer dwconv + SiLU and GDFN fused) against
    torch's ops: fp32 output and every gradient without TF32, and the bf16-autocast inference output
    (the unfused path rounds the conv outputs to bf16, so only a loose bound there)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    fused, plain = _unet_pair()
    img = torch.rand(2, 3, 67, 45, device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    outs = []
    for net in (fused, plain):
        y = net(img)
        y.square().mean().backward()
        outs.append((y, {k: p.grad for k, p in net.named_parameters()}))
    (y, grads), (y0, grads0) = outs
    assert rel_err(y, y0.double()) < 1e-5
    assert {k: e for k, g in grads0.items() if (e := rel_err(grads[k], g.double())) >= 1e-4} == {}
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert rel_err(fused(img), plain(img).double()) < 3e-2


def test_unet_with_fused_dwconv_compiles_without_graph_break(monkeypatch):
    """torch.compile(fullgraph=True) keeps the fused dwconv as custom ops, forward and backward
    (without TF32: inductor lays the convs out differently from eager, so TF32 rounding would differ)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    fused, _ = _unet_pair()
    img = torch.rand(1, 3, 64, 64, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    compiled = torch.compile(fused, fullgraph=True)
    y = compiled(img)
    y.square().mean().backward()
    grads = {k: p.grad.clone() for k, p in fused.named_parameters()}
    fused.zero_grad(set_to_none=True)
    y0 = fused(img)
    y0.square().mean().backward()
    assert rel_err(y, y0.double()) < 1e-4
    assert {k: e for k, p in fused.named_parameters() if (e := rel_err(grads[k], p.grad.double())) >= 1e-3} == {}
