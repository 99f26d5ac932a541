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
# fp32 arithmetic: 1e-5 (output) and 1e-4 (gradients, long sums) relative to each tensor's max;
# activation gradients of half inputs are rounded to that dtype on output: 1e-2.
TOL_Y, TOL_GRAD, TOL_HALF_GRAD = 1e-5, 1e-4, 1e-2


def inputs(b: int, d: int, height: int, width: int, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    length = height * width

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device="cuda") * scale

    delta = r(b, d, length) - 1.0
    delta[..., ::97] += 25.0  # a few steps above the softplus threshold
    out = {"u": r(b, d, length), "delta": delta, "A": -torch.exp(r(d, 1, scale=0.5)), "B": r(b, 1, length),
           "C": r(b, 1, length), "Dskip": r(d), "dt_bias": r(d, scale=0.5), "fusion_kernels": r(3, d, 3, 3, scale=0.3),
           "alpha": r(3)}
    return {k: v.to(dtype if k in ACTIVATIONS else torch.float32) for k, v in out.items()}


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """max |x - ref| / max |ref|; NaN anywhere gives inf."""
    diff = (x.double() - ref).abs().max().item()
    return float("inf") if diff != diff else diff / max(ref.abs().max().item(), 1e-300)


def poison_allocator(nbytes: int) -> None:
    try:
        torch.empty(nbytes // 4, device="cuda").fill_(float("nan"))
    except torch.OutOfMemoryError:
        pass


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t).removeprefix("torch."))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_triton_matches_float64_reference(shape, dtype):
    from spatial_restore.kernels import sasf_core_ref
    from spatial_restore.kernels.triton_sasf import sasf_core_triton

    b, d, height, width = shape
    x = inputs(b, d, height, width, dtype, seed=SHAPES.index(shape))
    dy = torch.randn(b, d, height * width, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    poison_allocator(4 * x["u"].numel() * 8)
    tri = {k: v.clone().requires_grad_() for k, v in x.items()}
    sasf_core_triton(*tri.values(), height, width).backward(dy)
    ref = {k: v.double().requires_grad_() for k, v in x.items()}
    y_ref = sasf_core_ref(*ref.values(), height, width)
    y_ref.backward(dy.double())
    with torch.no_grad():
        y = sasf_core_triton(*(v.detach() for v in tri.values()), height, width)
    errors = {"y": rel_err(y, y_ref)}
    for name in NAMES:
        assert tri[name].grad.dtype == tri[name].dtype, name
        errors["d" + name] = rel_err(tri[name].grad, ref[name].grad)
    limits = {"y": TOL_Y, **{"d" + n: TOL_HALF_GRAD if dtype != torch.float32 and n in ACTIVATIONS else TOL_GRAD
                             for n in NAMES}}
    assert {k: v for k, v in errors.items() if v >= limits[k]} == {}
