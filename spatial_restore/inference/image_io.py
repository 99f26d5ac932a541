"""Moved to ``spatial_restore.image_io`` (one image reader for training and inference); kept as a name."""

from ..image_io import *  # noqa: F401,F403
from ..image_io import __all__  # noqa: F401
