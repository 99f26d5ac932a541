"""Inference on image files: tiled, self-ensembled restoration; batches of files with safe outputs.

Image files are read and written by ``spatial_restore.image_io`` (shared with training) and tiles
blended by ``spatial_restore.tiling`` (shared with validation); both are re-exported here.
"""

from ..image_io import ImageReadError, Picture, encode_like, read_image, write_png
from ..tiling import tiled_forward
from .restorer import Restorer, pick_device

__all__ = ["ImageReadError", "Picture", "Restorer", "encode_like", "pick_device", "read_image", "tiled_forward",
           "write_png"]
