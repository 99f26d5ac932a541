"""Triton forward and backward kernels of the SASF core op (scan + structure-aware fusion + readout).

Split (docs/kernels.md counts the HBM bytes of each):
  forward   scan   u, delta, B -> h (fp32 states)       [chunked over L when (b, d) is too small]
            fuse   h, u, C -> y = (sum_r a_r K_r * h) C + D u   (25-tap clamped stencil + readout)
  backward  scan   recompute h (cheaper than keeping it alive between forward and backward)
            border per plane: the extra adjoint terms of the clamped borders (O(H + W) numbers)
            fuse   dy, C, h -> dh (adjoint stencil), dC, the 25 per-channel tap sums for dK / dalpha
            rscan  reverse scan of dh -> du, ddelta, dB, dA, ddt_bias, dDskip
The state is always fp32; inputs may be fp32, fp16 or bf16 and are upcast on load. Per-channel and
per-position reductions are written as partial sums per program and finished by torch (no atomics:
deterministic and free of contention).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .interface import SCAN_CODES, SASFInputs
from .triton_offsets import needs_int64, wide

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class TritonConfig:
    """Tile sizes. Powers of two; tests shrink them so tiny shapes still cross blocks and chunks."""

    scan_rows: int = 4  # channels per scan tile
    scan_block: int = 256  # sequence positions per scan tile (one associative scan)
    chunk_len: int | None = None  # positions per parallel scan chunk; None: enough chunks to fill the GPU
    fuse_rows: int = 4  # channels per stencil tile
    fuse_block: int = 256  # positions per stencil tile: fuse_block / fuse_width image rows of fuse_width columns
    num_warps: int = 4  # at most; small tiles get fewer
    fuse_width: int = 64  # columns of a stencil tile (at most fuse_block and the image's width)

    def __post_init__(self):
        for name in ("scan_rows", "scan_block", "fuse_rows", "fuse_block", "fuse_width"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"TritonConfig.{name} must be a power of two, got {value}")
        if self.chunk_len is not None and self.chunk_len < 1:
            raise ValueError(f"TritonConfig.chunk_len must be positive, got {self.chunk_len}")


    def as_list(self) -> list[int]:
        """The custom op's ``config`` argument (chunk_len None as 0)."""
        return [self.scan_rows, self.scan_block, self.chunk_len or 0, self.fuse_rows, self.fuse_block, self.num_warps,
                self.fuse_width]


DEFAULT_CONFIG = TritonConfig()  # channels-first (b, d, L): positions are contiguous
# channels-last (b, L, d): channels are contiguous, so tiles take enough of them for whole 32-byte sectors
CHANNELS_LAST_CONFIG = TritonConfig(scan_rows=32, scan_block=64, fuse_rows=32, fuse_block=64, fuse_width=16)
REACH = tl.constexpr(5)  # the largest dilation: how far a stencil tap reaches
# The backward scan's registers per thread: what it took before the series softplus, which ptxas would
# otherwise let grow to 255 (2 programs of 4 warps per SM instead of 3); capped, it spills 2 values
# outside its loop (scripts/kernel_sass.py).
BWD_SCAN_REGISTERS = 168


@triton.jit
def _softplus_parts(v):
    """(softplus(v), y = exp(-|v|)), softplus = max(v, 0) + log1p(y) with log1p(y) = 2 atanh(s),
    s = y / (2 + y) <= 1/3, as its odd series to s^13 (truncation below 2e-8 relative): a few ulp, and
    relative for tiny y, without the log, whose range reduction and special cases cost twice as many
    instructions. Above 20 the series is below half an ulp of v, so softplus(v) = v exactly, as torch's
    threshold 20 gives."""
    y = tl.exp(-tl.abs(v))
    s = tl.fdiv(y, 2.0 + y, ieee_rounding=False)
    z = s * s
    series = 2.0 / 11.0 + z * (2.0 / 13.0)
    series = 2.0 / 9.0 + z * series
    series = 2.0 / 7.0 + z * series
    series = 2.0 / 5.0 + z * series
    series = 2.0 / 3.0 + z * series
    series = 2.0 + z * series
    return tl.maximum(v, 0.0) + s * series, y


@triton.jit
def _softplus(v):
    """softplus with the kernels' threshold 20 (see _softplus_parts)."""
    sp, _ = _softplus_parts(v)
    return sp


@triton.jit
def _pos(t, L, H, W, SCAN: tl.constexpr):
    """Image position (row-major index) of scan step t: SCAN 0 row, 1 row reversed, 2 column, 3 column reversed."""
    if SCAN % 2 == 1:
        t = L - 1 - t
    if SCAN >= 2:
        t = (t % H) * W + t // H
    return t


@triton.jit
def _rows(b, d, D, L, CL: tl.constexpr, I64: tl.constexpr):
    """Per-channel part of an activation's offset: channels-last (b, L, d) or channels-first (b, d, L)."""
    if CL:
        return wide(b, I64) * L * D + d
    else:
        return wide(b * D + d, I64) * L


@triton.jit
def _cols(p, D, CL: tl.constexpr, I64: tl.constexpr):
    """Per-position part of an activation's offset (see _rows)."""
    if CL:
        return wide(p, I64) * D
    else:
        return wide(p, I64)


@triton.jit
def _affine(a1, x1, a2, x2):
    """Compose h -> a1 h + x1, then h -> a2 h + x2 (the scan's associative operator)."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _last(x, BL: tl.constexpr):
    """Last column of a (rows, BL) tile: the state leaving the tile."""
    cols = tl.arange(0, BL)
    return tl.sum(tl.where(cols[None, :] == BL - 1, x, 0.0), axis=1)


@triton.jit
def _scan_start(A_ptr, bias_ptr, carry_ptr, pid_d, chunk, b, D, L, n_chunks, BD: tl.constexpr,
                HAS_CARRY: tl.constexpr, CL: tl.constexpr, I64: tl.constexpr):
    """A scan program's channels (and mask), their A and dt_bias, plane and activation offsets, and the
    state (the chunk's carry, or 0) and decay product (1) it starts from."""
    d = pid_d * BD + tl.arange(0, BD)
    dmask = d < D
    A = tl.load(A_ptr + d, mask=dmask, other=0.0)
    bias = tl.load(bias_ptr + d, mask=dmask, other=0.0)
    row = wide(b * D + d, I64)
    if HAS_CARRY:
        state = tl.load(carry_ptr + row * n_chunks + chunk, mask=dmask, other=0.0)
    else:
        state = tl.zeros([BD], dtype=tl.float32)
    return d, dmask, A, bias, row, _rows(b, d, D, L, CL, I64), state, tl.full([BD], 1.0, dtype=tl.float32)


@triton.jit
def _fwd_scan_kernel(u_ptr, dl_ptr, B_ptr, A_ptr, bias_ptr, h_ptr, carry_ptr, summ_ptr,
                     D, L, H, W, n_chunks, blocks_per_chunk,
                     BD: tl.constexpr, BL: tl.constexpr, SUMMARY: tl.constexpr, HAS_CARRY: tl.constexpr,
                     CL: tl.constexpr, SCAN: tl.constexpr, I64: tl.constexpr):
    """h_t = exp(dt A) h_{t-1} + dt B u over one chunk, one tile of BL positions at a time.

    SUMMARY: write only (decay product, end state from h = 0) of the chunk, for the carry pass.
    Otherwise start from the chunk's carried-in state and write h.
    """
    pid_d, chunk, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d, dmask, A, bias, row, rows, state, decay = _scan_start(A_ptr, bias_ptr, carry_ptr, pid_d, chunk, b, D, L,
                                                             n_chunks, BD, HAS_CARRY, CL, I64)
    for i in range(blocks_per_chunk):
        t = (chunk * blocks_per_chunk + i) * BL + tl.arange(0, BL)
        tmask = t < L
        p = _pos(t, L, H, W, SCAN)
        m = dmask[:, None] & tmask[None, :]
        offs = rows[:, None] + _cols(p, D, CL, I64)[None, :]
        u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
        v = tl.load(dl_ptr + offs, mask=m, other=0.0).to(tl.float32) + bias[:, None]
        Bt = tl.load(B_ptr + wide(b, I64) * L + p, mask=tmask, other=0.0).to(tl.float32)
        dt = _softplus(v)
        a = tl.where(m, tl.exp(dt * A[:, None]), 1.0)  # padding keeps the state unchanged
        ca, cx = tl.associative_scan((a, dt * Bt[None, :] * u), 1, _affine)
        h = cx + ca * state[:, None]
        state = _last(h, BL)
        if SUMMARY:
            decay = decay * _last(ca, BL)
        else:
            tl.store(h_ptr + offs, h, mask=m)
    if SUMMARY:
        base = (row * n_chunks + chunk) * 2
        tl.store(summ_ptr + base, decay, mask=dmask)
        tl.store(summ_ptr + base + 1, state, mask=dmask)


@triton.jit
def _carry_kernel(summ_ptr, carry_ptr, n_rows, n_chunks, BR: tl.constexpr, REVERSE: tl.constexpr):
    """Sequential pass over chunk summaries: the state entering each chunk (from the right if REVERSE)."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    rmask = r < n_rows
    r64 = r.to(tl.int64)
    s = tl.zeros([BR], dtype=tl.float32)
    for i in range(n_chunks):
        c = n_chunks - 1 - i if REVERSE else i
        idx = r64 * n_chunks + c
        tl.store(carry_ptr + idx, s, mask=rmask)
        dec = tl.load(summ_ptr + idx * 2, mask=rmask, other=1.0)
        end = tl.load(summ_ptr + idx * 2 + 1, mask=rmask, other=0.0)
        s = dec * s + end


@triton.jit
def _positions(pid_t, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """The image positions of stencil tile pid_t, a block of TH rows x TW columns (row-major over the image):
    row-major index, mask, row, column, and whether every tap of every position stays inside the image."""
    n_tc = tl.cdiv(W, TW)
    r0 = (pid_t // n_tc) * TH
    c0 = (pid_t % n_tc) * TW
    e = tl.arange(0, TH * TW)
    r = r0 + e // TW
    c = c0 + e % TW
    inside = (r0 >= REACH) & (r0 + TH + REACH <= H) & (c0 >= REACH) & (c0 + TW + REACH <= W)
    return r * W + c, (r < H) & (c < W), r, c, inside


@triton.jit
def _tile(pid_d, pid_t, b, D, H, W, BDF: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, CL: tl.constexpr,
          I64: tl.constexpr):
    """A (channels x positions) stencil tile: position math and C are per position, shared by BDF channels.
    ``inside``: no position needs a clamped index or a mask (a full channel tile away from the border)."""
    d = pid_d * BDF + tl.arange(0, BDF)
    dm = d < D
    l, m, r, c, inside = _positions(pid_t, H, W, TH, TW)
    return d, dm, l, m, r, c, _rows(b, d, D, H * W, CL, I64), dm[:, None] & m[None, :], inside & (pid_d * BDF + BDF <= D)


@triton.jit
def _tap_weights(Wt_ptr, tap, d, dm, D, MASK: tl.constexpr):
    """One tap's stencil weights for the tile's channels (masked only where the channel tile may be ragged)."""
    if MASK:
        return tl.load(Wt_ptr + tap * D + d, mask=dm, other=0.0)
    else:
        return tl.load(Wt_ptr + tap * D + d)


@triton.jit
def _stencil(h_ptr, Wt_ptr, rows, l, r, c, d, dm, m2, D, H, W, BDF: tl.constexpr, BLOCK: tl.constexpr,
             CLAMP: tl.constexpr, CL: tl.constexpr, I64: tl.constexpr):
    """sum_r alpha_r dwconv3x3_dil_r(h, K_r) on a tile. With CLAMP the taps' indices are clamped to the
    image (replicate borders) and loads masked; without, every tap is the tile's offsets plus one scalar.

    A runtime loop over the three dilations keeps one dilation's nine loads in flight (the backward,
    with more registers per tap, keeps three); the centre tap is read once per dilation (L1 hits)."""
    hp = tl.zeros([BDF, BLOCK], dtype=tl.float32)
    centre = h_ptr + rows[:, None] + _cols(l, D, CL, I64)[None, :]
    for k in range(3):  # dilations: the nine taps of one in flight
        dil = 2 * k + 1
        for ki in tl.static_range(3):
            oi = (ki - 1) * dil
            if CLAMP:
                rr = tl.minimum(tl.maximum(r + oi, 0), H - 1) * W
            for kj in tl.static_range(3):
                oj = (kj - 1) * dil
                w = _tap_weights(Wt_ptr, k * 9 + ki * 3 + kj, d, dm, D, CLAMP)
                if CLAMP:
                    off = rr + tl.minimum(tl.maximum(c + oj, 0), W - 1)
                    hv = tl.load(h_ptr + rows[:, None] + _cols(off, D, CL, I64)[None, :], mask=m2, other=0.0)
                else:
                    hv = tl.load(centre + _cols(oi * W + oj, D, CL, I64))
                hp += w[:, None] * hv
    return hp


@triton.jit
def _fwd_fuse_kernel(h_ptr, u_ptr, C_ptr, Ds_ptr, Wt_ptr, y_ptr, D, H, W,
                     BDF: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, CL: tl.constexpr, I64: tl.constexpr):
    """y = (sum_r alpha_r dwconv3x3_dil_r(h, K_r)) * C + Ds * u with clamped (replicate) borders, on tiles
    of BDF channels x (TH x TW) positions; tiles away from the border take the unclamped stencil."""
    pid_t, pid_d, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    L = H * W
    d, dm, l, m, r, c, rows, m2, inside = _tile(pid_d, pid_t, b, D, H, W, BDF, TH, TW, CL, I64)
    if inside:
        hp = _stencil(h_ptr, Wt_ptr, rows, l, r, c, d, dm, m2, D, H, W, BDF, TH * TW, False, CL, I64)
    else:
        hp = _stencil(h_ptr, Wt_ptr, rows, l, r, c, d, dm, m2, D, H, W, BDF, TH * TW, True, CL, I64)
    offs = rows[:, None] + _cols(l, D, CL, I64)[None, :]
    u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
    C = tl.load(C_ptr + wide(b, I64) * L + l, mask=m, other=0.0).to(tl.float32)
    Ds = tl.load(Ds_ptr + d, mask=dm, other=0.0)
    tl.store(y_ptr + offs, hp * C[None, :] + Ds[:, None] * u, mask=m2)


@triton.jit
def _g(dy_ptr, C_ptr, base, cbase, i, j, dm, pm, W, D, CL: tl.constexpr, I64: tl.constexpr):
    """g = dy * C, the gradient reaching the fused states, on a (channels x positions) tile: channel
    offsets ``base`` (mask dm), positions (i, j) (mask pm)."""
    off = i * W + j
    dy = tl.load(dy_ptr + base[:, None] + _cols(off, D, CL, I64)[None, :], mask=dm[:, None] & pm[None, :], other=0.0)
    return dy * tl.load(C_ptr + cbase + off, mask=pm, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _corner(dy_ptr, C_ptr, Wt_ptr, base, cbase, d, dm, D, H, W, BOTTOM: tl.constexpr, RIGHT: tl.constexpr,
            CL: tl.constexpr, I64: tl.constexpr):
    """Per channel: the clamped corner tap's adjoint, the sum of g over the dil x dil positions in the
    corner weighted by that tap, summed over the dilations."""
    e = tl.arange(0, 64)
    r, c = e // 8, e % 8
    g = _g(dy_ptr, C_ptr, base, cbase, (H - 1 - r) if BOTTOM else r, (W - 1 - c) if RIGHT else c, dm,
           (r < H) & (c < W), W, D, CL, I64)
    acc = tl.zeros_like(tl.sum(g, axis=1))
    for k in tl.static_range(3):
        dil = 2 * k + 1
        w = tl.load(Wt_ptr + (k * 9 + (6 if BOTTOM else 0) + (2 if RIGHT else 0)) * D + d, mask=dm, other=0.0)
        acc += w * tl.sum(tl.where(((r < dil) & (c < dil))[None, :], g, 0.0), axis=1)
    return acc


@triton.jit
def _bwd_border_kernel(dy_ptr, C_ptr, Wt_ptr, border_ptr, D, H, W, BD: tl.constexpr, BLOCK: tl.constexpr,
                       CL: tl.constexpr, I64: tl.constexpr):
    """Adjoint terms that clamping adds on the image border, for a tile of BD channels and BLOCK border
    positions: program_id(2) < cdiv(W, BLOCK) takes a block of the top and bottom rows, the rest a block
    of the left and right columns (channels-last loads then read whole runs of channels).

    A clamped tap at offset o sends the output positions whose index i + o left [0, N) to the edge
    index; its adjoint sums them back there. Writes [top(W), bottom(W), left(H), right(H)] per (b, d)
    plane, corner terms folded into the first/last entries of top and bottom; the fuse kernel adds them.
    """
    b, blk = tl.program_id(1), tl.program_id(2)
    L = H * W
    d = tl.program_id(0) * BD + tl.arange(0, BD)
    dm = d < D
    base = _rows(b, d, D, L, CL, I64)
    cbase = wide(b, I64) * L
    out = border_ptr + wide(b * D + d, I64)[:, None] * (2 * W + 2 * H)
    n_top = tl.cdiv(W, BLOCK)
    if blk < n_top:  # top and bottom rows: taps with row offset -dil / +dil
        q = blk * BLOCK + tl.arange(0, BLOCK)
        qm = q < W
        top = tl.zeros([BD, BLOCK], dtype=tl.float32)
        bot = tl.zeros([BD, BLOCK], dtype=tl.float32)
        for k in tl.static_range(3):
            dil = 2 * k + 1
            for kj in tl.static_range(3):
                j = q - (kj - 1) * dil
                jm = qm & (j >= 0) & (j < W)
                wt = tl.load(Wt_ptr + (k * 9 + kj) * D + d, mask=dm, other=0.0)[:, None]
                wb = tl.load(Wt_ptr + (k * 9 + 6 + kj) * D + d, mask=dm, other=0.0)[:, None]
                for a in range(2 * k + 1):  # rows a clamped tap folds onto the edge
                    top += wt * _g(dy_ptr, C_ptr, base, cbase, a, j, dm, jm & (a < H), W, D, CL, I64)
                    bot += wb * _g(dy_ptr, C_ptr, base, cbase, H - 1 - a, j, dm, jm & (a < H), W, D, CL, I64)
        if blk == 0:
            top += tl.where((q == 0)[None, :], _corner(dy_ptr, C_ptr, Wt_ptr, base, cbase, d, dm, D, H, W, False,
                                                       False, CL, I64)[:, None], 0.0)
            bot += tl.where((q == 0)[None, :], _corner(dy_ptr, C_ptr, Wt_ptr, base, cbase, d, dm, D, H, W, True,
                                                       False, CL, I64)[:, None], 0.0)
        if blk == n_top - 1:
            top += tl.where((q == W - 1)[None, :], _corner(dy_ptr, C_ptr, Wt_ptr, base, cbase, d, dm, D, H, W,
                                                           False, True, CL, I64)[:, None], 0.0)
            bot += tl.where((q == W - 1)[None, :], _corner(dy_ptr, C_ptr, Wt_ptr, base, cbase, d, dm, D, H, W,
                                                           True, True, CL, I64)[:, None], 0.0)
        m = dm[:, None] & qm[None, :]
        tl.store(out + q[None, :], top, mask=m)
        tl.store(out + W + q[None, :], bot, mask=m)
    else:  # left and right columns: taps with column offset -dil / +dil
        p = (blk - n_top) * BLOCK + tl.arange(0, BLOCK)
        pm = p < H
        left = tl.zeros([BD, BLOCK], dtype=tl.float32)
        right = tl.zeros([BD, BLOCK], dtype=tl.float32)
        for k in tl.static_range(3):
            dil = 2 * k + 1
            for ki in tl.static_range(3):
                i = p - (ki - 1) * dil
                im = pm & (i >= 0) & (i < H)
                wl = tl.load(Wt_ptr + (k * 9 + ki * 3) * D + d, mask=dm, other=0.0)[:, None]
                wr = tl.load(Wt_ptr + (k * 9 + ki * 3 + 2) * D + d, mask=dm, other=0.0)[:, None]
                for a in range(2 * k + 1):  # columns a clamped tap folds onto the edge
                    left += wl * _g(dy_ptr, C_ptr, base, cbase, i, a, dm, im & (a < W), W, D, CL, I64)
                    right += wr * _g(dy_ptr, C_ptr, base, cbase, i, W - 1 - a, dm, im & (a < W), W, D, CL, I64)
        m = dm[:, None] & pm[None, :]
        tl.store(out + 2 * W + p[None, :], left, mask=m)
        tl.store(out + 2 * W + H + p[None, :], right, mask=m)


@triton.jit
def _adjoint(h_ptr, dy_ptr, C_ptr, Wt_ptr, S_ptr, g, rows, cbase, l, m, r, c, d, dm, m2, tap0, D, H, W,
             BDF: tl.constexpr, BLOCK: tl.constexpr, CLAMP: tl.constexpr, CL: tl.constexpr, I64: tl.constexpr):
    """On a tile with g = dy C at its positions: the fused states hp (as _stencil), dh = K^T (dy C) (zero
    outside the image; the border terms come separately), and S[tap0 + t, d] = sum of g h(l + offset_t)
    over the tile for each of the 27 taps t. CLAMP as in _stencil."""
    hp = tl.zeros([BDF, BLOCK], dtype=tl.float32)
    dh = tl.zeros([BDF, BLOCK], dtype=tl.float32)
    centre = rows[:, None] + _cols(l, D, CL, I64)[None, :]
    for kr in range(9):  # (dilation, kernel row): row math once, three column taps in flight
        k = kr // 3
        dil = 2 * k + 1
        oi = (kr % 3 - 1) * dil
        if CLAMP:
            rr = tl.minimum(tl.maximum(r + oi, 0), H - 1) * W
            ra = r - oi
            rm = m & (ra >= 0) & (ra < H)
        for kj in tl.static_range(3):
            oj = (kj - 1) * dil
            w = _tap_weights(Wt_ptr, kr * 3 + kj, d, dm, D, CLAMP)
            if CLAMP:
                hoff = _cols(rr + tl.minimum(tl.maximum(c + oj, 0), W - 1), D, CL, I64)
                hv = tl.load(h_ptr + rows[:, None] + hoff[None, :], mask=m2, other=0.0)
                ca = c - oj
                am = rm & (ca >= 0) & (ca < W)
                off = ra * W + ca
                wC = w[:, None] * tl.load(C_ptr + cbase + off, mask=am, other=0.0).to(tl.float32)[None, :]
                dyv = tl.load(dy_ptr + rows[:, None] + _cols(off, D, CL, I64)[None, :],
                              mask=dm[:, None] & am[None, :], other=0.0)
            else:
                shift = oi * W + oj
                hv = tl.load(h_ptr + centre + _cols(shift, D, CL, I64))
                wC = w[:, None] * tl.load(C_ptr + cbase + l - shift).to(tl.float32)[None, :]
                dyv = tl.load(dy_ptr + centre - _cols(shift, D, CL, I64))
            hp += w[:, None] * hv
            tl.store(S_ptr + wide(tap0 + kr * 3 + kj, I64) * D + d, tl.sum(g * hv, axis=1), mask=dm)
            dh += wC * dyv
    return hp, dh


@triton.jit
def _bwd_fuse_kernel(h_ptr, dy_ptr, C_ptr, Wt_ptr, border_ptr, dh_ptr, dC_ptr, S_ptr,
                     D, H, W, tiles_per_group, n_groups, BDF: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                     CL: tl.constexpr, I64: tl.constexpr):
    """Adjoint of fusion + readout on (channels x positions) tiles, looping over a group of channel tiles.

    dh = K^T (dy C) (zero outside the image, plus the border terms); dC accumulates h' dy over the
    group's channels in registers; S[t, d] = sum_l g(l) h(l + offset_t) gives dK and dalpha. Tiles away
    from the border take the unclamped adjoint and no border terms.
    """
    pid_t, grp, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    L = H * W
    cbase = wide(b, I64) * L
    tap0 = (b * tl.num_programs(0) + pid_t) * 27
    dC = tl.zeros([TH * TW], dtype=tl.float32)
    for j in range(tiles_per_group):
        d, dm, l, m, r, c, rows, m2, inside = _tile(grp * tiles_per_group + j, pid_t, b, D, H, W, BDF, TH, TW, CL, I64)
        dy = tl.load(dy_ptr + rows[:, None] + _cols(l, D, CL, I64)[None, :], mask=m2, other=0.0)
        g = dy * tl.load(C_ptr + cbase + l, mask=m, other=0.0).to(tl.float32)[None, :]
        if inside:
            hp, dh = _adjoint(h_ptr, dy_ptr, C_ptr, Wt_ptr, S_ptr, g, rows, cbase, l, m, r, c, d, dm, m2, tap0, D, H,
                              W, BDF, TH * TW, False, CL, I64)
        else:
            hp, dh = _adjoint(h_ptr, dy_ptr, C_ptr, Wt_ptr, S_ptr, g, rows, cbase, l, m, r, c, d, dm, m2, tap0, D, H,
                              W, BDF, TH * TW, True, CL, I64)
            bb = border_ptr + wide(b * D + d, I64)[:, None] * (2 * W + 2 * H)
            dh += tl.load(bb + c[None, :], mask=m2 & (r == 0)[None, :], other=0.0)
            dh += tl.load(bb + W + c[None, :], mask=m2 & (r == H - 1)[None, :], other=0.0)
            dh += tl.load(bb + 2 * W + r[None, :], mask=m2 & (c == 0)[None, :], other=0.0)
            dh += tl.load(bb + 2 * W + H + r[None, :], mask=m2 & (c == W - 1)[None, :], other=0.0)
        tl.store(dh_ptr + rows[:, None] + _cols(l, D, CL, I64)[None, :], dh, mask=m2)
        dC += tl.sum(hp * dy, axis=0)
    l, m, r, c, inside = _positions(pid_t, H, W, TH, TW)
    tl.store(dC_ptr + wide(b * n_groups + grp, I64) * L + l, dC, mask=m)


@triton.jit
def _bwd_scan_kernel(u_ptr, dl_ptr, B_ptr, A_ptr, bias_ptr, Ds_ptr, h_ptr, dh_ptr, dy_ptr,
                     du_ptr, ddl_ptr, dB_ptr, red_ptr, carry_ptr, summ_ptr,
                     D, L, H, W, n_chunks, blocks_per_chunk,
                     BD: tl.constexpr, BL: tl.constexpr, SUMMARY: tl.constexpr, HAS_CARRY: tl.constexpr,
                     CL: tl.constexpr, SCAN: tl.constexpr, I64: tl.constexpr):
    """Reverse scan gh_t = dh_t + exp(dt_{t+1} A) gh_{t+1}, then every scan gradient from gh.

    Tiles are loaded in descending t, so a forward associative scan runs backwards in time. Uses
    a_t h_{t-1} = h_t - dt_t B_t u_t, so only h_t (not h_{t-1}) is read. SUMMARY as in the forward.
    """
    pid_d, chunk, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    n_dblk = tl.num_programs(0)
    d, dmask, A, bias, row, rows, state, decay = _scan_start(A_ptr, bias_ptr, carry_ptr, pid_d, chunk, b, D, L,
                                                             n_chunks, BD, HAS_CARRY, CL, I64)
    Ds = tl.load(Ds_ptr + d, mask=dmask, other=0.0)
    dA = tl.zeros([BD], dtype=tl.float32)
    dbias = tl.zeros([BD], dtype=tl.float32)
    dD = tl.zeros([BD], dtype=tl.float32)
    for i in range(blocks_per_chunk):
        t = ((chunk + 1) * blocks_per_chunk - i) * BL - 1 - tl.arange(0, BL)
        tmask = t < L
        p = _pos(t, L, H, W, SCAN)
        m = dmask[:, None] & tmask[None, :]
        offs = rows[:, None] + _cols(p, D, CL, I64)[None, :]
        m1 = dmask[:, None] & (t + 1 < L)[None, :]
        offs1 = rows[:, None] + _cols(_pos(t + 1, L, H, W, SCAN), D, CL, I64)[None, :]
        v1 = tl.load(dl_ptr + offs1, mask=m1, other=0.0).to(tl.float32) + bias[:, None]
        a1 = tl.where(m1, tl.exp(_softplus(v1) * A[:, None]), 1.0)
        ca, cg = tl.associative_scan((a1, tl.load(dh_ptr + offs, mask=m, other=0.0)), 1, _affine)
        gh = cg + ca * state[:, None]
        state = _last(gh, BL)
        if SUMMARY:
            decay = decay * _last(ca, BL)
        else:
            u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
            v = tl.load(dl_ptr + offs, mask=m, other=0.0).to(tl.float32) + bias[:, None]
            Bt = tl.load(B_ptr + wide(b, I64) * L + p, mask=tmask, other=0.0).to(tl.float32)
            h = tl.load(h_ptr + offs, mask=m, other=0.0)
            dy = tl.load(dy_ptr + offs, mask=m, other=0.0)
            dt, y = _softplus_parts(v)  # y = exp(-|v|) gives softplus' slope below
            gdt = gh * dt
            prev = h - dt * Bt[None, :] * u  # = exp(dt A) h_{t-1}
            ddt = gh * Bt[None, :] * u + A[:, None] * gh * prev
            sig = tl.fdiv(tl.where(v >= 0.0, 1.0, y), 1.0 + y, ieee_rounding=False)  # sigmoid(v), softplus' slope
            ddl = tl.where(m, ddt * sig, 0.0)
            tl.store(du_ptr + offs, (Ds[:, None] * dy + gdt * Bt[None, :]).to(du_ptr.dtype.element_ty), mask=m)
            tl.store(ddl_ptr + offs, ddl.to(ddl_ptr.dtype.element_ty), mask=m)
            tl.store(dB_ptr + wide(b * n_dblk + pid_d, I64) * L + p, tl.sum(gdt * u, axis=0), mask=tmask)
            dA += tl.sum(tl.where(m, gdt * prev, 0.0), axis=1)
            dbias += tl.sum(ddl, axis=1)
            dD += tl.sum(u * dy, axis=1)
    if SUMMARY:
        base = (row * n_chunks + chunk) * 2
        tl.store(summ_ptr + base, decay, mask=dmask)
        tl.store(summ_ptr + base + 1, state, mask=dmask)
    else:
        red = red_ptr + wide((b * n_chunks + chunk) * 3, I64) * D + d
        tl.store(red, dA, mask=dmask)
        tl.store(red + D, dbias, mask=dmask)
        tl.store(red + 2 * D, dD, mask=dmask)


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


@dataclass(frozen=True)
class _Plan:
    """Launch geometry for one (b, d, H, W): tiles shrink for short sequences (7x7 maps have L = 49)."""

    BD: int
    BL: int
    n_chunks: int
    per_chunk: int  # scan tiles per chunk
    scan_warps: int
    BDF: int
    FH: int  # stencil tile rows
    FW: int  # stencil tile columns
    n_tiles: int  # stencil tiles per image
    fuse_warps: int
    n_groups: int  # channel-tile groups of the backward fuse kernel
    tiles_per_group: int

    @staticmethod
    def make(b: int, d: int, height: int, width: int, device: torch.device, cfg: TritonConfig) -> "_Plan":
        target = 8 * _sm_count(device)  # programs that keep every SM busy
        length = height * width
        bl = min(cfg.scan_block, triton.next_power_of_2(length))
        n_blocks = triton.cdiv(length, bl)
        if cfg.chunk_len is not None:
            per = max(1, cfg.chunk_len // bl)
        else:  # split L only as far as (b, d) tiles leave SMs idle: every chunk costs an extra read
            per = triton.cdiv(n_blocks, min(n_blocks, triton.cdiv(target, b * triton.cdiv(d, cfg.scan_rows))))
        fw = min(cfg.fuse_width, cfg.fuse_block, triton.next_power_of_2(width))
        fh = min(cfg.fuse_block // fw, triton.next_power_of_2(height))
        n_tiles = triton.cdiv(height, fh) * triton.cdiv(width, fw)
        tiles = triton.cdiv(d, cfg.fuse_rows)
        want = triton.cdiv(target, b * n_tiles)
        groups = max(g for g in range(1, tiles + 1) if tiles % g == 0 and g <= max(1, want))
        return _Plan(cfg.scan_rows, bl, triton.cdiv(n_blocks, per), per, _warps(cfg.scan_rows * bl, cfg),
                     cfg.fuse_rows, fh, fw, n_tiles, _warps(cfg.fuse_rows * fh * fw, cfg), groups, tiles // groups)

    def fuse_meta(self) -> dict:
        return dict(BDF=self.BDF, TH=self.FH, TW=self.FW, num_warps=self.fuse_warps)


def _border_tile(d: int, height: int, width: int, channels_last: bool) -> tuple[int, int]:
    """(channels, border positions) of a border-kernel tile: 32 channels (whole sectors) channels-last,
    4 channels-first, where positions are contiguous; up to 64 positions."""
    return min(32 if channels_last else 4, triton.next_power_of_2(d)), min(64, triton.next_power_of_2(max(height, width)))


def _warps(tile: int, cfg: TritonConfig) -> int:
    """cfg.num_warps, fewer for small tiles (at least 4 elements per thread)."""
    return max(1, min(cfg.num_warps, tile // 128))


@dataclass(frozen=True)
class _Geometry:
    """What every kernel launch of one call needs besides the tensors."""

    b: int
    d: int
    height: int
    width: int
    scan: int  # SCAN code of _pos
    channels_last: bool
    plan: _Plan
    wide: bool  # int64 offsets (I64): some buffer of the call has 2**31 elements or more

    @property
    def length(self) -> int:
        return self.height * self.width

    def scan_meta(self) -> dict:
        p = self.plan
        return dict(BD=p.BD, BL=p.BL, num_warps=p.scan_warps, CL=self.channels_last, SCAN=self.scan, I64=self.wide)


def _geometry(u: torch.Tensor, height: int, width: int, scan: int, channels_last: bool, config: list[int]) -> _Geometry:
    b, d = (u.shape[0], u.shape[2]) if channels_last else u.shape[:2]
    return _cached_geometry(b, d, height, width, scan, channels_last, tuple(config), u.device)


@functools.lru_cache(maxsize=1024)
def _cached_geometry(b, d, height, width, scan, channels_last, config, device) -> _Geometry:
    """Forward and backward of every layer ask for the same few shapes: plan them once (host time)."""
    cfg = TritonConfig(*config[:2], config[2] or None, *config[3:])
    length = height * width
    plan = _Plan.make(b, d, height, width, device, cfg)
    int64 = needs_int64(b * length * d, b * d * 2 * (height + width), b * plan.n_tiles * 27 * d,
                        b * max(plan.n_groups, triton.cdiv(d, plan.BD)) * length)  # activations, border, S, dC / dB
    return _Geometry(b, d, height, width, scan, channels_last, plan, int64)


def stencil_weights(K: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(27, d) float32: alpha_r K_r with the taps in the stencil loops' order (dilation, row, column), so a
    tile reads each tap's weights for its channels as one contiguous vector. Formed outside the op (by
    differentiable torch ops), so its gradient, the 27 tap sums, reaches K and alpha through autograd."""
    return (K * alpha.view(3, 1, 1, 1)).permute(0, 2, 3, 1).reshape(27, K.shape[1])


def _scan_states(u, delta, B, A, dt_bias, g: _Geometry) -> torch.Tensor:
    """All fp32 states h (in u's layout): per-chunk summaries, carries, then the chunked scan."""
    p, b, d, length = g.plan, g.b, g.d, g.length
    grid = (triton.cdiv(d, p.BD), p.n_chunks, b)
    h = torch.empty(u.shape, device=u.device, dtype=torch.float32)
    carry = h
    dims = (d, length, g.height, g.width, p.n_chunks, p.per_chunk)
    if p.n_chunks > 1:
        summ = torch.empty(b, d, p.n_chunks, 2, device=u.device, dtype=torch.float32)
        _fwd_scan_kernel[grid](u, delta, B, A, dt_bias, h, h, summ, *dims,
                               SUMMARY=True, HAS_CARRY=False, **g.scan_meta())
        carry = torch.empty(b, d, p.n_chunks, device=u.device, dtype=torch.float32)
        _carry_kernel[(triton.cdiv(b * d, 128),)](summ, carry, b * d, p.n_chunks, BR=128, REVERSE=False)
    _fwd_scan_kernel[grid](u, delta, B, A, dt_bias, h, carry, h, *dims,
                           SUMMARY=False, HAS_CARRY=p.n_chunks > 1, **g.scan_meta())
    return h


def _forward(u, delta, A, B, C, Dskip, dt_bias, Wt, height, width, scan, channels_last, config):
    g = _geometry(u, height, width, scan, channels_last, config)
    p = g.plan
    h = _scan_states(u, delta, B, A, dt_bias, g)
    y = torch.empty_like(h)
    _fwd_fuse_kernel[(p.n_tiles, triton.cdiv(g.d, p.BDF), g.b)](
        h, u, C, Dskip, Wt, y, g.d, height, width, CL=channels_last, I64=g.wide, **p.fuse_meta())
    return y


@torch.library.custom_op("spatial_restore::sasf_fwd", mutates_args=())
def sasf_fwd(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             Dskip: torch.Tensor, dt_bias: torch.Tensor, Wt: torch.Tensor,
             height: int, width: int, scan: int, channels_last: bool, config: list[int]) -> torch.Tensor:
    """y (fp32, u's shape and layout). u, delta contiguous (b, L, d) if channels_last else (b, d, L);
    B, C contiguous (b, L); parameters fp32: A, Dskip, dt_bias (d,), Wt (27, d) (``stencil_weights``)."""
    return _forward(u, delta, A, B, C, Dskip, dt_bias, Wt, height, width, scan, channels_last, config)


@sasf_fwd.register_fake
def _(u, delta, A, B, C, Dskip, dt_bias, Wt, height, width, scan, channels_last, config):
    return torch.empty(u.shape, device=u.device, dtype=torch.float32)


def _backward_impl(dy, u, delta, A, B, C, Dskip, dt_bias, Wt, height, width, scan, channels_last, config):
    g = _geometry(u, height, width, scan, channels_last, config)
    p, b, d, length, cl = g.plan, g.b, g.d, g.length, channels_last
    dev, f32 = u.device, torch.float32
    h = _scan_states(u, delta, B, A, dt_bias, g)

    border = torch.empty(b, d, 2 * (height + width), device=dev, dtype=f32)
    bd, edge = _border_tile(d, height, width, cl)
    blocks = triton.cdiv(width, edge) + triton.cdiv(height, edge)
    _bwd_border_kernel[(triton.cdiv(d, bd), b, blocks)](dy, C, Wt, border, d, height, width, BD=bd, BLOCK=edge,
                                                        CL=cl, I64=g.wide, num_warps=_warps(bd * edge, DEFAULT_CONFIG))
    dh = torch.empty_like(h)
    dC = torch.empty(b, p.n_groups, length, device=dev, dtype=f32)
    S = torch.empty(b, p.n_tiles, 27, d, device=dev, dtype=f32)
    _bwd_fuse_kernel[(p.n_tiles, p.n_groups, b)](h, dy, C, Wt, border, dh, dC, S, d, height, width,
                                                 p.tiles_per_group, p.n_groups, CL=cl, I64=g.wide, **p.fuse_meta())

    n_dblk = triton.cdiv(d, p.BD)
    grid = (n_dblk, p.n_chunks, b)
    # Each program reads dh / h at exactly the positions it then writes: fp32 grads reuse them.
    du = dh if u.dtype == f32 else torch.empty_like(u)
    ddelta = h if delta.dtype == f32 else torch.empty_like(delta)
    dB = torch.empty(b, n_dblk, length, device=dev, dtype=f32)
    red = torch.empty(b, p.n_chunks, 3, d, device=dev, dtype=f32)
    carry = h
    args = (u, delta, B, A, dt_bias, Dskip, h, dh, dy, du, ddelta, dB, red)
    dims = (d, length, height, width, p.n_chunks, p.per_chunk)
    if p.n_chunks > 1:
        summ = torch.empty(b, d, p.n_chunks, 2, device=dev, dtype=f32)
        _bwd_scan_kernel[grid](*args, h, summ, *dims, SUMMARY=True, HAS_CARRY=False, **g.scan_meta(),
                               maxnreg=BWD_SCAN_REGISTERS)
        carry = torch.empty(b, d, p.n_chunks, device=dev, dtype=f32)
        _carry_kernel[(triton.cdiv(b * d, 128),)](summ, carry, b * d, p.n_chunks, BR=128, REVERSE=True)
    _bwd_scan_kernel[grid](*args, carry, h, *dims, SUMMARY=False, HAS_CARRY=p.n_chunks > 1, **g.scan_meta(),
                           maxnreg=BWD_SCAN_REGISTERS)

    red = red.sum((0, 1))
    return [du, ddelta, red[0].clone(), dB.sum(1), dC.sum(1), red[2].clone(), red[1].clone(), S.sum((0, 1))]


@torch.library.custom_op("spatial_restore::sasf_bwd", mutates_args=())
def sasf_bwd(dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
             C: torch.Tensor, Dskip: torch.Tensor, dt_bias: torch.Tensor, Wt: torch.Tensor,
             height: int, width: int, scan: int, channels_last: bool, config: list[int]) -> list[torch.Tensor]:
    """Gradients of sasf_fwd for every tensor input, in its order (dy fp32, contiguous like u); dWt is
    the 27 tap sums per channel."""
    return _backward_impl(dy, u, delta, A, B, C, Dskip, dt_bias, Wt, height, width, scan, channels_last, config)


@sasf_bwd.register_fake
def _(dy, u, delta, A, B, C, Dskip, dt_bias, Wt, height, width, scan, channels_last, config):
    return [torch.empty_like(t, dtype=torch.float32) if t is not u and t is not delta else torch.empty_like(t)
            for t in (u, delta, A, B, C, Dskip, dt_bias, Wt)]


def _setup_context(ctx, inputs, output):
    *tensors, height, width, scan, channels_last, config = inputs
    ctx.save_for_backward(*tensors)
    ctx.args = (height, width, scan, channels_last, config)


def _backward(ctx, dy):
    grads = sasf_bwd(dy.contiguous(), *ctx.saved_tensors, *ctx.args)
    return (*grads, None, None, None, None, None)


sasf_fwd.register_autograd(_backward, setup_context=_setup_context)


class _EagerSASF(torch.autograd.Function):
    """The same forward and backward without the custom-op dispatcher, whose Python layers cost about
    as much host time per call as the kernels' launches: eager runs take this, compiled graphs the op."""

    @staticmethod
    def forward(ctx, *inputs):
        y = _forward(*inputs)
        _setup_context(ctx, inputs, y)
        return y

    @staticmethod
    def backward(ctx, dy):
        grads = _backward_impl(dy.contiguous(), *ctx.saved_tensors, *ctx.args)
        return (*grads, None, None, None, None, None)


def sasf_triton(inputs: SASFInputs, config: TritonConfig | None = None) -> torch.Tensor:
    """The Triton SASF core op on channels-last inputs; y (b, L, d) fp32 for half inputs, else u's dtype."""
    for name in ("u", "delta", "B", "C"):
        x = getattr(inputs, name)
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"triton SASF core supports float32/float16/bfloat16 {name}, got {x.dtype}; "
                            "use backend='reference' for other dtypes")
    u, delta = inputs.u, inputs.delta
    b, length, d = u.shape
    # Read in whichever layout u already has: channels-last (the network's) or channels-first (b, d, L).
    channels_last = not (u.stride(1) == 1 and u.stride(2) == length)
    if channels_last:
        u, delta = u.contiguous(), delta.contiguous()
    else:
        u, delta = u.transpose(1, 2), delta.transpose(1, 2).contiguous()
    cfg = config or (CHANNELS_LAST_CONFIG if channels_last else DEFAULT_CONFIG)
    f32 = torch.float32
    op = sasf_fwd if torch.compiler.is_compiling() else _EagerSASF.apply
    y = op(u, delta, inputs.A.to(f32).reshape(d), inputs.B.reshape(b, length).contiguous(),
                 inputs.C.reshape(b, length).contiguous(), inputs.Dskip.to(f32).reshape(d),
                 inputs.dt_bias.to(f32).reshape(d),
                 stencil_weights(inputs.fusion_kernels.to(f32).reshape(3, d, 3, 3), inputs.alpha.to(f32).reshape(3)),
                 inputs.height, inputs.width, SCAN_CODES[inputs.scan],
                 channels_last, cfg.as_list())
    return y if channels_last else y.transpose(1, 2)


def sasf_core_triton(u, delta, A, B, C, Dskip, dt_bias, fusion_kernels, alpha, height, width, *,
                     config: TritonConfig | None = None, scan: str = "row") -> torch.Tensor:
    """Triton SASF core op with the public ``sasf_core`` arguments ((b, d, L) in and out)."""
    inputs = SASFInputs.from_channels_first(u, delta, A, B, C, Dskip, dt_bias, fusion_kernels, alpha, height, width,
                                            scan)
    return sasf_triton(inputs, config).transpose(1, 2)
