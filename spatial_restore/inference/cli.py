"""Command line of ``inference.py``: parse, load the model once, restore every input, report.

Exit codes: 0 every input restored; 1 at least one input failed (each failure printed on one line);
2 nothing was run (bad options, unusable model, or an output folder that holds inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.blur import BLUR_SPECS, kernel_from_spec
from ..image_io import write_atomically
from ..metrics import lpips_unavailable
from .batch import Job, Options, expand_inputs, format_table, mean_metrics, plan_outputs, process
from .restorer import AUTO_TILE, CPU_TILE_MAX, ENSEMBLE_VIEWS, PRECISIONS, Restorer, pick_device


def ensemble_views(text: str) -> int:
    """--self-ensemble's N; says what to do when an input path landed there (``--self-ensemble a.png``)."""
    if text.isdigit() and int(text) in ENSEMBLE_VIEWS:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"N must be one of {', '.join(map(str, ENSEMBLE_VIEWS))}, got {text!r} (before the inputs, write "
        "--self-ensemble 8 for the 8 views)")


def blur_spec(text: str) -> str:
    """--add-blur's spec, checked at parse time (the kernel is made later, from --seed)."""
    try:
        kernel_from_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference.py",
        description="Restore images with a SpatialMambaUNet model (default: the shipped blind colour denoiser). "
                    "Each input is written to OUTDIR/<name>.png with its bit depth, grey/colour and alpha kept.",
        epilog="An input whose name starts with '-' goes after '--' (inference.py -o out/ -- -x.png) or as "
               "./-x.png. An animated GIF: its first frame is restored (a note says so).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                        help="output folder (created; must not be a folder holding inputs)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files in OUTDIR (default: refuse)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write per-image results and means as JSON")
    parser.add_argument("--model", default="default",
                        help="shipped model: 'default' (blind colour denoiser, sigma 0-50) or 'deblur' (blind "
                             "deblurrer of uniform camera shake, linear motion and defocus); or a .safetensors/"
                             ".json path (card beside it), or a basicsr checkpoint .pth (default: %(default)s)")
    parser.add_argument("--task", help="task to run when the model card offers several")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: %(default)s")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="default: %(default)s")
    parser.add_argument("--tile", type=int, metavar="N",
                        help="process images larger than N pixels on a side in tiles of at most NxN (as few "
                             "as N allows, each as small as covers the image); 0 disables (default: "
                             f"{AUTO_TILE} on a GPU; on the CPU images up to 512x512 whole, larger ones in tiles "
                             f"of {CPU_TILE_MAX}, less where little memory is free)")
    parser.add_argument("--tile-overlap", type=int, default=64, metavar="N",
                        help="overlap between tiles, blended with linear ramps (default: %(default)s)")
    parser.add_argument("--gt", type=Path, metavar="PATH",
                        help="ground truth: a file (one input) or a folder matched by file name without "
                             "extension; adds PSNR/SSIM (and LPIPS when its weights are present)")
    parser.add_argument("--add-noise", type=float, metavar="SIGMA",
                        help="add Gaussian noise of SIGMA (0-255 scale) to each input first; "
                             "without --gt the clean input is the ground truth")
    parser.add_argument("--add-blur", type=blur_spec, metavar="KIND:SIZE",
                        help=f"blur each input first (before --add-noise), to try --model deblur on sharp photos: "
                             f"{BLUR_SPECS} (odd sizes, px); without --gt the sharp input is the ground truth")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the noise and of a trajectory blur, the same for each image (default: %(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also write OUTDIR/compare/<name>.png: input | output | ground truth")
    parser.add_argument("--self-ensemble", nargs="?", const=8, default=1, type=ensemble_views, metavar="N",
                        help="average the network over N flips/rotations: 2 (a half turn), 4 (the quarter "
                             "turns) or 8 (also flipped; N's default); N times slower, usually a little better")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network (CUDA only): each new image/tile size first compiles "
                             "(about a minute); since the fused kernels it runs about as fast as the eager "
                             "network at 1024x1024, so --cuda-graph usually serves better")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="replay the network as CUDA graphs (CUDA only; not with --compile): captured once "
                             "per tile/image size, then replayed without the per-kernel launch cost of "
                             "eager PyTorch; pays off on tiled images and batches")
    parser.add_argument("--no-keep-grey", dest="keep_grey", action="store_false",
                        help="keep the output's colour even when the input's channels hold one grey picture "
                             "(by default such an output is averaged to grey, as for a grey file)")
    return parser


def check_results_file(path: Path, jobs: list[Job], gt: Path | None) -> None:
    """Before any work: the --json file must not be an input, ground truth or an output, and its folder must take it.

    Raises ValueError (one line) otherwise; creates the folder, as outputs' folders are created.
    """
    target = path.resolve()
    if gt is not None and gt.is_file() and gt.resolve() == target:
        raise ValueError(f"--json {path} is the ground truth: name a separate results file")
    for job in jobs:
        if job.path is not None and job.path.resolve() == target:
            raise ValueError(f"--json {path} is an input image: name a separate results file")
        if target in (job.output, job.compare):
            raise ValueError(f"--json {path} is where {job.source}'s restored image goes: name a separate results file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--json {path}: cannot create its folder ({err.strerror or err})") from err
    if not os.access(target.parent, os.W_OK):
        raise ValueError(f"--json {path}: its folder {target.parent} is not writable")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tile or 0) < 0 or args.tile_overlap < 0 or (args.tile and args.tile_overlap >= args.tile):
        parser.error("need --tile >= 0 and 0 <= --tile-overlap < --tile")
    if args.add_noise is not None and args.add_noise < 0:
        parser.error("--add-noise must be >= 0")
    if args.gt is not None and not args.gt.exists():
        parser.error(f"--gt {args.gt}: no such file or folder")
    if args.compile and args.cuda_graph:
        parser.error("--compile and --cuda-graph exclude each other: pick one")
    if args.json is not None and args.json.is_dir():
        parser.error(f"--json {args.json} is a folder: name the results file, e.g. {args.json / 'results.json'}")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"--json {args.json} exists (pass --overwrite to replace it)")

    def log(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    import cv2

    from ..weights import load_model

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # errors only: unreadable files get our own one-line message instead of codec warnings
    jobs = expand_inputs(args.inputs, log)
    try:
        device = pick_device(args.device)
        if args.precision == "fp16" and device.type == "cpu":
            raise ValueError("--precision fp16 on the CPU: PyTorch emulates half-precision arithmetic there, many "
                             "times slower than fp32 (use fp32, or bf16 on CPUs with bf16 instructions)")
        if args.compile and device.type != "cuda":
            raise ValueError("--compile is for CUDA devices: on the CPU, compiling the reference scan takes "
                             "longer than it saves (over 7 minutes for a 512x512 image)")
        if args.cuda_graph and device.type != "cuda":
            raise ValueError("--cuda-graph is for CUDA devices: a CUDA graph replays recorded GPU kernel launches")
        model, card = load_model(args.model, args.task)
        add_blur = None if args.add_blur is None else kernel_from_spec(args.add_blur, args.seed)
        options = Options(gt=args.gt, add_noise=args.add_noise, add_blur=add_blur, seed=args.seed, compare=args.compare,
                          overwrite=args.overwrite, stride=card.stride)
        plan_outputs(jobs, args.output, options)
        if args.json is not None:
            check_results_file(args.json, jobs, args.gt)
    except Exception as err:  # any setup failure (model, device, output folder) ends here, in one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    tile = "auto" if args.tile is None else args.tile or None
    restorer = Restorer(model, device, args.precision, tile, args.tile_overlap, args.self_ensemble,
                        card.stride, card.in_channels, compile=args.compile, keep_grey=args.keep_grey,
                        cuda_graph=args.cuda_graph)
    if args.gt is not None or args.add_noise or args.add_blur:
        reason = lpips_unavailable()
        if reason:
            options.lpips = False
            log(f"note: LPIPS skipped for all images: {reason}")
    log(f"model: {card.arch} ({card.preset or 'custom'}), task {card.task}, on {device} in {args.precision}")
    records = []
    for job in tqdm(jobs, desc="restoring", unit="img", file=sys.stderr, disable=None):
        record = process(job, restorer, options, single=len(jobs) == 1, log=log)
        if record["status"] != "ok":
            log(f"error: {job.source}: {record['message']}")
        records.append(record)
    means = mean_metrics(records)
    failed = sum(r["status"] != "ok" for r in records)
    if any(r.get("psnr") is not None for r in records):
        print(format_table(records, means))
    print(f"{len(records) - failed} of {len(records)} image(s) restored into {args.output}"
          + (f"; {failed} failed" if failed else ""))
    if args.json:
        report = {"model": card.summary(), "settings": {k: str(v) if isinstance(v, Path) else v
                                                        for k, v in vars(args).items()},
                  "device": str(device), "images": records, "mean": means, "failed": failed}
        write_atomically(args.json, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return 1 if failed else 0
