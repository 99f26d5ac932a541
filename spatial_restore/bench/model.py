"""Spatial-Mamba throughput on a GPU: AMP inference and AMP training steps, triton vs reference backend.

Both backends run in the same process on the same weights, switched through the SASF layers' ``backend``
attribute (the process environment is left alone).
A training step is forward, cross-entropy, backward and AdamW; fp16 adds a GradScaler. Images/s come
from CUDA-synchronised wall time over the timed steps (after warm-up); peak memory is
torch.cuda.max_memory_allocated over the timed phase.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from .. import kernels
from ..archs import spatial_mamba
from ..archs.spatial_mamba_arch import StructureAwareSSM


def timed(step, warmup: int, iters: int) -> tuple[float, float]:
    """(seconds per step, peak GiB) over `iters` steps after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters, torch.cuda.max_memory_allocated() / 2**30


def set_backend(model: torch.nn.Module, backend: str) -> None:
    """Every SASF layer of ``model`` runs ``backend`` from its next call on."""
    for module in model.modules():
        if isinstance(module, StructureAwareSSM):
            module.backend = backend


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m spatial_restore.bench model", description=__doc__)
    p.add_argument("--variant", default="T")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--amp-dtype", choices=["bfloat16", "float16"], default="bfloat16")
    p.add_argument("--backends", nargs="+", choices=kernels.BACKENDS, default=["triton", "reference"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench model needs a CUDA GPU: it measures GPU throughput of the backends")

    amp = getattr(torch, args.amp_dtype)
    torch.manual_seed(0)
    model = spatial_mamba(args.variant).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    x = torch.randn(args.batch, 3, args.size, args.size, device="cuda")
    labels = torch.randint(0, 1000, (args.batch,), device="cuda")

    @torch.inference_mode()
    def infer():
        with torch.autocast("cuda", dtype=amp):
            model(x)

    def train():
        with torch.autocast("cuda", dtype=amp):
            loss = F.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    device = torch.cuda.get_device_name()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_params = sum(q.numel() for q in model.parameters())
    print(f"# Spatial-Mamba-{args.variant} ({n_params / 1e6:.2f}M params), {args.size}x{args.size}, batch {args.batch}, "
          f"AMP {args.amp_dtype}: {device}, {when}, torch {torch.__version__}")
    print("| backend | inference img/s | inference peak GiB | train step img/s | train peak GiB |")
    print("|---|---|---|---|---|")
    rows = []
    for backend in args.backends:
        set_backend(model, backend)
        row = {"backend": backend}
        for name, step in (("inference", infer), ("train", train)):
            model.train(name == "train")
            try:
                sec, peak = timed(step, args.warmup, args.iters)
                row[name] = {"img_per_s": args.batch / sec, "peak_GiB": peak}
            except torch.OutOfMemoryError:
                row[name] = None
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        if kernels.last_backend() != backend:
            raise RuntimeError(f"asked for backend {backend!r}, the op ran {kernels.last_backend()!r}")
        cells = [f"{row[n]['img_per_s']:.0f} | {row[n]['peak_GiB']:.1f}" if row[n] else "OOM | -"
                 for n in ("inference", "train")]
        print(f"| {backend} | {cells[0]} | {cells[1]} |", flush=True)
        rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "date": when, "variant": args.variant, "batch": args.batch,
                       "size": args.size, "amp": args.amp_dtype, "rows": rows}, f, indent=1)
