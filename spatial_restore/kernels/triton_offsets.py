"""Element offsets for the Triton kernels: 32-bit index math unless a buffer of the call needs 64 bits.

64-bit offsets cost about twice the integer instructions of 32-bit ones in the stencil kernels' loops
(scripts/kernel_sass.py counts them), and almost every call indexes buffers of fewer than 2**31
elements. So each launch passes ``I64=needs_int64(sizes of its buffers)`` and the kernels widen their
offsets with ``wide(x, I64)``.
"""

from __future__ import annotations

import triton
import triton.language as tl

INT32_OFFSETS_BELOW = 2**31  # buffers of fewer elements than this are indexed with 32-bit offsets


def needs_int64(*sizes: int) -> bool:
    """Whether a call whose largest buffer has max(sizes) elements needs 64-bit offsets."""
    return max(sizes) >= INT32_OFFSETS_BELOW


@triton.jit
def wide(x, I64: tl.constexpr):
    """x as an offset: int64 where the call needs it (I64), else as it is."""
    if I64:
        return x.to(tl.int64)
    else:
        return x
