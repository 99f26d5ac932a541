"""Process-wide CPU memory settings that command-line runs opt into; the library itself never calls them.

CPU inference fills many fresh activation-sized tensors, and on Linux their page faults can cost as much
as the arithmetic (docs/benchmarks.md, "Allocation, not arithmetic" and "Freed memory kept in the heap").
Two settings remove most of them, at the price of memory that stays with the process until it exits:
that suits a command that exits after its work, not someone's long-lived process importing the
library. So only the entry points call ``tune_for_command`` (``inference.py``, ``python -m
spatial_restore.demo``, ``python -m spatial_restore.bench``) or ``use_huge_pages`` (train/test), and
each setting has its opt-out:
- ``THP_MEM_ALLOC_ENABLE=0``: no transparent huge pages for PyTorch's CPU allocations (PyTorch reads
  the variable once, when it is imported, so it must be set before that);
- ``SPATIAL_RESTORE_KEEP_FREED_MEMORY=0``: glibc returns freed large blocks to the system as usual.
"""

from __future__ import annotations

import ctypes
import os
import sys

HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"  # PyTorch's own variable
KEEP_FREED_ENV = "SPATIAL_RESTORE_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_MAX = -4
INT_MAX = 2**31 - 1


def use_huge_pages() -> bool:
    """Ask PyTorch for transparent huge pages unless the variable is already set; True if they are on.

    Only before torch is imported (False after): PyTorch no longer reads the variable then.
    """
    if "torch" in sys.modules:
        return False
    os.environ.setdefault(HUGE_PAGES_ENV, "1")
    return os.environ[HUGE_PAGES_ENV] == "1"


def keep_freed_memory() -> bool:
    """Serve large blocks from glibc's heap and never trim it; True if glibc took the settings.

    glibc serves every block above its mmap threshold with a fresh mmap and unmaps it when the tensor
    dies, so the next tensor of that size faults its pages in again. A no-op (False) off Linux, under a
    libc without ``mallopt`` (musl), or with SPATIAL_RESTORE_KEEP_FREED_MEMORY=0.
    """
    if os.environ.get(KEEP_FREED_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, INT_MAX))


def tune_for_command() -> None:
    """Both settings, for a command that exits after its batch; call it before anything imports torch."""
    use_huge_pages()
    keep_freed_memory()
