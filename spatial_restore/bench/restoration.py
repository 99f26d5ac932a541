"""SpatialMambaUNet presets on a GPU: inference latency/peak memory per size and dtype, training-step speed.

Inference: batch 1 at each size, fp32 and/or bf16 autocast, timed with CUDA events over ``--iters`` runs
after ``--warmup``; peak memory is torch.cuda.max_memory_allocated over the timed runs (weights
included). Training: crops of each ``--train-crops`` size, batch ``--batch``, bf16 autocast, L1 loss,
backward, AdamW step (what RestorationModel does, without EMA and data loading). Sizes that run out of
memory are reported as OOM. ``--profile`` adds, per preset and size, GPU time per op class
(torch.profiler) for one bf16 forward and one training step. ``--cuda-graph`` times the inference rows
through ``spatial_restore.inference.cuda_graph.GraphedForward`` (what ``inference.py --cuda-graph`` runs:
captured in the first warm-up call, then replayed, each output cloned); ``--train-cuda-graph`` times the
training rows with forward and backward replayed as CUDA graphs (``graphed_for_training``; the AdamW step
stays eager).
``--no-fuse-dwconv`` builds the networks with ``fuse_dwconv=False`` (torch's depthwise convs and elementwise
ops instead of the fused Triton dwconv kernels), for A/B runs; every row records which it was.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from .. import kernels
from ..archs import UNET_PRESETS, SpatialMambaUNet
from ..inference.cuda_graph import GraphedForward

DTYPES = {"fp32": None, "bf16": torch.bfloat16}

# GPU kernel name -> op class, first match wins (names as CUDA/cuDNN/Triton/inductor emit them).
OP_CLASSES: list[tuple[str, re.Pattern]] = [
    ("sasf", re.compile(r"_fwd_scan|_fwd_fuse|_bwd_scan|_bwd_fuse|_bwd_border|_carry_kernel|sasf", re.I)),
    ("fused dwconv", re.compile(r"_dwconv_kernel|_dwconv_bwd_kernel", re.I)),
    ("norm", re.compile(r"layer_norm|layernorm|_norm_|_ln_|rms", re.I)),
    ("gemm", re.compile(r"gemm|nvjet|cutlass|sm90_xmma|matmul|wgmma|splitk", re.I)),
    ("conv", re.compile(r"conv|cudnn|implicit|winograd|dgrad|wgrad|fprop|depthwise", re.I)),
    ("copy/permute", re.compile(r"copy|transpose|permute|cat|pad|reflection|replication|shuffle|index", re.I)),
    ("reduce", re.compile(r"reduce|sum", re.I)),
    ("optimizer", re.compile(r"adam|foreach|multi_tensor", re.I)),
    ("elementwise", re.compile(r"elementwise|silu|gelu|mul|add|exp|softplus|triton_poi|vectorized|unrolled", re.I)),
]


def op_class(kernel_name: str) -> str:
    for name, pattern in OP_CLASSES:
        if pattern.search(kernel_name):
            return name
    return "other"


def cuda_time(step: Callable[[], None], warmup: int, iters: int) -> tuple[float, float, float]:
    """(milliseconds per step by CUDA events, peak GiB allocated, peak GiB reserved) over ``iters`` steps
    after ``warmup`` untimed ones. A CUDA graph's intermediates live in its private pool, which the
    allocator counts as reserved but free between replays: for graph replays the reserved peak is the bound."""
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
    return (start.elapsed_time(end) / iters, torch.cuda.max_memory_allocated() / 2**30,
            torch.cuda.max_memory_reserved() / 2**30)


def measure_or_oom(make_step: Callable[[], Callable[[], None]], warmup: int,
                   iters: int) -> tuple[dict, Callable[[], None] | None]:
    """(timing row, the step) of the step ``make_step`` builds; building it (a graph capture, say) runs out of
    memory as the step may, and either gives an OOM row and no step."""
    try:
        step = make_step()
        ms, gib, reserved = cuda_time(step, warmup, iters)
        return {"ms": round(ms, 2), "peak_gib": round(gib, 2), "peak_reserved_gib": round(reserved, 2)}, step
    except torch.cuda.OutOfMemoryError:
        return {"ms": None, "peak_gib": None, "peak_reserved_gib": None, "error": "OOM"}, None
    finally:
        torch.cuda.empty_cache()


def profile_classes(step: Callable[[], None], top: int = 0) -> dict[str, float]:
    """GPU milliseconds per op class in one call of ``step`` (warm), from torch.profiler's kernel events;
    ``top`` > 0 also prints the most expensive kernels with their class."""
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    kernels_ms = []
    for event in prof.key_averages():
        us = getattr(event, "self_device_time_total", 0) or 0
        if us > 0 and event.device_type == torch.autograd.DeviceType.CUDA:
            cls = op_class(event.key)
            totals[cls] = totals.get(cls, 0.0) + us / 1000
            kernels_ms.append((us / 1000, event.count, cls, event.key))
    for ms, count, cls, key in sorted(kernels_ms, reverse=True)[:top]:
        print(f"    {ms:8.3f} ms {count:5d}x {cls:13s} {key[:110]}")
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def graphed_for_training(model: torch.nn.Module, sample: torch.Tensor,
                         autocast_dtype: torch.dtype | None) -> torch.nn.Module:
    """A copy of ``model`` whose forward and backward replay CUDA graphs captured at ``sample``'s shape
    (``torch.cuda.make_graphed_callables``), so a training step pays one launch for each instead of one per
    kernel. Graph capture needs autocast's cache off: run the copy under
    ``torch.autocast(..., cache_enabled=False)`` with the same dtype."""
    graphed = copy.deepcopy(model).train()
    with torch.autocast("cuda", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None,
                        cache_enabled=False):
        return torch.cuda.make_graphed_callables(graphed, (sample,))


def bench_preset(name: str, sizes: list[int], dtypes: list[str], train_crops: list[int], batch: int,
                 warmup: int, iters: int, profile: int | None, compile_mode: str | None, overrides: dict,
                 cuda_graph: bool = False, fuse_dwconv: bool = True, train_cuda_graph: bool = False) -> dict:
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset(name, **overrides, fuse_dwconv=fuse_dwconv).cuda()
    result = {"preset": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
              "overrides": overrides, "compile": compile_mode, "cuda_graph": cuda_graph, "fuse_dwconv": fuse_dwconv,
              "train_cuda_graph": train_cuda_graph, "inference": [], "train": [], "profile": []}
    net = torch.compile(model, mode=None if compile_mode == "default" else compile_mode) if compile_mode else model
    model.eval()
    for size in sizes:
        x = torch.rand(1, 3, size, size, device="cuda")
        for label in dtypes:
            dtype = DTYPES[label]

            def forward(x: torch.Tensor, dtype=dtype) -> torch.Tensor:
                with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                    return net(x)

            run = GraphedForward(forward, max_graphs=1) if cuda_graph else forward

            @torch.inference_mode()
            def infer(x=x, run=run):
                run(x)

            stats, _ = measure_or_oom(lambda infer=infer: infer, warmup, iters)
            row = {"size": size, "dtype": label, "cuda_graph": cuda_graph, "fuse_dwconv": fuse_dwconv, **stats}
            result["inference"].append(row)
            print(f"  {name} infer {size}² {label}: {row}", flush=True)
            if profile is not None and label == "bf16" and row["ms"] is not None:
                result["profile"].append({"what": f"infer {size}² bf16", "ms": profile_classes(infer, profile)})
    model.train()
    for crop in train_crops:
        lq = torch.rand(batch, 3, crop, crop, device="cuda")
        gt = torch.rand(batch, 3, crop, crop, device="cuda")

        def make_train_step(lq=lq, gt=gt) -> Callable[[], None]:
            step_net = graphed_for_training(model, lq, torch.bfloat16) if train_cuda_graph else net
            opt = torch.optim.AdamW(step_net.parameters(), lr=1e-4)

            def train_step():
                with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not train_cuda_graph):
                    out = step_net(lq)
                F.l1_loss(out.float(), gt).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            return train_step

        stats, train_step = measure_or_oom(make_train_step, warmup, iters)
        row = {"crop": crop, "batch": batch, "fuse_dwconv": fuse_dwconv, "cuda_graph": train_cuda_graph, **stats}
        row["it_per_s"] = round(1000 / row["ms"], 2) if row["ms"] else None
        result["train"].append(row)
        print(f"  {name} train {crop}²x{batch}: {row}", flush=True)
        if profile is not None and train_step is not None:
            result["profile"].append({"what": f"train {crop}²x{batch}", "ms": profile_classes(train_step, profile)})
    return result


def _cell(label: str, row: dict) -> str:
    """One table cell: ms for inference rows, it/s for training rows; a graph replay's memory bound is its
    reserved peak (see ``cuda_time``), an eager run's the allocated one."""
    label += " graph" if row.get("cuda_graph") else ""
    if row["ms"] is None:
        return f"{label}: OOM"
    speed = f"{row['it_per_s']:.2f} it/s" if "it_per_s" in row else f"{row['ms']:.1f} ms"
    memory = f"{row['peak_reserved_gib']:.2f} GiB reserved" if row.get("cuda_graph") else f"{row['peak_gib']:.2f} GiB"
    return f"{label}: {speed} / {memory}"


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        cells = [_cell(f"{i['size']}² {i['dtype']}", i) for i in r["inference"]]
        cells += [_cell(f"train {t['crop']}²×{t['batch']}", t) for t in r["train"]]
        label = r["preset"] + ("" if r.get("fuse_dwconv", True) else " (unfused dwconv)")
        lines.append(f"| {label} | {r['params_m']:.2f} M | " + " | ".join(cells) + " |")
        for p in r["profile"]:
            total = sum(p["ms"].values())
            parts = ", ".join(f"{k} {v:.2f}" for k, v in p["ms"].items())
            lines.append(f"|   profile {p['what']} (GPU ms, total {total:.2f}) | {parts} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m spatial_restore.bench restoration", description=__doc__)
    p.add_argument("--presets", nargs="+", choices=sorted(UNET_PRESETS), default=["small", "base"])
    p.add_argument("--sizes", nargs="*", type=int, default=[256, 1024])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["bf16"])
    p.add_argument("--train-crops", nargs="*", type=int, default=[128, 256])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--profile", nargs="?", type=int, const=0, default=None, metavar="TOP",
                   help="GPU time per op class (torch.profiler); TOP > 0 also prints the TOP costliest kernels")
    p.add_argument("--compile", nargs="?", const="default", choices=["default", "max-autotune-no-cudagraphs"],
                   help="torch.compile the network first")
    p.add_argument("--cuda-graph", action="store_true",
                   help="time inference rows as CUDA graph replays (GraphedForward, as inference.py --cuda-graph; "
                        "captured during warm-up); training rows stay eager")
    p.add_argument("--train-cuda-graph", action="store_true",
                   help="time training rows with forward and backward replayed as CUDA graphs (captured once "
                        "per crop; the AdamW step stays eager)")
    p.add_argument("--no-fuse-dwconv", dest="fuse_dwconv", action="store_false",
                   help="build the networks with fuse_dwconv=False: torch's depthwise convs and elementwise ops "
                        "instead of the fused Triton dwconv kernels (A/B)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="SpatialMambaUNet keyword overrides (Python literals), e.g. use_checkpoint=True")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.cuda_graph and args.compile:
        p.error("--cuda-graph and --compile exclude each other (as in inference.py)")
    if args.train_cuda_graph and args.compile:
        p.error("--train-cuda-graph and --compile exclude each other")
    if args.cuda_graph and args.warmup < 1:
        p.error("--cuda-graph needs --warmup >= 1: the graph is captured in the first warm-up call")
    if not torch.cuda.is_available():
        sys.exit("bench restoration needs a CUDA GPU: it measures GPU latency and memory (CUDA events)")
    import ast

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = ast.literal_eval(value)
    if "fuse_dwconv" in overrides:
        p.error("choose the dwconv fusion with --no-fuse-dwconv, not --set fuse_dwconv=...")
    torch.backends.cudnn.benchmark = True
    results = [bench_preset(name, args.sizes, args.dtypes, args.train_crops, args.batch, args.warmup, args.iters,
                            args.profile, args.compile, overrides, args.cuda_graph, args.fuse_dwconv,
                            args.train_cuda_graph)
               for name in args.presets]
    header = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda_graph": args.cuda_graph,
              "fuse_dwconv": args.fuse_dwconv,
              "sasf_backend": kernels.resolve_backend(None, torch.device("cuda"), torch.bfloat16), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"# SpatialMambaUNet presets: {header['device']}, torch {header['torch']}, SASF backend "
          f"{header['sasf_backend']}, {header['when']} (batch 1 inference"
          f"{', CUDA graph replays' if args.cuda_graph else ''}"
          f"{'' if args.fuse_dwconv else ', dwconv fusion off'}; ms per image / peak GiB)")
    print(markdown(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**header, "results": results}, f, indent=2)
