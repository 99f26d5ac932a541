"""LayerNorm over the last dim, optionally times SiLU(gate), as one Triton kernel (forward and backward).

The restoration network normalises channels-last rows of 32-768 channels millions of times per image;
torch's kernel spends a thread block per row there and, under autocast, writes float32 that the next
projection casts again. This kernel normalises a tile of rows per program, in float32, and writes the
output dtype the caller asks for (the autocast dtype): out = LN(x) * w + b, times silu(z) when gated
(the SASF layer's readout gate). ``layer_norm_ref`` is the reference it is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


def layer_norm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                   gate: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """F.layer_norm in float32 (float64 stays), times silu(gate) when given, cast to out_dtype (default x's)."""
    ct = torch.promote_types(x.dtype, torch.float32)
    y = F.layer_norm(x.to(ct), x.shape[-1:], weight.to(ct), bias.to(ct), eps)
    if gate is not None:
        y = y * F.silu(gate.to(ct))
    return y.to(out_dtype or x.dtype)


@triton.jit
def _row_tile(M, N, BM: tl.constexpr, BN: tl.constexpr):
    """This program's BM rows x all (BN-padded) columns: indices, masks, 64-bit row indices."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.arange(0, BN)
    rm, cm = rows < M, cols < N
    return rows, cols, rm, cm, rm[:, None] & cm[None, :], rows.to(tl.int64)


@triton.jit
def _ln_fwd_kernel(x_ptr, z_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, M, N, x_row, z_row, eps,
                   BM: tl.constexpr, BN: tl.constexpr, GATED: tl.constexpr):
    rows, cols, rm, cm, m, r64 = _row_tile(M, N, BM, BN)
    x = tl.load(x_ptr + r64[:, None] * x_row + cols[None, :], mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / N
    xc = tl.where(m, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / N + eps)
    w = tl.load(w_ptr + cols, mask=cm, other=0.0)
    b = tl.load(b_ptr + cols, mask=cm, other=0.0)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    if GATED:
        z = tl.load(z_ptr + r64[:, None] * z_row + cols[None, :], mask=m, other=0.0).to(tl.float32)
        y = y * z / (1.0 + tl.exp(-z))
    tl.store(y_ptr + r64[:, None] * N + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=m)
    tl.store(mean_ptr + rows, mean, mask=rm)
    tl.store(rstd_ptr + rows, rstd, mask=rm)


@triton.jit
def _ln_bwd_kernel(dy_ptr, x_ptr, z_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, dx_ptr, dz_ptr, dw_ptr, db_ptr,
                   M, N, x_row, z_row, dz_row, BM: tl.constexpr, BN: tl.constexpr, GATED: tl.constexpr):
    """dx (and dz) per row; per-program partial sums of dw, db (no atomics: finished by torch)."""
    rows, cols, rm, cm, m, r64 = _row_tile(M, N, BM, BN)
    x = tl.load(x_ptr + r64[:, None] * x_row + cols[None, :], mask=m, other=0.0).to(tl.float32)
    g = tl.load(dy_ptr + r64[:, None] * N + cols[None, :], mask=m, other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + rows, mask=rm, other=0.0)
    rstd = tl.load(rstd_ptr + rows, mask=rm, other=0.0)
    w = tl.load(w_ptr + cols, mask=cm, other=0.0)
    xhat = tl.where(m, (x - mean[:, None]) * rstd[:, None], 0.0)
    if GATED:
        b = tl.load(b_ptr + cols, mask=cm, other=0.0)
        z = tl.load(z_ptr + r64[:, None] * z_row + cols[None, :], mask=m, other=0.0).to(tl.float32)
        sig = 1.0 / (1.0 + tl.exp(-z))
        n = xhat * w[None, :] + b[None, :]
        dz = g * n * sig * (1.0 + z * (1.0 - sig))
        tl.store(dz_ptr + r64[:, None] * dz_row + cols[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m)
        g = g * z * sig
    g = tl.where(m, g, 0.0)
    gw = g * w[None, :]
    c1 = tl.sum(gw * xhat, axis=1) / N
    c2 = tl.sum(gw, axis=1) / N
    dx = (gw - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
    tl.store(dx_ptr + r64[:, None] * N + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m)
    pid = tl.program_id(0)
    tl.store(dw_ptr + pid * N + cols, tl.sum(g * xhat, axis=0), mask=cm)
    tl.store(db_ptr + pid * N + cols, tl.sum(g, axis=0), mask=cm)


def _tiles(n: int) -> tuple[int, int, int]:
    """(rows per program, padded columns, warps): about 4096 elements a program."""
    bn = triton.next_power_of_2(n)
    bm = max(1, min(128, 4096 // bn))
    return bm, bn, 4 if bm * bn >= 2048 else 2


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """t as (M, N) rows with unit column stride (a view when it can be), and the row stride."""
    t2 = t.reshape(-1, t.shape[-1])
    if t2.stride(-1) != 1 or (t2.shape[0] > 1 and t2.stride(0) < t2.shape[1]):
        t2 = t2.contiguous()
    return t2, t2.stride(0)


def _forward(x, weight, bias, gate, eps, out_dtype):
    n = x.shape[-1]
    x2, x_row = _rows(x)
    z2, z_row = _rows(gate) if gate is not None else (x2, x_row)
    m = x2.shape[0]
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype)
    mean = torch.empty(m, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    bm, bn, warps = _tiles(n)
    _ln_fwd_kernel[(triton.cdiv(m, bm),)](x2, z2, weight, bias, out, mean, rstd, m, n, x_row, z_row, eps,
                                          BM=bm, BN=bn, GATED=gate is not None, num_warps=warps)
    return out, mean, rstd


@torch.library.custom_op("spatial_restore::layer_norm_fwd", mutates_args=())
def layer_norm_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gate: torch.Tensor | None,
                   eps: float, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out (x's shape, out_dtype), mean, rstd (float32, one per row))."""
    return _forward(x, weight, bias, gate, eps, out_dtype)


@layer_norm_fwd.register_fake
def _(x, weight, bias, gate, eps, out_dtype):
    m = x.numel() // x.shape[-1]
    stats = x.new_empty(m, dtype=torch.float32)
    return x.new_empty(x.shape, dtype=out_dtype), stats, torch.empty_like(stats)


def _backward_impl(dy, x, weight, bias, gate, mean, rstd):
    n = x.shape[-1]
    x2, x_row = _rows(x)
    z2, z_row = _rows(gate) if gate is not None else (x2, x_row)
    m = x2.shape[0]
    dy2 = dy.reshape(m, n).contiguous()
    bm, bn, warps = _tiles(n)
    grid = triton.cdiv(m, bm)
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    dz = torch.empty(gate.shape, device=x.device, dtype=gate.dtype) if gate is not None else dx
    dw = torch.empty(grid, n, device=x.device, dtype=torch.float32)
    db = torch.empty_like(dw)
    _ln_bwd_kernel[(grid,)](dy2, x2, z2, weight, bias, mean, rstd, dx, dz, dw, db, m, n, x_row, z_row, n,
                            BM=bm, BN=bn, GATED=gate is not None, num_warps=warps)
    grads = [dx, dw.sum(0), db.sum(0)]
    return grads + [dz] if gate is not None else grads


@torch.library.custom_op("spatial_restore::layer_norm_bwd", mutates_args=())
def layer_norm_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   gate: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor) -> list[torch.Tensor]:
    """[dx, dweight, dbias] and, when gated, dgate."""
    return _backward_impl(dy, x, weight, bias, gate, mean, rstd)


@layer_norm_bwd.register_fake
def _(dy, x, weight, bias, gate, mean, rstd):
    grads = [x.new_empty(x.shape), weight.new_empty(weight.shape, dtype=torch.float32),
             bias.new_empty(bias.shape, dtype=torch.float32)]  # contiguous, as _backward_impl makes them
    return grads + [gate.new_empty(gate.shape)] if gate is not None else grads


def _setup_context(ctx, inputs, output):
    x, weight, bias, gate, eps, out_dtype = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, gate, mean, rstd)
    ctx.gated = gate is not None


def _grads(ctx, dout, backward):
    x, weight, bias, gate, mean, rstd = ctx.saved_tensors
    grads = backward(dout, x, weight, bias, gate if ctx.gated else None, mean, rstd)
    dgate = grads[3] if ctx.gated else None
    return grads[0], grads[1], grads[2], dgate, None, None


def _backward(ctx, dout, _dmean, _drstd):
    return _grads(ctx, dout, layer_norm_bwd)


layer_norm_fwd.register_autograd(_backward, setup_context=_setup_context)


class _EagerLayerNorm(torch.autograd.Function):
    """The same kernels without the custom-op dispatcher (its host time per call rivals the kernels'
    launches): eager runs take this, compiled graphs the op."""

    @staticmethod
    def forward(ctx, x, weight, bias, gate, eps, out_dtype):
        out, mean, rstd = _forward(x, weight, bias, gate, eps, out_dtype)
        _setup_context(ctx, (x, weight, bias, gate, eps, out_dtype), (out, mean, rstd))
        return out

    @staticmethod
    def backward(ctx, dout):
        return _grads(ctx, dout, _backward_impl)


def layer_norm_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                      gate: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``layer_norm_ref`` as a Triton kernel; weight and bias are used in float32."""
    f32 = torch.float32
    args = (x, weight.to(f32).contiguous(), bias.to(f32).contiguous(), gate, eps, out_dtype or x.dtype)
    if torch.compiler.is_compiling():
        return layer_norm_fwd(*args)[0]
    return _EagerLayerNorm.apply(*args)
