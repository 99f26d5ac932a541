"""spatial_restore: Spatial-Mamba backbones, Triton kernels and image restoration on BasicSR."""

import os

# CPU inference fills many fresh activation-sized tensors, and their page faults cost more than the
# arithmetic: with transparent huge pages for PyTorch's CPU allocations a 512x512 forward takes ~6.5 s
# instead of ~11 s on 2 cores (docs/benchmarks.md). PyTorch reads this once, at its import, so it takes
# effect when spatial_restore is imported first (inference.py, make demo, the benches, train/test);
# set THP_MEM_ALLOC_ENABLE=0 to opt out. GPU memory is not affected.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
