"""Restore images with a SpatialMambaUNet model: `python inference.py INPUT... -o OUTDIR` (see --help)."""

import sys

from spatial_restore.cpu_memory import tune_for_command

if __name__ == "__main__":
    tune_for_command()  # before torch is imported; opt-outs in spatial_restore/cpu_memory.py
    from spatial_restore.inference.cli import main

    sys.exit(main())
