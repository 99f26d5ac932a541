"""Keep freed memory in the process heap (glibc), for command-line runs on the CPU.

Why: glibc serves every block above its mmap threshold (activation-sized tensors, tens of MB) with a
fresh mmap and returns it with munmap when the tensor dies, so the next tensor of that size faults
in its pages again, each one zeroed by the kernel. On the 2-core development VM that costs as much as
the network itself: one 512x512 forward of the default denoiser went from 7.6-9.0 s to 3.9-4.1 s
(~100,000 page faults per forward to none) when large blocks came from the heap and stayed there.
The price is that the process keeps its peak heap until it exits (inference.py on 512x512 photos:
peak RSS 2.7 -> 3.7-3.9 GB), which suits a command that exits after its batch, not a library inside
someone's long-lived process: so only the entry points (``inference.py``, the demo, the quality
bench) call it, and SPATIAL_RESTORE_KEEP_FREED_MEMORY=0 turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "SPATIAL_RESTORE_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_MAX = -4
INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it; True if glibc took the settings.

    A no-op (False) off Linux, under a libc without ``mallopt`` (musl), or with the variable set to 0.
    """
    if os.environ.get(ENV_VAR, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, INT_MAX))
