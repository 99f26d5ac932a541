"""Triton vs reference SASF core op on a GPU: time, effective bandwidth, extra memory, speed-up.

Times are medians of CUDA-event timings (triton.testing.do_bench, which also flushes L2 between
runs). Effective GB/s counts the fewest bytes the op must move (every input read once, every output
written once, docs/kernels.md) over the time; it is set against a device-to-device copy measured in
the same run. Extra peak memory is the peak during one call above what was allocated before it
(inputs, and dy for fwd+bwd).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

import torch

from ..kernels import resolve_backend, sasf_core_ref

SHAPES = ((128, 128, 56, 56), (8, 96, 256, 256), (1, 96, 1024, 1024))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ACTIVATIONS = ("u", "delta", "B", "C")


def core_inputs(b: int, d: int, height: int, width: int, dtype: torch.dtype, seed: int = 0) -> dict:
    """Random inputs on the GPU: activations in dtype, parameters in float32 (as the model passes them)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    length = height * width

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device="cuda") * scale

    x = {"u": r(b, d, length), "delta": r(b, d, length) - 1.0, "A": -torch.exp(r(d, 1, scale=0.5)),
         "B": r(b, 1, length), "C": r(b, 1, length), "Dskip": r(d), "dt_bias": r(d, scale=0.5),
         "fusion_kernels": r(3, d, 3, 3, scale=0.3), "alpha": r(3)}  # fmt: skip
    return {k: v.to(dtype if k in ACTIVATIONS else torch.float32) for k, v in x.items()}


def min_bytes(b: int, d: int, length: int, dtype: torch.dtype, backward: bool) -> int:
    """Compulsory HBM traffic: u, delta, B, C in; y (fp32) out; backward adds dy in, grads out."""
    e = torch.finfo(dtype).bits // 8
    fwd = 2 * b * d * length * e + 2 * b * length * e + 4 * b * d * length
    bwd = 2 * b * d * length * e + 2 * b * length * e + 4 * b * d * length + 2 * b * d * length * e + 2 * b * length * e
    return fwd + (bwd if backward else 0)


def copy_bandwidth(nbytes: int = 2**30) -> float:
    """Device-to-device copy, bytes read + written per second."""
    from triton.testing import do_bench

    src = torch.empty(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), quantiles=[0.5])
    return 2 * nbytes / (ms * 1e-3)


def measure(fn, inputs: dict, height: int, width: int, backward: bool) -> tuple[float, int]:
    """(median ms, extra peak bytes) of fn(*inputs) [+ backward]."""
    from triton.testing import do_bench

    args = [v.requires_grad_(backward) for v in inputs.values()]
    dy = torch.randn(args[0].shape, device="cuda") if backward else None

    def run():
        y = fn(*args, height, width)
        if backward:
            y.backward(dy)

    def reset_grads():
        for a in args:
            a.grad = None

    run()
    reset_grads()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    reset_grads()
    ms = do_bench(run, grad_to_none=args if backward else None, quantiles=[0.5])
    return ms, peak


def profile(fn, inputs: dict, height: int, width: int) -> str:
    """Per-kernel device time of one forward + backward (torch.profiler), as markdown rows."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    args = [v.requires_grad_() for v in inputs.values()]
    dy = torch.randn(args[0].shape, device="cuda")
    fn(*args, height, width).backward(dy)  # compile outside the profile
    for a in args:
        a.grad = None  # else the profiled backward also accumulates into .grad
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(*args, height, width).backward(dy)
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
    return "\n".join(f"| {e.key[:60]} | {e.count} | {e.device_time_total / 1e3:.3f} |" for e in events[:12])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m spatial_restore.bench kernels", description=__doc__)
    p.add_argument("--shapes", nargs="+", default=[",".join(map(str, s)) for s in SHAPES],
                   help="B,D,H,W shapes (default: the three benchmark shapes)")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["float32", "bfloat16"])
    p.add_argument("--config", action="append", default=[], metavar="KEY=VAL,...",
                   help="extra Triton tile configs to time, e.g. scan_rows=8,scan_block=512 (repeatable)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference rows (no speed-up column)")
    p.add_argument("--profile", action="store_true", help="also print per-kernel times of the default config")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench kernels needs a CUDA GPU: it times the Triton kernels against the reference on the device")
    from ..kernels.triton_sasf import DEFAULT_CONFIG, TritonConfig, sasf_core_triton

    configs = {"default": DEFAULT_CONFIG}
    for spec in args.config:
        kw = {k: (None if v == "None" else int(v)) for k, v in (item.split("=") for item in spec.split(","))}
        configs[spec] = TritonConfig(**kw)

    device = torch.cuda.get_device_name()
    copy_bw = copy_bandwidth()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# SASF core op: {device}, {when}, torch {torch.__version__}, "
          f"triton {__import__('triton').__version__}, auto backend on cuda: {resolve_backend(None, torch.device('cuda'))}")
    print(f"device-to-device copy: {copy_bw / 1e9:.0f} GB/s (read + write)\n")
    print("| shape (B,D,H,W) | dtype | impl | fwd ms | fwd GB/s (% copy) | fwd extra MiB "
          "| fwd+bwd ms | fwd+bwd GB/s (% copy) | fwd+bwd extra MiB | speed-up fwd / fwd+bwd |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for spec in args.shapes:
        b, d, height, width = map(int, spec.split(","))
        length = height * width
        for dname in args.dtypes:
            dtype = DTYPES[dname]
            impls = {f"triton[{name}]": (lambda *a, c=cfg: sasf_core_triton(*a, config=c)) for name, cfg in configs.items()}
            if not args.no_reference:
                impls["reference"] = sasf_core_ref
            results = {}
            for impl, fn in impls.items():
                res = {}
                for backward in (False, True):
                    key = "fwd+bwd" if backward else "fwd"
                    try:
                        ms, peak = measure(fn, core_inputs(b, d, height, width, dtype), height, width, backward)
                    except torch.OutOfMemoryError:
                        res[key] = None
                        torch.cuda.empty_cache()
                        continue
                    gbs = min_bytes(b, d, length, dtype, backward) / (ms * 1e-3) / 1e9
                    res[key] = {"ms": ms, "GB/s": gbs, "copy_frac": gbs * 1e9 / copy_bw, "extra_MiB": peak / 2**20}
                    torch.cuda.empty_cache()
                results[impl] = res
            ref = results.get("reference", {})
            for impl, res in results.items():
                cells = []
                for key in ("fwd", "fwd+bwd"):
                    r = res[key]
                    cells += (["OOM", "", ""] if r is None else
                              [f"{r['ms']:.3f}", f"{r['GB/s']:.0f} ({100 * r['copy_frac']:.0f}%)", f"{r['extra_MiB']:.0f}"])
                speed = [f"{ref[k]['ms'] / res[k]['ms']:.1f}x" if ref.get(k) and res[k] else "-" for k in ("fwd", "fwd+bwd")]
                print(f"| {b},{d},{height},{width} | {dname} | {impl} | " + " | ".join(cells) + f" | {' / '.join(speed)} |",
                      flush=True)
                rows.append({"shape": [b, d, height, width], "dtype": dname, "impl": impl, **res})
    if args.profile:
        for spec in args.shapes:
            b, d, height, width = map(int, spec.split(","))
            for dname in args.dtypes:
                print(f"\nper-kernel device time, triton[default] fwd+bwd, {spec} {dname}\n| kernel | calls | ms |\n|---|---|---|")
                print(profile(sasf_core_triton, core_inputs(b, d, height, width, DTYPES[dname]), height, width))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "date": when, "torch": torch.__version__, "copy_GBps": copy_bw / 1e9,
                       "rows": rows}, f, indent=1)
