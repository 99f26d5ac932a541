"""`python -m spatial_restore.demo` (`make demo`): denoise a bundled photo with the shipped model on CPU.

Adds sigma=25 Gaussian noise (seed 0, the bench's convention) to datasets/samples/red_flower_256.png,
restores it with the default model, writes noisy/denoised/comparison PNGs and prints PSNR before and
after. The demo folder is the demo's own: its three files are replaced on each run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "samples" / "red_flower_256.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spatial_restore.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, default=SAMPLE, help="clean photo (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "demo_output", help="output folder (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale (default: 25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)

    from .image_io import read_image, to_display_u8, write_png
    from .inference.restorer import Restorer, pick_device
    from .metrics import psnr
    from .noise import add_gaussian_noise
    from .weights import ModelNotFound, load_model

    try:
        model, card = load_model("default")
    except ModelNotFound as err:
        raise SystemExit(f"demo: {err}") from err
    clean = read_image(args.image).rgb
    noisy = add_gaussian_noise(clean, args.sigma, args.seed)
    device = pick_device(args.device)
    start = time.perf_counter()
    denoised = np.clip(Restorer(model, device, stride=card.stride, in_channels=card.in_channels)(noisy), 0, 1)
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    gap = np.full((clean.shape[0], 8, 3), 255, np.uint8)
    panels = [to_display_u8(noisy), gap, to_display_u8(denoised), gap, to_display_u8(clean)]
    write_png(args.out / "noisy.png", to_display_u8(noisy))
    write_png(args.out / "denoised.png", to_display_u8(denoised))
    write_png(args.out / "comparison.png", np.concatenate(panels, axis=1))
    print(f"{args.image.name}: sigma {args.sigma:g} noise, {card.arch} ({card.preset}) on {device} in {seconds:.1f} s")
    print(f"PSNR noisy    {psnr(noisy, clean, data_range=1.0):6.2f} dB")
    print(f"PSNR denoised {psnr(denoised, clean, data_range=1.0):6.2f} dB")
    print(f"wrote {args.out / 'noisy.png'}, denoised.png, comparison.png (noisy | denoised | clean)")


if __name__ == "__main__":
    from .cpu_memory import tune_for_command

    tune_for_command()  # before torch is imported; opt-outs in spatial_restore/cpu_memory.py
    main()
