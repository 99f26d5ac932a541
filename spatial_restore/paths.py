"""Where the project's shared data lies: ``../shared`` beside the repository, or $SPATIAL_RESTORE_SHARED.

The photos (``data/photos/{train,val}``) and the conformance fixtures (``reference/``) are too large
for the repository; the benches and the tests find them here, in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_ENV = "SPATIAL_RESTORE_SHARED"


def shared_dir() -> Path:
    """$SPATIAL_RESTORE_SHARED if set, else ``../shared`` beside the repository (read at each call)."""
    return Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared")
