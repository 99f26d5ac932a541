"""`python -m spatial_restore.bench quality`: Gaussian denoising quality, ours vs CBM3D vs NLM.

Literature convention: the clean image as float in [0, 1], plus N(0, sigma/255) drawn from a generator
seeded 0 for each image, without clipping. Each method's output is clipped to [0, 1]; PSNR/SSIM are
computed on float RGB (no quantisation, no border crop) and averaged over the images.
- noisy: the input itself.
- NLM: OpenCV ``fastNlMeansDenoisingColored`` needs uint8, so it gets the noisy image clipped and
  rounded; h = hColor = 0.7 sigma (best of 0.5/0.7/0.9/1.1 sigma on crops of train photos, never val).
- CBM3D: PyPI ``bm3d`` (``bm3d_rgb``) on the unclipped float image, told the true sigma.
- ours: the default model (blind: it is not told sigma), or ``--model``.
- ours_x2, ours_x4, ours_x8 (opt-in, N times the time): the same model averaged over N flips/rotations,
  ``inference.py --self-ensemble N``; it averages out the direction of the network's raster scan.
With ``--grey-files`` every image is desaturated (BT.601) and gets one noise field shared by its three
channels: a noisy grey file as a colour network reads it. NLM and CBM3D then run on the one grey channel
(``fastNlMeansDenoising``, ``bm3d.bm3d``), as their colour versions would take the shared noise for a
third of its strength.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..data.restoration_dataset import grey_rgb
from ..image_io import IMAGE_SUFFIXES, ImageReadError, read_image
from ..noise import add_gaussian_noise
from ..paths import shared_dir

NLM_H_PER_SIGMA = 0.7
OUR_METHODS = {"ours": 1, "ours_x2": 2, "ours_x4": 4, "ours_x8": 8}  # run by our model: self-ensemble views
METHODS = ("noisy", "nlm", "cbm3d", *OUR_METHODS)
DEFAULT_METHODS = METHODS[:4]
OUR_LABELS = {m: "ours (blind)" if n == 1 else f"ours (blind, ×{n} ensemble)" for m, n in OUR_METHODS.items()}
LABELS = {"noisy": "noisy input", "nlm": "NLM (OpenCV)", "cbm3d": "CBM3D (σ known)", **OUR_LABELS}
GREY_LABELS = {**LABELS, "nlm": "NLM (OpenCV, grey)", "cbm3d": "BM3D (σ known)"}  # with --grey-files


def noisy_version(clean: np.ndarray, sigma: float, shared: bool = False) -> np.ndarray:
    """clean (float in [0, 1]) + N(0, sigma/255), seed 0 for every image, not clipped; ``shared``: one
    noise field for all channels (a grey file)."""
    return add_gaussian_noise(clean, sigma, 0, shared_channels=shared)


def nlm(noisy_rgb: np.ndarray, sigma: float, grey: bool = False) -> np.ndarray:
    u8 = np.clip(np.round(noisy_rgb * 255.0), 0, 255).astype(np.uint8)
    h = NLM_H_PER_SIGMA * sigma
    if grey:
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(u8[..., 0]), None, h, 7, 21)
        return np.repeat(out[..., None], 3, axis=2).astype(np.float64) / 255.0
    bgr = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(u8[..., ::-1]), None, h, h, 7, 21)
    return bgr[..., ::-1].astype(np.float64) / 255.0


def cbm3d(noisy_rgb: np.ndarray, sigma: float, grey: bool = False) -> np.ndarray:
    import bm3d

    if grey:
        out = np.asarray(bm3d.bm3d(noisy_rgb[..., 0], sigma / 255.0), dtype=np.float64).reshape(noisy_rgb.shape[:2])
        return np.repeat(out[..., None], 3, axis=2)
    return np.asarray(bm3d.bm3d_rgb(noisy_rgb, sigma / 255.0), dtype=np.float64)


def require_bm3d() -> None:
    """The bench compares against CBM3D; say how to get it rather than silently leaving it out."""
    try:
        import bm3d  # noqa: F401
    except ImportError as err:
        raise SystemExit("the quality bench needs the CBM3D reference: pip install bm3d "
                         "(or pip install -e .[bench]); or leave it out with --methods noisy,nlm,ours") from err


def load_images(folder: Path, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """Clean RGB float64 images in [0, 1], sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    images = []
    for path in files[:limit]:
        try:
            images.append((path.name, read_image(path, np.float64).rgb))
        except ImageReadError as err:
            raise SystemExit(f"cannot read {path}: {err}") from err
    return images


def run(images: list[tuple[str, np.ndarray]], sigmas: list[float], methods: list[str],
        restorers: dict[str, Callable[[np.ndarray], np.ndarray]], grey_files: bool = False) -> dict:
    """{sigma: {method: {"psnr", "ssim", "seconds"} means}} plus per-image values.

    ``restorers`` maps our methods ("ours", "ours_x8", ...) to a float32 HxWx3 -> HxWx3 function.
    """
    from ..metrics import psnr, ssim

    denoisers = {"noisy": lambda x, s: x, "nlm": lambda x, s: nlm(x, s, grey_files),
                 "cbm3d": lambda x, s: cbm3d(x, s, grey_files)}
    for method, restore in restorers.items():
        denoisers[method] = lambda x, s, restore=restore: restore(x.astype(np.float32)).astype(np.float64)
    if grey_files:
        images = [(name, grey_rgb(clean)) for name, clean in images]
    results: dict = {}
    for sigma in sigmas:
        per_method: dict = {}
        for method in methods:
            rows = []
            for name, clean in images:
                noisy = noisy_version(clean, sigma, shared=grey_files)
                start = time.perf_counter()
                out = denoisers[method](noisy, sigma)
                seconds = time.perf_counter() - start
                out = out if method == "noisy" else np.clip(out, 0.0, 1.0)
                rows.append({"image": name, "psnr": psnr(out, clean, data_range=1.0),
                             "ssim": ssim(out, clean, data_range=1.0), "seconds": seconds})
                print(f"sigma {sigma:g} {method:7s} {name}: {rows[-1]['psnr']:.2f} dB", flush=True)
            per_method[method] = {key: float(np.mean([r[key] for r in rows])) for key in ("psnr", "ssim", "seconds")}
            per_method[method]["images"] = rows
        results[f"{sigma:g}"] = per_method
    return results


def table(results: dict, methods: list[str], labels: dict[str, str] = LABELS) -> str:
    """Markdown: one row per sigma, 'PSNR / SSIM' per method."""
    lines = ["| σ | " + " | ".join(labels[m] for m in methods) + " |", "|---:|" + "---:|" * len(methods)]
    for sigma, per_method in results.items():
        cells = [f"{per_method[m]['psnr']:.2f} / {per_method[m]['ssim']:.4f}" for m in methods]
        lines.append(f"| {sigma} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spatial_restore.bench quality", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "data" / "photos" / "val", help="folder of clean images (default: %(default)s)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15, 25, 50], help="default: %(default)s")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--model", default="default", help="our model: shipped name or path (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--limit", type=int, help="use only the first N images (quick runs)")
    parser.add_argument("--tile", type=int, help="our model's tile size, as inference.py --tile "
                        "(default: its default; 0: never tile); overlap 64")
    parser.add_argument("--grey-files", action="store_true",
                        help="desaturate the images and share one noise field over the channels (noisy grey files)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write all numbers as JSON")
    args = parser.parse_args(argv)
    methods = [m for m in METHODS if m in args.methods.split(",")]
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown or not methods:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {','.join(METHODS)}")
    if "cbm3d" in methods:
        require_bm3d()
    images = load_images(args.data, args.limit)
    restorers, model_info = {}, None
    ours = [m for m in methods if m in OUR_METHODS]
    if ours:
        from ..inference.restorer import Restorer, pick_device
        from ..weights import ModelNotFound, load_model

        try:
            model, card = load_model(args.model)
        except ModelNotFound as err:
            raise SystemExit(f"{err}\n(or compare the baselines alone with --methods noisy,nlm,cbm3d)") from err
        device = pick_device(args.device)
        tiling = {} if args.tile is None else {"tile": args.tile or None}
        restorers = {m: Restorer(model, device, args.precision, stride=card.stride, in_channels=card.in_channels,
                                 self_ensemble=OUR_METHODS[m], **tiling) for m in ours}
        model_info = card.summary()
    results = run(images, args.sigmas, methods, restorers, args.grey_files)
    what = "desaturated, noise shared by the channels" if args.grey_files else "colour, noise per channel"
    print(f"\nMean over {len(images)} image(s) of {args.data}, {what} (PSNR dB / SSIM):\n")
    print(table(results, methods, GREY_LABELS if args.grey_files else LABELS))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "images": [n for n, _ in images], "model": model_info,
                                         "nlm_h_per_sigma": NLM_H_PER_SIGMA, "grey_files": args.grey_files,
                                         "tile": args.tile, "device": str(device) if ours else None,
                                         "precision": args.precision, "results": results}, indent=2) + "\n")
