"""Inference on image files: I/O that keeps bit depth, grey and alpha; tiled, self-ensembled restoration."""

from .image_io import ImageReadError, Picture, encode_like, read_image, write_png
from .restorer import Restorer, pick_device
from .tiling import tiled_forward

__all__ = ["ImageReadError", "Picture", "Restorer", "encode_like", "pick_device", "read_image", "tiled_forward",
           "write_png"]
