"""PSNR and SSIM on images of any bit depth, delegating the maths to basicsr's implementations.

basicsr computes on [0, 255] float images (SSIM with an 11x11 Gaussian window, sigma 1.5); we only
normalise the data range first, so 8-bit, 16-bit and float images are all compared on one scale.
"""

from __future__ import annotations

import numpy as np

from .._basicsr import import_basicsr


def data_range_of(img: np.ndarray) -> float:
    """255 for uint8, 65535 for uint16, 1.0 for float images (assumed in [0, 1])."""
    if img.dtype == np.uint8:
        return 255.0
    if img.dtype == np.uint16:
        return 65535.0
    return 1.0


def _to_255(img: np.ndarray, data_range: float | None) -> np.ndarray:
    img = np.asarray(img)
    scale = 255.0 / (data_range or data_range_of(img))
    img = img.astype(np.float64) * scale
    return img[..., None] if img.ndim == 2 else img


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"images differ in shape: {np.shape(a)} vs {np.shape(b)}")


def psnr(a, b, data_range: float | None = None, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB of HWC (or HW) images; y_channel expects BGR colour order, as basicsr does."""
    _check(a, b)
    import_basicsr()
    from basicsr.metrics.psnr_ssim import calculate_psnr

    return float(calculate_psnr(_to_255(a, data_range), _to_255(b, data_range), crop_border, "HWC", y_channel))


def ssim(a, b, data_range: float | None = None, crop_border: int = 0, y_channel: bool = False) -> float:
    """Mean SSIM over channels of HWC (or HW) images (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03)."""
    _check(a, b)
    import_basicsr()
    from basicsr.metrics.psnr_ssim import calculate_ssim

    return float(calculate_ssim(_to_255(a, data_range), _to_255(b, data_range), crop_border, "HWC", y_channel))
