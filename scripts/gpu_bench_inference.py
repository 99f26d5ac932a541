"""Time tiled restoration of a 3840x2160 photo on the GPU (model loaded, warm), with peak memory.

    python scripts/gpu_bench_inference.py MODEL [--precision bf16] [--tile 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from spatial_restore.inference.restorer import Restorer
from spatial_restore.weights import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    net, _ = load_model(args.model)
    restorer = Restorer(net.cuda().eval(), device=torch.device("cuda"), precision=args.precision, tile=args.tile)
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.random((2160, 3840, 3), dtype=np.float32) * 0.2 + 0.4, 0, 1)  # random, never zeros
    restorer(rgb[:512, :512])  # warm-up: Triton compilation, cuDNN autotune
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        restorer(rgb)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"| {torch.cuda.get_device_name()} | 3840x2160 | {args.precision} | tile {args.tile} | "
          f"median {statistics.median(times):.3f} s | min {min(times):.3f} s | peak {peak:.2f} GiB |")


if __name__ == "__main__":
    main()
