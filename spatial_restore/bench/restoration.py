"""SpatialMambaUNet presets on a GPU: inference latency/peak memory per size and dtype, training-step speed.

Inference: batch 1 at each size, fp32 and bf16 autocast, timed with CUDA events over ``--iters`` runs
after ``--warmup``; peak memory is torch.cuda.max_memory_allocated over the timed runs (weights
included). Training: 128^2 crops, batch 8, bf16 autocast, L1 loss, backward, AdamW step (what
RestorationModel does, without EMA and data loading). Sizes that run out of memory are reported as OOM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from .. import kernels
from ..archs import UNET_PRESETS, SpatialMambaUNet

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def cuda_time(step: Callable[[], None], warmup: int, iters: int) -> tuple[float, float]:
    """(milliseconds per step by CUDA events, peak GiB) over ``iters`` steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters, torch.cuda.max_memory_allocated() / 2**30


def measure_or_oom(step: Callable[[], None], warmup: int, iters: int) -> dict:
    try:
        ms, gib = cuda_time(step, warmup, iters)
        return {"ms": round(ms, 2), "peak_gib": round(gib, 2)}
    except torch.cuda.OutOfMemoryError:
        return {"ms": None, "peak_gib": None, "error": "OOM"}
    finally:
        torch.cuda.empty_cache()


def bench_preset(name: str, sizes: list[int], warmup: int, iters: int) -> dict:
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset(name).cuda()
    result = {"preset": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
              "inference": [], "train": None}
    model.eval()
    for size in sizes:
        x = torch.rand(1, 3, size, size, device="cuda")
        for label, dtype in DTYPES.items():

            @torch.inference_mode()
            def infer(x=x, dtype=dtype):
                with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                    model(x)

            result["inference"].append({"size": size, "dtype": label, **measure_or_oom(infer, warmup, iters)})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lq, gt = torch.rand(8, 3, 128, 128, device="cuda"), torch.rand(8, 3, 128, 128, device="cuda")

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(lq)
        F.l1_loss(out.float(), gt).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train = measure_or_oom(train_step, warmup, iters)
    train["it_per_s"] = round(1000 / train["ms"], 2) if train["ms"] else None
    result["train"] = train
    return result


def markdown(results: list[dict], sizes: list[int]) -> str:
    head = ["preset", "params (M)"] + [f"{s}² {d} ms / GiB" for s in sizes for d in DTYPES] + ["train 128²×8 bf16 it/s / GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["preset"], f"{r['params_m']:.2f}"]
        for row in r["inference"]:
            cells.append("OOM" if row["ms"] is None else f"{row['ms']:.1f} / {row['peak_gib']:.2f}")
        t = r["train"]
        cells.append("OOM" if t["ms"] is None else f"{t['it_per_s']:.2f} / {t['peak_gib']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m spatial_restore.bench restoration", description=__doc__)
    p.add_argument("--presets", nargs="+", choices=sorted(UNET_PRESETS), default=["tiny", "small", "base"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench restoration needs a CUDA GPU: it measures GPU latency and memory (CUDA events)")

    torch.backends.cudnn.benchmark = True
    results = [bench_preset(name, args.sizes, args.warmup, args.iters) for name in args.presets]
    header = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "sasf_backend": kernels.last_backend(), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"# SpatialMambaUNet presets: {header['device']}, torch {header['torch']}, SASF backend "
          f"{header['sasf_backend']}, {header['when']} (batch 1 inference; ms per image / peak GiB)")
    print(markdown(results, args.sizes))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**header, "results": results}, f, indent=2)
