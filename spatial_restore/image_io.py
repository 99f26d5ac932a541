"""Image files in and out, keeping what a restoration network does not see (alpha, bit depth, greyness).

A network wants an RGB float image; a user's file may be 8- or 16-bit, grey, with alpha, a phone
JPEG with an EXIF rotation, or an animated GIF (its first frame is restored, with a note).
``read_image`` splits a file into the RGB float the network sees plus what is needed to write the
result back in the same form (``encode_like``, ``write_png``). JPEGs and GIFs go through Pillow
because it applies EXIF orientation, raises on truncated files (libjpeg only warns) and counts GIF
frames; everything else goes through OpenCV, which keeps 16-bit colour that Pillow would reduce to 8.

The one image decoder of the project: inference, the training datasets and the benches all read
through ``read_image``, so a file means the same thing to each of them.
"""

from __future__ import annotations

import io
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".gif")  # EXIF orientation and truncation (JPEG); frames and palettes (GIF)
__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "Picture", "decode_like", "encode_like", "quantize", "read_image",
           "to_display_u8", "write_atomically", "write_png"]


class ImageReadError(ValueError):
    """A file could not be read as an image; the message says why in one line."""


@dataclass
class Picture:
    """An image split for a network: ``rgb`` float HxWx3 in [0, 1], plus what is needed to write it back."""

    rgb: np.ndarray
    bit_depth: int  # 8 or 16: the depth written back
    gray: bool  # the file had one colour channel; write one back
    alpha: np.ndarray | None = None  # HxW, the file's own dtype, re-attached unchanged
    notes: list[str] = field(default_factory=list)  # what was done to fit the network, one line each

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    def visible(self, rgb: np.ndarray | None = None) -> np.ndarray:
        """The colour content as compared against ground truth: HxW if grey, else HxWx3 (float32)."""
        rgb = self.rgb if rgb is None else rgb
        return rgb.mean(axis=2) if self.gray else rgb


def _read_with_pillow(data: bytes) -> tuple[np.ndarray, list[str]]:
    """JPEG (EXIF orientation applied) or GIF (its first frame: an animation is not restored frame by frame)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # raises on truncated data instead of filling grey
        frames = getattr(im, "n_frames", 1)
        notes = [f"animated ({frames} frames): only the first frame is restored"] if frames > 1 else []
        orientation = im.getexif().get(0x0112, 1)
        im = ImageOps.exif_transpose(im)
        if orientation not in (None, 1):
            notes.append(f"applied EXIF orientation {orientation}")
        if im.mode == "P":  # a palette: its colours (and transparency) as RGB(A)
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode not in ("L", "RGB", "RGBA"):
            notes.append(f"converted {im.format or 'image'} mode {im.mode} to RGB")
            im = im.convert("RGB")
        return np.asarray(im), notes


def read_image(path: str | Path, dtype: type[np.floating] = np.float32) -> Picture:
    """Load ``path``; raises ImageReadError with a one-line reason for anything that is not a usable image.

    ``dtype``: the float type of ``rgb`` (float64 for the quality bench's reference arithmetic).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(f"cannot read file: {err.strerror or err}") from err
    if not data:
        raise ImageReadError("empty file")
    notes: list[str] = []
    if path.suffix.lower() in PILLOW_SUFFIXES:
        try:
            array, notes = _read_with_pillow(data)
        except Exception as err:  # Pillow raises several types for corrupt data
            kind = "GIF" if path.suffix.lower() == ".gif" else "JPEG"
            raise ImageReadError(f"corrupt or truncated {kind} ({err})") from err
    else:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise ImageReadError("not a readable image (unknown format, corrupt or truncated)")
        if array.ndim == 3 and array.shape[2] >= 3:  # OpenCV gives BGR(A)
            array = np.concatenate([array[..., 2::-1], array[..., 3:]], axis=2)
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"unsupported sample type {array.dtype} (only 8- and 16-bit images)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise ImageReadError(f"unsupported image layout {array.shape}")
    bit_depth = 16 if array.dtype == np.uint16 else 8
    scale = float(np.iinfo(array.dtype).max)
    alpha = None
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[..., 3].copy()
        array = array[..., :3]
        notes.append("alpha channel kept aside and re-attached unchanged")
    gray = array.ndim == 2
    if gray:
        array = np.repeat(array[..., None], 3, axis=2)
        notes.append("grayscale: restored through the colour model, written back as grayscale")
    if bit_depth == 16:
        notes.append("16-bit: processed in float, written as 16-bit")
    rgb = np.ascontiguousarray(array, dtype=dtype) / dtype(scale)
    return Picture(rgb=rgb, bit_depth=bit_depth, gray=gray, alpha=alpha, notes=notes)


def quantize(rgb: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float in [0, 1] (clipped) to uint8/uint16, rounding to nearest."""
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    scale = float(np.iinfo(dtype).max)
    return (np.clip(rgb, 0.0, 1.0) * scale + 0.5).astype(dtype)


def encode_like(picture: Picture, rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (float HxWx3) in the form of ``picture``'s file: its bit depth, grey or colour, its alpha."""
    out = quantize(picture.visible(rgb), picture.bit_depth)
    if picture.alpha is None:
        return out
    if out.ndim == 2:  # OpenCV cannot write grey+alpha PNGs; grey in all three channels keeps the content
        out = np.repeat(out[..., None], 3, axis=2)
    return np.concatenate([out, picture.alpha[..., None].astype(out.dtype)], axis=2)


def decode_like(picture: Picture, encoded: np.ndarray) -> np.ndarray:
    """What ``encode_like`` wrote, back as float in [0, 1] in ``picture``'s visible form (HxW if grey)."""
    colour = encoded[..., :3] if encoded.ndim == 3 else encoded  # alpha dropped
    values = colour.astype(np.float32) / np.float32(np.iinfo(colour.dtype).max)
    return picture.visible(values) if values.ndim == 3 else values


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write an RGB(A) or grey uint8/uint16 array as PNG, atomically (no half-written file on failure)."""
    path = Path(path)
    if array.ndim == 3:
        array = np.concatenate([array[..., 2::-1], array[..., 3:]], axis=2)  # RGB(A) -> BGR(A)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    write_atomically(path, buf.tobytes())


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a fresh file beside ``path`` and rename it over ``path``: a reader never sees a
    partial file, and a failure leaves none. Created with mode 0666 less the umask (0644 under 022), as
    any file a program writes; mkstemp's 0600 would hide outputs from a web server or a group."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def to_display_u8(rgb: np.ndarray) -> np.ndarray:
    """An HxWx3 (or HxW) float image as 8-bit RGB for side-by-side pictures."""
    rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb
    return quantize(rgb, 8)
