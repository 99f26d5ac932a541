"""Triton vs reference SASF core op on a GPU: time, effective bandwidth, extra memory, speed-up.

Times are medians of CUDA-event timings (triton.testing.do_bench, which also flushes L2 between
runs). Effective GB/s counts the fewest bytes the op must move (every input read once, every output
written once, docs/kernels.md) over the time; it is set against a device-to-device copy measured in
the same run. Extra peak memory is the peak during one call above what was allocated before it
(inputs, and dy for fwd+bwd).

``--layout channels-last`` times u and delta in the network's (b, L, d) memory, which the op reads with
its channels-last tiles; ``--sweep`` adds a grid of scan and stencil tiles around that layout's default
and ends with the best of each per shape, to choose the defaults by measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import datetime, timezone

import torch

from ..kernels import resolve_backend, sasf_core_ref

SHAPES = ((128, 128, 56, 56), (8, 96, 256, 256), (1, 96, 1024, 1024))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ACTIVATIONS = ("u", "delta", "B", "C")
LAYOUTS = ("channels-first", "channels-last")
SWEEP_TILES = ((8, 256), (16, 128), (16, 256), (32, 32), (32, 64), (32, 128), (64, 32), (64, 64), (128, 32))
SWEEP_WARPS = (2, 8)  # warps per program at the base tiles: fewer registers per thread at 8
SWEEP_FUSE_WIDTHS = (8, 32, 64)  # columns of a stencil tile of the base positions: narrow ones lie inside the image more often


def core_inputs(b: int, d: int, height: int, width: int, dtype: torch.dtype, seed: int = 0,
                channels_last: bool = False, device: str = "cuda") -> dict:
    """Random inputs: activations in dtype, parameters in float32 (as the model passes them). u and delta
    are (b, d, L); with ``channels_last`` they are views of (b, L, d) memory, as the network hands them over."""
    g = torch.Generator(device=device).manual_seed(seed)
    length = height * width

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device=device) * scale

    def seq():
        return r(b, length, d).transpose(1, 2) if channels_last else r(b, d, length)

    x = {"u": seq(), "delta": seq() - 1.0, "A": -torch.exp(r(d, 1, scale=0.5)),
         "B": r(b, 1, length), "C": r(b, 1, length), "Dskip": r(d), "dt_bias": r(d, scale=0.5),
         "fusion_kernels": r(3, d, 3, 3, scale=0.3), "alpha": r(3)}  # fmt: skip
    return {k: v.to(dtype if k in ACTIVATIONS else torch.float32) for k, v in x.items()}


def sweep_configs(base):
    """Configs around ``base`` (a TritonConfig): each (channels, positions) tile of SWEEP_TILES for the scan
    with the base stencil tile, then for the stencil with the base scan tile, then the base stencil tile
    shaped by each of SWEEP_FUSE_WIDTHS, then the base tiles with each of SWEEP_WARPS; base itself left out."""
    configs = [replace(base, scan_rows=r, scan_block=n) for r, n in SWEEP_TILES]
    configs += [replace(base, fuse_rows=r, fuse_block=n) for r, n in SWEEP_TILES]
    configs += [replace(base, fuse_width=w) for w in SWEEP_FUSE_WIDTHS]
    configs += [replace(base, num_warps=w) for w in SWEEP_WARPS]
    return [c for c in configs if c != base]


def config_name(cfg) -> str:
    """A config in the --config syntax (``parse_config`` rebuilds it)."""
    return ",".join(f"{k}={v}" for k, v in vars(cfg).items())


def parse_config(spec: str):
    """A TritonConfig from the --config syntax, e.g. scan_rows=8,scan_block=512 (chunk_len=None allowed)."""
    from ..kernels.triton_sasf import TritonConfig

    kw = {k: (None if v == "None" else int(v)) for k, v in (item.split("=") for item in spec.split(","))}
    return TritonConfig(**kw)


def best_rows(rows: list[dict]) -> list[dict]:
    """Per shape and dtype, the fastest Triton config for fwd and for fwd+bwd, and its ratio to the default."""
    out = []
    for key in dict.fromkeys((tuple(r["shape"]), r["dtype"]) for r in rows):
        group = [r for r in rows if (tuple(r["shape"]), r["dtype"]) == key and r["impl"].startswith("triton")]
        default = next(r for r in group if r["impl"] == "triton[default]")
        best = {"shape": list(key[0]), "dtype": key[1]}
        for phase in ("fwd", "fwd+bwd"):
            timed = [r for r in group if r.get(phase)]
            if not timed or not default.get(phase):
                continue
            fastest = min(timed, key=lambda r: r[phase]["ms"])
            best[phase] = {"impl": fastest["impl"], "ms": fastest[phase]["ms"],
                           "default_ms": default[phase]["ms"], "speedup": default[phase]["ms"] / fastest[phase]["ms"]}
        out.append(best)
    return out


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
    p.add_argument("--layout", choices=LAYOUTS, default="channels-first",
                   help="memory of u and delta: (b, d, L) or the network's (b, L, d) (default: %(default)s)")
    p.add_argument("--sweep", action="store_true",
                   help="also time a grid of scan and stencil tiles around the layout's default config")
    p.add_argument("--no-reference", action="store_true", help="skip the reference rows (no speed-up column)")
    p.add_argument("--profile", action="store_true", help="also print per-kernel times of the default config")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench kernels needs a CUDA GPU: it times the Triton kernels against the reference on the device")
    from ..kernels.triton_sasf import CHANNELS_LAST_CONFIG, DEFAULT_CONFIG, sasf_core_triton

    channels_last = args.layout == "channels-last"
    base = CHANNELS_LAST_CONFIG if channels_last else DEFAULT_CONFIG
    configs = {"default": base}
    configs.update((spec, parse_config(spec)) for spec in args.config)
    if args.sweep:
        configs.update((config_name(c), c) for c in sweep_configs(base))

    device = torch.cuda.get_device_name()
    copy_bw = copy_bandwidth()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# SASF core op: {device}, {when}, torch {torch.__version__}, "
          f"triton {__import__('triton').__version__}, auto backend on cuda: {resolve_backend(None, torch.device('cuda'))}, "
          f"{args.layout} inputs, default config {config_name(base)}")
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
                        inputs = core_inputs(b, d, height, width, dtype, channels_last=channels_last)
                        ms, peak = measure(fn, inputs, height, width, backward)
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
                inputs = core_inputs(b, d, height, width, DTYPES[dname], channels_last=channels_last)
                print(profile(sasf_core_triton, inputs, height, width))
    best = best_rows(rows)
    if args.sweep:
        print("\n| shape | dtype | fastest fwd (x default) | fastest fwd+bwd (x default) |\n|---|---|---|---|")
        for r in best:
            cells = [f"{r[k]['impl']} {r[k]['ms']:.3f} ms ({r[k]['speedup']:.2f}x)" if k in r else "-"
                     for k in ("fwd", "fwd+bwd")]
            print(f"| {','.join(map(str, r['shape']))} | {r['dtype']} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "date": when, "torch": torch.__version__, "copy_GBps": copy_bw / 1e9,
                       "layout": args.layout, "default_config": config_name(base), "rows": rows, "best": best},
                      f, indent=1)
