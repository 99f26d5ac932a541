"""Depthwise 3x3 convolution (zero padding, bias) with a fused epilogue, on channels-last memory, in Triton.

Each restoration block runs two ``x + cpe(x)`` steps, the SASF mixer's ``silu(dwconv(x))`` and the
GDFN's ``gelu(a) * v`` of a depthwise 3x3 conv; unfused, the bias (cuDNN adds it in a broadcast kernel of
its own), residual add, chunk, activation and gate product each read and write the whole activation
again. Here one kernel reads the (B, H, W, N) input once per tile of positions (its 1-pixel halo comes
from cache), convolves in float32 and writes only the epilogue's result, in the input's dtype:

  residual  y = x + dwconv(x)                                            N = C channels in and out
  silu      y = silu(dwconv(x))                                          N = C channels in and out
  gate      y = gelu(a) * v, (a, v) = the two channel halves of dwconv(x)   N = 2C in, C out

The input may be a channel slice of a wider channels-last tensor (the mixer's x half of in_proj's
output): positions are read with the input's own pixel stride, so no copy is made of it.

Backward keeps no activation but x: the same kernel, in a gradient epilogue, recomputes the conv and
writes the gradient at its output ((da, dv) = (g v gelu'(a), g gelu(a)) for the gate, g silu'(a) for
the SiLU; the residual needs none); then one kernel gives
dx as the transposed conv of that gradient (the correlation with the flipped taps; plus g itself, the
residual's identity path) and per-program partial sums for dweight and dbias, finished by torch (no
atomics). ``dwconv_ref`` is the reference the kernels are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .triton_offsets import needs_int64, wide

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# epilogue codes (compile-time); *_GRAD are the activations' backward up to the conv
RESIDUAL, GATE, GATE_GRAD, SILU, SILU_GRAD = (tl.constexpr(i) for i in range(5))
EPILOGUES = {"residual": RESIDUAL.value, "gate": GATE.value, "silu": SILU.value}
GRAD_EPILOGUE = {GATE.value: GATE_GRAD.value, SILU.value: SILU_GRAD.value}


def dwconv_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epilogue: str) -> torch.Tensor:
    """The depthwise conv of channels-last x (B, H, W, N) and its epilogue in float32 (float64 stays);
    returned in x's dtype."""
    ct = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(ct)
    y = F.conv2d(xc.permute(0, 3, 1, 2), weight.to(ct), bias.to(ct), padding=1, groups=x.shape[-1])
    y = y.permute(0, 2, 3, 1)
    if epilogue == "residual":
        return (xc + y).to(x.dtype)
    if epilogue == "silu":
        return F.silu(y).to(x.dtype)
    a, v = y.chunk(2, dim=-1)
    return (F.gelu(a) * v).to(x.dtype)


@triton.jit
def _tile(th, C, H, W, BH: tl.constexpr, BW: tl.constexpr, BC: tl.constexpr):
    """Row tile th x this program's column tile: BH x BW positions (flattened, row-major), and BC of C
    channels; the store mask, and whether the tile and its 1-pixel halo lie inside the image with all
    BC channels (then no load or store needs a mask)."""
    p = tl.arange(0, BH * BW)
    h0 = th * BH
    w0 = (tl.program_id(0) % tl.cdiv(W, BW)) * BW
    hh = h0 + p // BW
    ww = w0 + p % BW
    c0 = tl.program_id(2) * BC
    c = c0 + tl.arange(0, BC)
    cm = c < C
    inside = (h0 >= 1) & (h0 + BH < H) & (w0 >= 1) & (w0 + BW < W) & (c0 + BC <= C)
    return hh, ww, c, cm, ((hh < H) & (ww < W))[:, None] & cm[None, :], inside


@triton.jit
def _offsets(b, hh, ww, c, H, W, S, I64: tl.constexpr):
    """Element offsets of positions (hh, ww) x channels c in a (B, H, W, *) tensor whose positions lie S
    elements apart (S = its channel count when contiguous); 64-bit where the call needs it (I64)."""
    return (wide(b * H + hh, I64) * W + ww)[:, None] * S + c[None, :]


@triton.jit
def _load(ptr, b, hh, ww, c, cm, H, W, S, MASK: tl.constexpr, I64: tl.constexpr):
    """ptr[b, hh, ww, c] in float32, zero outside the image (the conv's zero padding); MASK False: the
    caller knows every position and channel is inside."""
    if MASK:
        inside = (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        x = tl.load(ptr + _offsets(b, hh, ww, c, H, W, S, I64), mask=inside[:, None] & cm[None, :], other=0.0)
    else:
        x = tl.load(ptr + _offsets(b, hh, ww, c, H, W, S, I64))
    return x.to(tl.float32)


@triton.jit
def _store(ptr, offsets, y, m, MASK: tl.constexpr):
    """y into ptr + offsets in ptr's dtype, under the store mask m unless MASK is False (tile inside)."""
    if MASK:
        tl.store(ptr + offsets, y.to(ptr.dtype.element_ty), mask=m)
    else:
        tl.store(ptr + offsets, y.to(ptr.dtype.element_ty))


@triton.jit
def _conv(ptr, w_ptr, b, hh, ww, c, cm, H, W, S, N, BP: tl.constexpr, BC: tl.constexpr, FLIP: tl.constexpr,
          MASK: tl.constexpr, I64: tl.constexpr):
    """sum over the taps k = 3 ky + kx of w[k, c] * ptr[b, hh + ky - 1, ww + kx - 1, c] (w taps-major,
    (9, N): a tap's weights for the tile's channels are one vector); FLIP uses w[8 - k, c], which makes
    it the transposed conv (the input gradient of the plain one)."""
    acc = tl.zeros((BP, BC), dtype=tl.float32)
    for k in tl.static_range(9):
        tap = 8 - k if FLIP else k
        if MASK:
            wk = tl.load(w_ptr + tap * N + c, mask=cm, other=0.0)
        else:
            wk = tl.load(w_ptr + tap * N + c)
        acc += wk[None, :] * _load(ptr, b, hh + (k // 3 - 1), ww + (k % 3 - 1), c, cm, H, W, S, MASK, I64)
    return acc


@triton.jit
def _dwconv_tile(x_ptr, w_ptr, bias_ptr, g_ptr, y_ptr, b, hh, ww, c, cm, m, H, W, C, N, SX, BP: tl.constexpr,
                 BC: tl.constexpr, EPILOGUE: tl.constexpr, MASK: tl.constexpr, I64: tl.constexpr):
    """The conv and the epilogue of one tile of _dwconv_kernel (MASK as in _load)."""
    a = _conv(x_ptr, w_ptr, b, hh, ww, c, cm, H, W, SX, N, BP, BC, False, MASK, I64)
    a += tl.load(bias_ptr + c, mask=cm, other=0.0)[None, :]
    out = _offsets(b, hh, ww, c, H, W, C, I64)
    if EPILOGUE == RESIDUAL:
        _store(y_ptr, out, a + _load(x_ptr, b, hh, ww, c, cm, H, W, SX, MASK, I64), m, MASK)
    elif EPILOGUE >= SILU:
        s = tl.sigmoid(a)
        if EPILOGUE == SILU:
            _store(y_ptr, out, a * s, m, MASK)
        else:
            g = _load(g_ptr, b, hh, ww, c, cm, H, W, C, MASK, I64)
            _store(y_ptr, out, g * s * (1.0 + a * (1.0 - s)), m, MASK)
    else:
        v = _conv(x_ptr, w_ptr, b, hh, ww, c + C, cm, H, W, SX, N, BP, BC, False, MASK, I64)
        v += tl.load(bias_ptr + C + c, mask=cm, other=0.0)[None, :]
        cdf = 0.5 + 0.5 * tl.erf(a * 0.7071067811865476)  # exact GELU: a * Phi(a)
        if EPILOGUE == GATE:
            _store(y_ptr, out, a * cdf * v, m, MASK)
        else:
            g = _load(g_ptr, b, hh, ww, c, cm, H, W, C, MASK, I64)
            pdf = tl.exp(-0.5 * a * a) * 0.3989422804014327
            dst = _offsets(b, hh, ww, c, H, W, N, I64)
            _store(y_ptr, dst, g * v * (cdf + a * pdf), m, MASK)
            _store(y_ptr, dst + C, g * a * cdf, m, MASK)


@triton.jit
def _dwconv_kernel(x_ptr, w_ptr, bias_ptr, g_ptr, y_ptr, H, W, C, N, SX, BH: tl.constexpr, BW: tl.constexpr,
                   BC: tl.constexpr, EPILOGUE: tl.constexpr, I64: tl.constexpr):
    """One tile of positions x C output channels of image program_id(1): the conv of x (N = C channels,
    or 2C for the gate; positions SX elements apart) and the epilogue; the *_GRAD epilogues write the
    gradient at the conv's output (N channels, contiguous) from g = dL/dy instead. Tiles inside the
    image take the same code without masks."""
    b = tl.program_id(1)
    hh, ww, c, cm, m, inside = _tile(tl.program_id(0) // tl.cdiv(W, BW), C, H, W, BH, BW, BC)
    if inside:
        _dwconv_tile(x_ptr, w_ptr, bias_ptr, g_ptr, y_ptr, b, hh, ww, c, cm, m, H, W, C, N, SX, BH * BW, BC,
                     EPILOGUE, False, I64)
    else:
        _dwconv_tile(x_ptr, w_ptr, bias_ptr, g_ptr, y_ptr, b, hh, ww, c, cm, m, H, W, C, N, SX, BH * BW, BC,
                     EPILOGUE, True, I64)


@triton.jit
def _bwd_tile(gc_ptr, x_ptr, w_ptr, dx_ptr, b, hh, ww, c, cm, m, H, W, N, SX, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9,
              BP: tl.constexpr, BC: tl.constexpr, IDENTITY: tl.constexpr, MASK: tl.constexpr, I64: tl.constexpr):
    """One row tile of _dwconv_bwd_kernel: stores dx, returns the ten sums with this tile's products added."""
    dx = _conv(gc_ptr, w_ptr, b, hh, ww, c, cm, H, W, N, N, BP, BC, True, MASK, I64)
    g = _load(gc_ptr, b, hh, ww, c, cm, H, W, N, MASK, I64)  # zero off the image: the sums below need no mask
    if IDENTITY:
        dx += g
    _store(dx_ptr, _offsets(b, hh, ww, c, H, W, N, I64), dx, m, MASK)
    s0 += g * _load(x_ptr, b, hh - 1, ww - 1, c, cm, H, W, SX, MASK, I64)
    s1 += g * _load(x_ptr, b, hh - 1, ww, c, cm, H, W, SX, MASK, I64)
    s2 += g * _load(x_ptr, b, hh - 1, ww + 1, c, cm, H, W, SX, MASK, I64)
    s3 += g * _load(x_ptr, b, hh, ww - 1, c, cm, H, W, SX, MASK, I64)
    s4 += g * _load(x_ptr, b, hh, ww, c, cm, H, W, SX, MASK, I64)
    s5 += g * _load(x_ptr, b, hh, ww + 1, c, cm, H, W, SX, MASK, I64)
    s6 += g * _load(x_ptr, b, hh + 1, ww - 1, c, cm, H, W, SX, MASK, I64)
    s7 += g * _load(x_ptr, b, hh + 1, ww, c, cm, H, W, SX, MASK, I64)
    s8 += g * _load(x_ptr, b, hh + 1, ww + 1, c, cm, H, W, SX, MASK, I64)
    return s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 + g


@triton.jit
def _dwconv_bwd_kernel(gc_ptr, x_ptr, w_ptr, dx_ptr, part_ptr, H, W, N, SX, BH: tl.constexpr, BW: tl.constexpr,
                       BC: tl.constexpr, ROWS: tl.constexpr, IDENTITY: tl.constexpr, I64: tl.constexpr):
    """From gc = dL/d(conv output), over ROWS row tiles: dx = transposed conv of gc (+ gc when IDENTITY,
    the residual's path; gc and dx contiguous, x's positions SX elements apart); and the program's sums
    of gc * (x shifted by tap k), rows k < 9, and of gc, row 9 (partial dweight, dbias: ROWS tiles per
    program keep that buffer small). The ten sums are kept tile-shaped over the row tiles and reduced
    over positions once at the end: a reduction across warps per tap and row tile cost more than the
    products themselves. Row tiles inside the image take the same code without masks."""
    b = tl.program_id(1)
    zero = tl.zeros((BH * BW, BC), dtype=tl.float32)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = zero, zero, zero, zero, zero, zero, zero, zero, zero, zero
    for r in range(ROWS):
        hh, ww, c, cm, m, inside = _tile((tl.program_id(0) // tl.cdiv(W, BW)) * ROWS + r, N, H, W, BH, BW, BC)
        if inside:
            s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = _bwd_tile(
                gc_ptr, x_ptr, w_ptr, dx_ptr, b, hh, ww, c, cm, m, H, W, N, SX, s0, s1, s2, s3, s4, s5, s6, s7, s8,
                s9, BH * BW, BC, IDENTITY, False, I64)
        else:
            s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = _bwd_tile(
                gc_ptr, x_ptr, w_ptr, dx_ptr, b, hh, ww, c, cm, m, H, W, N, SX, s0, s1, s2, s3, s4, s5, s6, s7, s8,
                s9, BH * BW, BC, IDENTITY, True, I64)
    c = tl.program_id(2) * BC + tl.arange(0, BC)
    cm = c < N
    part = part_ptr + wide(b * tl.num_programs(0) + tl.program_id(0), I64) * (10 * N) + c
    tl.store(part, tl.sum(s0, axis=0), mask=cm)
    tl.store(part + N, tl.sum(s1, axis=0), mask=cm)
    tl.store(part + 2 * N, tl.sum(s2, axis=0), mask=cm)
    tl.store(part + 3 * N, tl.sum(s3, axis=0), mask=cm)
    tl.store(part + 4 * N, tl.sum(s4, axis=0), mask=cm)
    tl.store(part + 5 * N, tl.sum(s5, axis=0), mask=cm)
    tl.store(part + 6 * N, tl.sum(s6, axis=0), mask=cm)
    tl.store(part + 7 * N, tl.sum(s7, axis=0), mask=cm)
    tl.store(part + 8 * N, tl.sum(s8, axis=0), mask=cm)
    tl.store(part + 9 * N, tl.sum(s9, axis=0), mask=cm)


def _channel_tile(c: int) -> int:
    """Channels of a tile: up to 64, a power of two that divides c where one of at least 16 does (48 -> 16,
    96 -> 32: no tile is ragged, so no lanes idle and tiles inside the image skip every mask), else
    c rounded up to a power of two."""
    divides = c & -c
    return min(64, divides if divides >= 16 else triton.next_power_of_2(c))


def _tiles(c: int, h: int, w: int) -> list[int]:
    """[rows, columns, channels] of a program's tile (up to 32 columns x 64 channels, about 4096 elements),
    and the backward's row tiles per program: up to 8 where an image has many (a program then sums its
    share of dweight over 8 tiles), one on small images (which then still spread over the GPU)."""
    bc = _channel_tile(c)
    bw = min(triton.next_power_of_2(w), 32)
    bh = min(triton.next_power_of_2(h), max(1, 4096 // (bc * bw)))
    return [bh, bw, bc, max(1, min(8, triton.cdiv(h, bh) // 16))]


def _out_channels(n: int, epilogue: int) -> int:
    return n // 2 if epilogue == GATE.value else n


def _pixel_stride(x: torch.Tensor) -> int:
    """How many elements apart x's positions lie: its channel count when contiguous, the full width when
    x is a channel slice of a contiguous (B, H, W, *) tensor (callers make anything else contiguous)."""
    b, h, w, n = x.shape
    if x.is_contiguous():
        return n
    s = x.stride(2)
    dense_rows = x.stride(3) == 1 and s >= n and x.stride(1) == w * s and x.stride(0) == h * w * s
    return s if dense_rows else 0


def _tiles_for(tiles, c, x):
    """The caller's tiles, or (empty) the default for C = c and x's image size (chosen here, inside the
    op, so that compiled graphs do not specialise on the image size)."""
    return tiles or _tiles(c, x.shape[1], x.shape[2])


def _warps(tile: int, convs: int = 1) -> int:
    """Warps per program: 2 for small tiles, 4, or 8 for tiles of 4096 elements with two convs (the gate's
    a and v), which at 4 warps need more than the 255 registers a thread has and spill."""
    return 8 if convs == 2 and tile >= 4096 else 4 if tile >= 2048 else 2


def _backward_tiles(bh: int, bw: int, bc: int, rows: int) -> tuple[int, int, int, int, int]:
    """The backward kernel's tile, row tiles per program and warps. It holds ten tile-sized sums (the taps'
    dweight and dbias) over its row tiles and reduces them once, so its tile has half the forward's rows
    (twice the row tiles: the same image rows per program) and up to 8 warps, where it needs no more
    registers than a thread has."""
    half = max(1, bh // 2)
    tile = half * bw * bc
    return half, bw, bc, rows * (bh // half), 8 if tile >= 2048 else 4 if tile >= 1024 else 2


def _int64(x: torch.Tensor, n: int) -> bool:
    """Whether x (positions _pixel_stride(x) apart) or a (B, H, W, n) tensor needs 64-bit offsets."""
    b, h, w, _ = x.shape
    return needs_int64(b * h * w * max(_pixel_stride(x), n))


def _launch(x, weight, bias, g, y, epilogue, c, tiles):
    """_dwconv_kernel over x (B, H, W, N) for C = c output channels."""
    b, h, w, n = x.shape
    bh, bw, bc, _ = _tiles_for(tiles, c, x)
    grid = (triton.cdiv(h, bh) * triton.cdiv(w, bw), b, triton.cdiv(c, bc))
    convs = 2 if epilogue in (GATE.value, GATE_GRAD.value) else 1
    _dwconv_kernel[grid](x, weight, bias, g, y, h, w, c, n, _pixel_stride(x), BH=bh, BW=bw, BC=bc,
                         EPILOGUE=epilogue, I64=_int64(x, n), num_warps=_warps(bh * bw * bc, convs))


def _forward(x, weight, bias, epilogue, tiles):
    c = _out_channels(x.shape[-1], epilogue)
    y = torch.empty((*x.shape[:-1], c), device=x.device, dtype=x.dtype)
    _launch(x, weight, bias, x, y, epilogue, c, tiles)
    return y


@torch.library.custom_op("spatial_restore::dwconv_fwd", mutates_args=())
def dwconv_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epilogue: int,
               tiles: list[int]) -> torch.Tensor:
    """y (B, H, W, C) contiguous, in x's dtype. x (B, H, W, N), contiguous or a channel slice of a
    contiguous tensor; weight (9, N) taps-major (``taps_major``), bias (N,) float32;
    epilogue one of ``EPILOGUES``' codes; tiles [rows, columns, channels] of a program's tile (powers of
    two) and the backward's row tiles per program, or [] for the default of x's shape."""
    return _forward(x, weight, bias, epilogue, tiles)


@dwconv_fwd.register_fake
def _(x, weight, bias, epilogue, tiles):
    return x.new_empty((*x.shape[:-1], _out_channels(x.shape[-1], epilogue)))


def _backward_impl(dy, x, weight, bias, epilogue, tiles):
    b, h, w, n = x.shape
    c = _out_channels(n, epilogue)
    if epilogue in GRAD_EPILOGUE:  # the gradient at the conv's output, in x's dtype, as autograd of the
        gc = x.new_empty(x.shape)  # unfused ops would keep it
        _launch(x, weight, bias, dy, gc, GRAD_EPILOGUE[epilogue], c, tiles)
    else:
        gc = dy
    bh, bw, bc, rows, warps = _backward_tiles(*_tiles_for(tiles, c, x))
    n_prog = triton.cdiv(triton.cdiv(h, bh), rows) * triton.cdiv(w, bw)
    dx = x.new_empty(x.shape)
    part = torch.empty(b * n_prog, 10, n, device=x.device, dtype=torch.float32)
    _dwconv_bwd_kernel[(n_prog, b, triton.cdiv(n, bc))](gc, x, weight, dx, part, h, w, n, _pixel_stride(x),
                                                        BH=bh, BW=bw, BC=bc, ROWS=rows,
                                                        IDENTITY=epilogue == RESIDUAL.value, I64=_int64(x, n),
                                                        num_warps=warps)
    red = part.sum(0)
    return [dx, red[:9].clone(), red[9].clone()]


@torch.library.custom_op("spatial_restore::dwconv_bwd", mutates_args=())
def dwconv_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epilogue: int,
               tiles: list[int]) -> list[torch.Tensor]:
    """[dx (x's dtype), dweight, dbias (float32)] of dwconv_fwd; dy contiguous (B, H, W, C)."""
    return _backward_impl(dy, x, weight, bias, epilogue, tiles)


@dwconv_bwd.register_fake
def _(dy, x, weight, bias, epilogue, tiles):
    return [x.new_empty(x.shape), weight.new_empty(weight.shape, dtype=torch.float32),
            bias.new_empty(bias.shape, dtype=torch.float32)]


def _setup_context(ctx, inputs, output):
    x, weight, bias, epilogue, tiles = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.args = (epilogue, tiles)


def _grads(ctx, dy, backward):
    dx, dweight, dbias = backward(dy.contiguous(), *ctx.saved_tensors, *ctx.args)
    return dx, dweight, dbias, None, None


def _backward(ctx, dy):
    return _grads(ctx, dy, dwconv_bwd)


dwconv_fwd.register_autograd(_backward, setup_context=_setup_context)


class _EagerDWConv(torch.autograd.Function):
    """The same kernels without the custom-op dispatcher (its host time per call rivals the kernels'
    launches): eager runs take this, compiled graphs the op."""

    @staticmethod
    def forward(ctx, x, weight, bias, epilogue, tiles):
        y = _forward(x, weight, bias, epilogue, tiles)
        _setup_context(ctx, (x, weight, bias, epilogue, tiles), y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return _grads(ctx, dy, _backward_impl)


def taps_major(weight: torch.Tensor) -> torch.Tensor:
    """A depthwise conv's (N, 1, 3, 3) weight as the kernels read it: (9, N) float32, tap k = 3 ky + kx first."""
    return weight.to(torch.float32).reshape(weight.shape[0], 9).t().contiguous()


def dwconv_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epilogue: str,
                  tiles: Sequence[int] | None = None) -> torch.Tensor:
    """``dwconv_ref`` as one Triton kernel (x read in place when contiguous or a channel slice of a
    contiguous tensor, else made contiguous; weight and bias used in float32).
    ``tiles`` overrides [rows, columns, channels] of a program's tile and the backward's row tiles per
    program (tests cross tiles with it); by default they follow the shape."""
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"triton dwconv supports float32/float16/bfloat16 x, got {x.dtype}")
    if epilogue not in EPILOGUES:
        raise ValueError(f"epilogue must be one of {sorted(EPILOGUES)}, got {epilogue!r}")
    n = x.shape[-1]
    if x.dim() != 4 or tuple(weight.shape) != (n, 1, 3, 3) or tuple(bias.shape) != (n,):
        raise ValueError(f"need x (B, H, W, N), weight (N, 1, 3, 3), bias (N,): got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}")
    if epilogue == "gate" and n % 2:
        raise ValueError(f"the gate splits the conv's channels in halves: N = {n} is odd")
    tiles = list(tiles or [])
    if tiles and (len(tiles) != 4 or any(t < 1 for t in tiles) or any(t & (t - 1) for t in tiles[:3])):
        raise ValueError(f"tiles must be [rows, columns, channels] (powers of two) and the backward's row "
                         f"tiles per program, got {tiles}")
    f32 = torch.float32
    args = (x if _pixel_stride(x) else x.contiguous(), taps_major(weight), bias.to(f32).contiguous(),
            EPILOGUES[epilogue], tiles)
    if torch.compiler.is_compiling():
        return dwconv_fwd(*args)
    return _EagerDWConv.apply(*args)
