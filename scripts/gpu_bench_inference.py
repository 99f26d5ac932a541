"""Time tiled restoration of a 3840x2160 photo on the GPU (model loaded, warm), with peak memory.

    python scripts/gpu_bench_inference.py MODEL [--precision bf16] [--tile 1024] [--repeats 5]
        [--compile | --cuda-graph] [--profile N] [--check IMAGE...] [--scans ENTRY...]

--check restores each IMAGE (plus sigma-25 noise, seed 0) with this setting and in fp32, printing both PSNRs;
--compile wraps the network in torch.compile (compiled once per tile shape, before timing); --cuda-graph
replays it as CUDA graphs (inference.py --cuda-graph: captured once per tile shape, before timing; peak
memory is then also given as reserved, since the graphs' private pool counts as free between replays); --profile N
prints the N CUDA kernels that take the most time in one 1024x1024 forward, to show where time goes;
--scans times MODEL's architecture with other SASF scan directions (random weights: speed only, no --check).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from spatial_restore.image_io import read_image
from spatial_restore.inference.restorer import Restorer
from spatial_restore.weights import build_model, load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="torch.compile the network first")
    p.add_argument("--cuda-graph", action="store_true", help="replay the network as CUDA graphs (not with --compile)")
    p.add_argument("--check", nargs="*", default=[], metavar="IMAGE", help="PSNR of this setting vs fp32")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print the top-N CUDA kernels of one 1024^2 forward")
    p.add_argument("--scans", nargs="+", metavar="ENTRY", help="other scan directions (SpatialMambaUNet scans)")
    args = p.parse_args()
    if args.compile and args.cuda_graph:
        p.error("--compile and --cuda-graph exclude each other")
    net, card = load_model(args.model)
    if args.scans:
        if args.check:
            p.error("--scans builds a network with random weights: --check would measure nothing")
        net = build_model(replace(card, kwargs={**card.kwargs, "scans": args.scans})).eval()
    restorer = Restorer(net, device=torch.device("cuda"), precision=args.precision, tile=args.tile,
                        compile=args.compile, cuda_graph=args.cuda_graph)
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.random((2160, 3840, 3), dtype=np.float32) * 0.2 + 0.4, 0, 1)  # random, never zeros
    restorer(rgb)  # warm-up: Triton and torch.compile compilation, cuDNN autotune, CUDA graph capture
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        restorer(rgb)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak, reserved = torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30
    network = "compiled" if args.compile else "cuda graph" if args.cuda_graph else "eager"
    print(f"| {torch.cuda.get_device_name()} | 3840x2160 | {args.precision} | tile {args.tile} | "
          f"{network} | scans {' '.join(getattr(net, 'scans', ()))} | median {statistics.median(times):.3f} s | "
          f"min {min(times):.3f} s | peak {peak:.2f} GiB | reserved {reserved:.2f} GiB |")
    if args.profile:
        profile_forward(restorer, rgb[:1024, :1024], args.profile)
    if args.check:
        check_quality(restorer, Restorer(load_model(args.model)[0], device=torch.device("cuda")), args.check)


def check_quality(restorer: Restorer, fp32: Restorer, paths: list[str]) -> None:
    """PSNR (dB) of this setting and of fp32 on sigma-25 noisy versions of the images."""
    from spatial_restore.bench.quality import noisy_version
    from spatial_restore.metrics import psnr

    for path in paths:
        clean = read_image(path, np.float64).rgb
        noisy = noisy_version(clean, 25).astype(np.float32)
        ours, ref = (np.clip(r(noisy), 0, 1).astype(np.float64) for r in (restorer, fp32))
        print(f"{path}: this setting {psnr(ours, clean):.3f} dB, fp32 {psnr(ref, clean):.3f} dB, "
              f"max |diff| {np.abs(ours - ref).max():.4f}")


def profile_forward(restorer: Restorer, rgb: np.ndarray, top: int) -> None:
    """One warm forward under torch.profiler; the kernels that take the most GPU time."""
    from torch.profiler import ProfilerActivity, profile

    restorer(rgb)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        restorer(rgb)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=top, max_name_column_width=70))


if __name__ == "__main__":
    main()
