"""Pure-PyTorch reference of the SASF core op: the ground truth for every fast kernel.

Runs on any device and dtype (float64 in tests) and is differentiable by autograd. The scan is
chunked: ``CHUNK`` vectorised steps scan every chunk at once, and the chunk carries are scanned the
same way, recursively, so the Python loop never runs over the sequence length (1024x1024 images have
L ~ 10^6 steps). All decays are exp(dt*A) <= 1, so their products cannot overflow, and no step
divides by a decay (the cumsum-of-logs shortcut would overflow when dt*A is large).

``sasf_core_inference`` computes the same op for inference (no autograd): channels innermost and in
place, which makes it several times faster on CPU; it is tested against ``sasf_core_ref``.

A scan order other than "row" (see ``interface.SCAN_CODES``) permutes the sequence into that order
for the scan and back for the fusion, which stays in image coordinates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 16
DILATIONS = (1, 3, 5)  # ascending: the inference path takes the last (largest) first
SOFTPLUS_THRESHOLD = 20.0  # torch's and the Triton kernels': softplus(x) = x above it
SOFTPLUS_BLOCK = 1 << 16  # elements per block of _softplus_: its temporaries stay in the L2 cache


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Half-precision inputs are computed (and returned) in float32, like the official kernels."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def to_scan_order(x: torch.Tensor, height: int, width: int, scan: str) -> torch.Tensor:
    """(..., L) in image (row-major) order -> the same values in the order ``scan`` visits them."""
    if scan.startswith("col"):
        x = x.unflatten(-1, (height, width)).transpose(-2, -1).flatten(-2)
    return x.flip(-1) if scan.endswith("_reverse") else x


def to_image_order(x: torch.Tensor, height: int, width: int, scan: str) -> torch.Tensor:
    """The inverse of ``to_scan_order``."""
    if scan.endswith("_reverse"):
        x = x.flip(-1)
    if scan.startswith("col"):
        x = x.unflatten(-1, (width, height)).transpose(-2, -1).flatten(-2)
    return x


def _scan_within_chunks(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan along dim 0 (the position inside a chunk) from a zero state, vectorised over all chunks.

    Returns (cumulative decay prod_{k<=t} a_k, h_t), both shaped like the inputs.
    """
    h = [b[0]]
    for t in range(1, a.shape[0]):  # CHUNK iterations, each over L / CHUNK elements
        h.append(a[t] * h[-1] + b[t])
    return torch.cumprod(a, dim=0), torch.stack(h)


def linear_scan(a: torch.Tensor, b: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t along the last dim with h_{-1} = 0; a and b of one shape.

    Two levels: a scan inside every chunk at once, then the same function over the chunk carries.
    """
    n = a.shape[-1]
    if n <= chunk:
        return _scan_within_chunks(a.movedim(-1, 0), b.movedim(-1, 0))[1].movedim(0, -1)
    pad = (-n) % chunk
    if pad:  # a = 1, b = 0 past the end leaves the carried state unchanged
        a = F.pad(a, (0, pad), value=1.0)
        b = F.pad(b, (0, pad), value=0.0)
    lead = a.shape[:-1]
    decay, local = _scan_within_chunks(  # (chunk, ..., n_chunks)
        a.reshape(*lead, -1, chunk).movedim(-1, 0), b.reshape(*lead, -1, chunk).movedim(-1, 0)
    )
    carry_out = linear_scan(decay[-1], local[-1], chunk)  # state at the end of each chunk
    carry_in = F.pad(carry_out[..., :-1], (1, 0))  # state entering each chunk
    h = local + decay * carry_in
    return h.movedim(0, -1).reshape(*lead, -1)[..., :n]


def _linear_scan_(a: torch.Tensor, h: torch.Tensor, chunk: int = CHUNK, reverse: bool = False) -> None:
    """``linear_scan`` in place along dim 1 of (batch, n, d): h_t += a_t h_{t-1}; a is overwritten.

    The same two-level chunked scan, with no temporaries, and every step a pass over contiguous rows
    of d channels (``linear_scan`` steps through a (b, d, L) layout one element per cache line). The
    last element of each chunk is the chunk carry, so the carries are scanned where they lie.
    ``reverse`` runs from the end (h_t += a_t h_{t+1}): torch has no negative strides to flip a view.
    """
    n = h.shape[1]
    full = n - n % chunk if n > chunk else 0  # the part scanned chunk-wise; the rest step by step
    if reverse:
        _linear_scan_reverse_(a, h, chunk, full)
        return
    if full:
        ac, hc = a[:, :full].unflatten(1, (-1, chunk)), h[:, :full].unflatten(1, (-1, chunk))
        for t in range(1, chunk):  # scan inside every chunk; a becomes the cumulative decay
            hc[:, :, t].addcmul_(ac[:, :, t], hc[:, :, t - 1])
            ac[:, :, t].mul_(ac[:, :, t - 1])
        _linear_scan_(ac[:, :, -1], hc[:, :, -1], chunk)  # the carries: states at the chunk ends
        hc[:, 1:, :-1].addcmul_(ac[:, 1:, :-1], hc[:, :-1, -1:])  # add the carry entering each chunk
    for t in range(max(full, 1), n):
        h[:, t].addcmul_(a[:, t], h[:, t - 1])


def _linear_scan_reverse_(a: torch.Tensor, h: torch.Tensor, chunk: int, full: int) -> None:
    """``_linear_scan_`` from the end: the tail past ``full`` first (step by step, ending with the step
    into the last chunk), then the chunks, whose first elements are their carries."""
    n = h.shape[1]
    for t in range(n - 2, (full - 1 if full else 0) - 1, -1):
        h[:, t].addcmul_(a[:, t], h[:, t + 1])
    if full:
        ac, hc = a[:, :full].unflatten(1, (-1, chunk)), h[:, :full].unflatten(1, (-1, chunk))
        for t in range(chunk - 2, -1, -1):
            hc[:, :, t].addcmul_(ac[:, :, t], hc[:, :, t + 1])
            ac[:, :, t].mul_(ac[:, :, t + 1])
        _linear_scan_(ac[:, :, 0], hc[:, :, 0], chunk, reverse=True)  # the carries: states at chunk starts
        hc[:, :-1, 1:].addcmul_(ac[:, :-1, 1:], hc[:, 1:, :1])  # add the carry entering from the right


def _softplus_(x: torch.Tensor) -> torch.Tensor:
    """``F.softplus`` (threshold 20) in place on a contiguous tensor, a cache-sized block at a time.

    torch's CPU softplus and log1p are not vectorised; this, as max(x, 0) + log1p(exp(-|x|)) from
    exp and log, is 2-3x faster (docs/benchmarks.md, CPU). log1p(e) = log(u) - ((u - 1) - e) / u with
    u = 1 + e rounded: the second term takes back the rounding of u, so tiny values stay exact (the
    Triton kernels get the same from a series for log1p, without a log).
    """
    flat = x.view(-1)
    size = min(SOFTPLUS_BLOCK, flat.numel())
    e, u, t = (torch.empty(size, dtype=x.dtype, device=x.device) for _ in range(3))
    above = torch.empty(size, dtype=torch.bool, device=x.device)
    for start in range(0, flat.numel(), SOFTPLUS_BLOCK):
        v = flat[start : start + SOFTPLUS_BLOCK]
        n = v.numel()
        eb, ub, tb, ab = e[:n], u[:n], t[:n], above[:n]
        torch.abs(v, out=eb).neg_().exp_()  # e = exp(-|x|) in (0, 1]
        torch.add(eb, 1.0, out=ub)
        torch.sub(ub, 1.0, out=tb).sub_(eb).div_(ub)  # ((u - 1) - e) / u
        ub.log_().sub_(tb)  # log1p(e)
        torch.gt(v, SOFTPLUS_THRESHOLD, out=ab)
        v.clamp_(min=0).add_(ub.masked_fill_(ab, 0.0))
    return x


def selective_scan_ref(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, dt_bias: torch.Tensor
) -> torch.Tensor:
    """All hidden states of the one-direction selective scan with d_state = 1.

    u, delta (b,d,L); A (d,1); B (b,1,L); dt_bias (d,). Returns h (b,d,L) in the compute dtype:
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t with dt = softplus(delta + dt_bias) (identity above 20).
    """
    dtype = compute_dtype(u)
    u, delta, B = u.to(dtype), delta.to(dtype), B.to(dtype)
    dt = F.softplus(delta + dt_bias.to(dtype)[:, None])  # torch's threshold 20 is the kernel's
    return linear_scan(torch.exp(dt * A.to(dtype)), dt * B * u)


def state_fusion_ref(h: torch.Tensor, fusion_kernels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Structure-aware state fusion: sum_r alpha_r * depthwise 3x3 (dilation r) with clamped borders.

    h (b,d,H,W); fusion_kernels (3,d,3,3) for dilations 1, 3, 5; alpha (3,) used raw.
    """
    d = h.shape[1]
    out = 0
    for r, (dil, kernel) in enumerate(zip(DILATIONS, fusion_kernels)):
        # channels-last makes CPU depthwise convolution ~3x faster; the result is the same
        padded = F.pad(h, (dil,) * 4, mode="replicate").contiguous(memory_format=torch.channels_last)
        out = out + alpha[r] * F.conv2d(padded, kernel.to(h.dtype).unsqueeze(1), dilation=dil, groups=d)
    return out.contiguous()


def sasf_core_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    Dskip: torch.Tensor,
    dt_bias: torch.Tensor,
    fusion_kernels: torch.Tensor,
    alpha: torch.Tensor,
    height: int,
    width: int,
    scan: str = "row",
) -> torch.Tensor:
    """y = fuse(scan(u, delta, ...)) * C + Dskip * u; shapes as in ``spatial_restore.kernels.sasf_core``."""
    b, d, length = u.shape
    dtype = compute_dtype(u)
    order = (lambda x: to_scan_order(x, height, width, scan))
    h = selective_scan_ref(order(u), order(delta), A, order(B), dt_bias)
    h = to_image_order(h, height, width, scan).reshape(b, d, height, width)
    fused = state_fusion_ref(h, fusion_kernels.to(dtype), alpha.to(dtype)).reshape(b, d, length)
    return fused * C.to(dtype) + Dskip.to(dtype)[:, None] * u.to(dtype)


@torch.no_grad()
def sasf_core_inference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    Dskip: torch.Tensor,
    dt_bias: torch.Tensor,
    fusion_kernels: torch.Tensor,
    alpha: torch.Tensor,
    height: int,
    width: int,
    scan: str = "row",
) -> torch.Tensor:
    """``sasf_core_ref`` without autograd, computed channels-last (b, L, d) and in place.

    Returns a (b, d, L) view of channels-last memory (free when the caller wants channels-last, as
    the model does); inputs of that layout are read without copies. It allocates as few
    activation-sized tensors as it can: on CPU, the page faults of a fresh one cost more than the
    pass that fills it. A column scan reads u, delta and B through transposed views, so its states
    are written in scan order at no extra pass.
    """
    b, d, length = u.shape
    dtype = compute_dtype(u)
    u = u.to(dtype).transpose(1, 2)

    def scan_view(x: torch.Tensor) -> torch.Tensor:  # (b, L, c) image order -> (b, L, c) view in scan order
        x = x.unflatten(1, (height, width))
        return x.transpose(1, 2) if scan.startswith("col") else x

    order = scan_view(u)
    dt = torch.add(scan_view(delta.to(dtype).transpose(1, 2)), dt_bias.to(dtype), out=u.new_empty(order.shape))
    dt = _softplus_(dt).flatten(1, 2)  # contiguous in scan order
    # One pad at the largest dilation serves all three (two padded copies fewer). The padded states
    # go into the memory of the decays, which the scan leaves dead.
    pad = max(DILATIONS)
    buffer = dt.new_empty(b, height + 2 * pad, width + 2 * pad, d)
    a = torch.mul(dt, A.to(dtype).view(d), out=buffer.view(-1)[: dt.numel()].view_as(dt)).exp_()
    h = dt.view_as(order).mul_(scan_view(B.to(dtype).transpose(1, 2))).mul_(order).flatten(1, 2)
    _linear_scan_(a, h, reverse=scan.endswith("_reverse"))
    if scan.startswith("col"):  # back to image order: the padding below is several times slower on a transposed view
        h = h.view(b, width, height, d).transpose(1, 2).contiguous()
    h = h.view(b, height, width, d).permute(0, 3, 1, 2)  # (b, d, H, W) view of (b, H, W, d) memory
    padded = torch.ops.aten.replication_pad2d.out(h, (pad,) * 4, out=buffer.permute(0, 3, 1, 2))
    # A smaller dilation's output has (pad - dilation) pixels too many each side, cropped off; the
    # largest dilation goes first, so the sum accumulates into its uncropped, contiguous output.
    y = None
    for dil, kernel, weight in reversed(list(zip(DILATIONS, fusion_kernels.to(dtype), alpha.to(dtype)))):
        term = F.conv2d(padded, (weight * kernel).unsqueeze(1), dilation=dil, groups=d)  # alpha folded in
        crop = pad - dil
        y = term if y is None else y.add_(term[..., crop : crop + height, crop : crop + width])
    y = y.permute(0, 2, 3, 1).reshape(b, length, d)
    return y.mul_(C.to(dtype).transpose(1, 2)).addcmul_(u, Dskip.to(dtype)).transpose(1, 2)
