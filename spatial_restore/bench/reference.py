"""Time the pure-PyTorch SASF core op (forward, optionally backward) on the CPU or a GPU."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import torch

from ..kernels import sasf_core_ref


def random_inputs(b: int, d: int, h: int, w: int, device: str, dtype: torch.dtype, seed: int = 0) -> tuple:
    g = torch.Generator(device="cpu").manual_seed(seed)
    length = h * w

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    return (r(b, d, length), r(b, d, length), -torch.rand(d, 1, generator=g).to(device) - 0.1,
            r(b, 1, length), r(b, 1, length), r(d), r(d), r(3, d, 3, 3, scale=0.3), r(3), h, w)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m spatial_restore.bench reference", description=__doc__)
    p.add_argument("--shape", type=int, nargs=4, default=[1, 96, 512, 512], metavar=("B", "D", "H", "W"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "float64", "bfloat16"], default="float32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    args = p.parse_args(argv)
    b, d, h, w = args.shape
    inputs = random_inputs(b, d, h, w, args.device, getattr(torch, args.dtype))
    tensors = [x.requires_grad_(args.backward) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
               for x in inputs]

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def step():
        with torch.set_grad_enabled(args.backward):
            y = sasf_core_ref(*tensors)
            if args.backward:
                y.sum().backward()
        sync()

    step()  # warm-up: allocator, thread pool
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    what = "fwd+bwd" if args.backward else "fwd"
    print(f"| date | device | threads | shape (B,D,H,W) | dtype | {what} median s | min s |")
    print("|---|---|---|---|---|---|---|")
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"| {date.today()} | {device} | {torch.get_num_threads()} | {tuple(args.shape)} | {args.dtype} "
          f"| {statistics.median(times):.3f} | {min(times):.3f} |")


if __name__ == "__main__":
    main()
