"""Time one CPU forward of the `small` U-Net with different scans, in turns in one process.

    python scripts/cpu_scan_ab.py [--size 512] [--rounds 3] [--scans row row,col,row_reverse,col_reverse]

Random weights (the speed does not depend on them); each --scans entry is a comma-separated list for
SpatialMambaUNet(scans=...). Runs alternate so that a busy moment of the machine hits both alike.
"""

from __future__ import annotations

import argparse
import time

import torch

from spatial_restore.archs import SpatialMambaUNet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scans", nargs="+", default=["row", "row,col,row_reverse,col_reverse"])
    args = p.parse_args()
    nets = {s: SpatialMambaUNet.from_preset("small", scans=s.split(",")).eval() for s in args.scans}
    x = torch.rand(1, 3, args.size, args.size)
    times: dict[str, list[float]] = {s: [] for s in nets}
    with torch.inference_mode():
        for net in nets.values():
            net(x)  # warm-up
        for _ in range(args.rounds):
            for scans, net in nets.items():
                start = time.perf_counter()
                net(x)
                times[scans].append(time.perf_counter() - start)
    for scans, ts in times.items():
        print(f"{scans}: " + " / ".join(f"{t:.2f}" for t in ts) + f" s (median {sorted(ts)[len(ts) // 2]:.2f})")


if __name__ == "__main__":
    main()
