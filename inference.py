"""Restore images with a SpatialMambaUNet model: `python inference.py INPUT... -o OUTDIR` (see --help)."""

import sys

from spatial_restore.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
