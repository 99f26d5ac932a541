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
