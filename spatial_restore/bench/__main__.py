"""`python -m spatial_restore.bench MODE [options]`: benchmarks, never tests.

Modes: reference (the pure-PyTorch SASF op on any device), kernels (Triton vs reference, GPU),
model (Spatial-Mamba-T throughput, GPU), restoration (U-Net presets, GPU), quality (denoising PSNR/SSIM
against CBM3D and NLM), ddp (the training pipeline on 1 vs N GPUs: step-0 agreement, scaling,
--auto_resume under DDP, DDP weights tested on one device; CPU processes with --device cpu), deblur
(synthetic camera blur: blind model vs Wiener and Richardson-Lucy given the true kernel).
`python -m spatial_restore.bench MODE --help` lists each mode's options.
"""

from __future__ import annotations

import importlib
import sys

MODES = ("reference", "kernels", "model", "restoration", "quality", "ddp", "deblur")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in MODES:
        sys.exit(f"usage: python -m spatial_restore.bench {{{'|'.join(MODES)}}} [options]\n\n{__doc__}")
    importlib.import_module(f"spatial_restore.bench.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    from ..cpu_memory import tune_for_command

    tune_for_command()  # before torch is imported; opt-outs in spatial_restore/cpu_memory.py
    main()
