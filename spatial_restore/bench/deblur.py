"""`python -m spatial_restore.bench deblur`: blind deblurring of synthetic camera blur, ours vs Wiener and RL.

Pairs: a validation set of ``options/train/deblur_synthetic.yml`` (``--dataset``, default ``val``: the 4
val photos, each blurred by every kernel of the fixed seeded set, noise and 8-bit rounding as in
training; ``spatial_restore/data/blur.py``). PSNR/SSIM on float RGB against the clean target, no border crop.
- blurred: the input itself.
- Wiener: scikit-image ``restoration.wiener`` per channel, *given the true kernel*, its balance chosen per
  image from ``WIENER_BALANCES`` by the ground truth (an oracle a blind method does not have).
- RL: scikit-image ``restoration.richardson_lucy``, given the true kernel, its iteration count chosen per
  image from ``RL_ITERATIONS`` by the ground truth.
  Both get the blurred image mirrored out and cropped back after, so their boundaries do not ring into
  the image: Wiener (FFT, circular) to twice its size, which is periodic without a seam; RL (zero
  boundary) by the kernel size.
- ours: a blind model (``--model NAME|PATH``, a card beside the weights); not told the kernel.
  ``ours_x2``/``ours_x4``/``ours_x8``: the same with ``inference.py --self-ensemble N`` (the mean of N
  flipped/rotated views; a flipped image has a flipped kernel, as blind to the model as the first).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..data.image_sets import centre_crop
from .quality import OUR_LABELS, OUR_METHODS

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OPTIONS = REPO / "options" / "train" / "deblur_synthetic.yml"
WIENER_BALANCES = tuple(float(b) for b in np.logspace(-4, 1, 11))
RL_ITERATIONS = (5, 10, 20, 40)
METHODS = ("blurred", "wiener", "rl", *OUR_METHODS)
DEFAULT_METHODS = METHODS[:4]
LABELS = {"blurred": "blurred input", "wiener": "Wiener (true kernel, oracle balance)",
          "rl": "Richardson–Lucy (true kernel, oracle iterations)", **OUR_LABELS}


def _mirrored(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, pad: int | None) -> np.ndarray:
    """``fn`` on ``image`` mirrored out by ``pad`` px on every side, cropped back; ``pad=None``: mirrored
    to twice its height and width, which is periodic without a seam (for FFT-based methods)."""
    h, w = image.shape[:2]
    widths = ((0, h), (0, w)) if pad is None else ((pad, pad), (pad, pad))
    out = fn(np.pad(image, (*widths, (0, 0)), mode="symmetric"))
    top, left = widths[0][0], widths[1][0]
    return out[top : top + h, left : left + w]


def wiener(blurred: np.ndarray, kernel: np.ndarray, balance: float) -> np.ndarray:
    from skimage.restoration import wiener as sk_wiener

    def per_channel(img: np.ndarray) -> np.ndarray:
        return np.stack([sk_wiener(img[..., c], kernel, balance, clip=False) for c in range(img.shape[2])], axis=2)

    return _mirrored(per_channel, blurred.astype(np.float64), None)


def richardson_lucy(blurred: np.ndarray, kernel: np.ndarray, iterations: int) -> np.ndarray:
    from skimage.restoration import richardson_lucy as sk_rl

    def per_channel(img: np.ndarray) -> np.ndarray:
        return np.stack([sk_rl(img[..., c], kernel, num_iter=iterations, clip=False) for c in range(img.shape[2])],
                        axis=2)

    return _mirrored(per_channel, blurred.astype(np.float64), kernel.shape[0])


def best_of(restore: Callable[[float], np.ndarray], params: tuple, clean: np.ndarray) -> tuple[np.ndarray, float]:
    """The output (clipped to [0, 1]) and parameter of ``params`` with the highest PSNR against ``clean``."""
    from ..metrics import psnr

    outputs = {p: np.clip(restore(p), 0.0, 1.0) for p in params}
    best = max(outputs, key=lambda p: psnr(outputs[p], clean, data_range=1.0))
    return outputs[best], best


def run(pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], methods: list[str],
        ours: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None, keep: int = 1) -> tuple[dict, list[dict]]:
    """({method: {"psnr", "ssim", "seconds" means, "images": rows}}, [{method: output} of each of the
    first ``keep`` pairs]); ``ours`` maps each of our methods in ``methods`` to its restorer."""
    from ..metrics import psnr, ssim

    restorers = {
        "blurred": lambda lq, k, gt: (lq, None),
        "wiener": lambda lq, k, gt: best_of(lambda b: wiener(lq, k, b), WIENER_BALANCES, gt),
        "rl": lambda lq, k, gt: best_of(lambda n: richardson_lucy(lq, k, n), RL_ITERATIONS, gt),
        **{m: (lambda lq, k, gt, m=m: (np.clip(ours[m](lq.astype(np.float32)), 0.0, 1.0), None)) for m in OUR_METHODS},
    }
    results, kept = {}, [{} for _ in pairs[:keep]]
    for method in methods:
        rows = []
        for i, (name, gt, lq, kernel) in enumerate(pairs):
            start = time.perf_counter()
            out, param = restorers[method](lq, kernel, gt.astype(np.float64))
            seconds = time.perf_counter() - start
            out = out.astype(np.float64)
            rows.append({"image": name, "kernel_size": int(kernel.shape[0]), "psnr": psnr(out, gt, data_range=1.0),
                         "ssim": ssim(out, gt, data_range=1.0), "seconds": seconds,
                         **({"param": param} if param is not None else {})})
            if i < keep:
                kept[i][method] = out
            print(f"{method:8s} {name}: {rows[-1]['psnr']:.2f} dB", flush=True)
        results[method] = {key: float(np.mean([r[key] for r in rows])) for key in ("psnr", "ssim", "seconds")}
        results[method]["images"] = rows
    return results, kept


def table(results: dict) -> str:
    """Markdown: one row per method, mean PSNR / SSIM and seconds per image."""
    lines = ["| method | PSNR (dB) | SSIM | s / image |", "|---|---:|---:|---:|"]
    for method, r in results.items():
        lines.append(f"| {LABELS[method]} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def figure(rows: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]], path: Path, size: int = 256) -> None:
    """PNG of one row per (target, kernel, {method: output}): the centre ``size``² (detail at 1:1; less where
    an image is smaller) of the target, then of each method's output; the kernel, enlarged, in the blurred
    panel's corner."""
    size = min([size] + [min(clean.shape[:2]) for clean, _, _ in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate([_figure_row(*row, size) for row in rows], axis=0)):
        raise SystemExit(f"cannot write {path}")


def _figure_row(clean: np.ndarray, kernel: np.ndarray, outputs: dict[str, np.ndarray], size: int) -> np.ndarray:
    panels = [("target", clean)] + [(m, outputs[m]) for m in METHODS if m in outputs]
    tiles = []
    for name, img in panels:
        tile = (np.clip(centre_crop(img, size), 0, 1)[..., ::-1] * 255).round().astype(np.uint8)
        tile = np.ascontiguousarray(tile)
        if name == "blurred" and kernel.shape[0] <= min(tile.shape[:2]):
            zoom = max(1, min(96, tile.shape[0] // 3, tile.shape[1] // 3) // kernel.shape[0])
            inset = cv2.resize((kernel / kernel.max() * 255).astype(np.uint8), None, fx=zoom, fy=zoom,
                               interpolation=cv2.INTER_NEAREST)
            tile[: inset.shape[0], : inset.shape[1]] = inset[..., None]
        cv2.putText(tile, name, (8, tile.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def load_pairs(options: Path, dataset: str, root: str | None, limit: int | None):
    """The (name, target, blurred, kernel) pairs of one SyntheticBlurDataset in an option file."""
    from ..data import SyntheticBlurDataset

    datasets = yaml.safe_load(options.read_text(encoding="utf-8"))["datasets"]
    if dataset not in datasets or datasets[dataset].get("type") != "SyntheticBlurDataset":
        raise SystemExit(f"{options}: no SyntheticBlurDataset {dataset!r}; it has {sorted(datasets)}")
    opt = {**datasets[dataset], "phase": "val", **({"dataroot_gt": root} if root else {})}
    pairs = SyntheticBlurDataset(opt)
    return [pairs.pair(i) for i in range(len(pairs) if limit is None else min(limit, len(pairs)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spatial_restore.bench deblur", description=__doc__.split("\n")[0])
    parser.add_argument("--options", type=Path, default=DEFAULT_OPTIONS, help="option file (default: %(default)s)")
    parser.add_argument("--dataset", default="val", help="its SyntheticBlurDataset, e.g. val or val_extra (default: val)")
    parser.add_argument("--root", help="override the dataset's dataroot_gt")
    parser.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)} "
                        f"(default: {','.join(DEFAULT_METHODS)}, ours only with --model)")
    parser.add_argument("--model", help="our blind deblurring model: shipped name or path to weights with a card")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--tile", type=int, help="our model's tile size, as inference.py --tile (0: never tile)")
    parser.add_argument("--limit", type=int, help="only the first N pairs (quick runs)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write all numbers as JSON")
    parser.add_argument("--figure", type=Path, metavar="PNG", help="also write a comparison figure of the first photo: one row per kernel, the centre "
                        "256x256 of each method's output")
    args = parser.parse_args(argv)
    methods = [m for m in DEFAULT_METHODS if args.model or m != "ours"] if args.methods is None else \
        [m for m in METHODS if m in args.methods.split(",")]
    ours_methods = [m for m in methods if m in OUR_METHODS]
    unknown = set(args.methods.split(",")) - set(METHODS) if args.methods else set()
    if unknown or not methods:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {','.join(METHODS)}")
    if ours_methods and not args.model:
        parser.error(f"{','.join(ours_methods)} need(s) --model (the shipped blind deblurrer: --model deblur)")
    pairs = load_pairs(args.options, args.dataset, args.root, args.limit)
    ours, model_info = None, None
    if ours_methods:
        from ..inference.restorer import Restorer, pick_device
        from ..weights import ModelNotFound, load_model

        try:
            model, card = load_model(args.model)
        except ModelNotFound as err:
            raise SystemExit(str(err)) from err
        tiling = {} if args.tile is None else {"tile": args.tile or None}
        device = pick_device(args.device)
        ours = {m: Restorer(model, device, args.precision, stride=card.stride, in_channels=card.in_channels,
                            self_ensemble=OUR_METHODS[m], **tiling) for m in ours_methods}
        model_info = card.summary()
    first_photo = [p for p in pairs if p[0].rsplit("_k", 1)[0] == pairs[0][0].rsplit("_k", 1)[0]]
    results, kept = run(pairs, methods, ours, keep=len(first_photo) if args.figure else 0)
    print(f"\nMean over {len(pairs)} pair(s) of {args.options.name}:{args.dataset} (true kernel given to Wiener and RL):\n")
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"options": str(args.options), "dataset": args.dataset, "model": model_info,
                                         "pairs": [p[0] for p in pairs], "wiener_balances": WIENER_BALANCES,
                                         "rl_iterations": RL_ITERATIONS, "tile": args.tile,
                                         "device": str(device) if ours else None, "precision": args.precision,
                                         "results": results}, indent=2) + "\n")
    if args.figure:
        figure([(clean, kernel, outputs) for (_, clean, _, kernel), outputs in zip(first_photo, kept)], args.figure)
