"""Image quality metrics: PSNR/SSIM (basicsr maths, any bit depth) and offline LPIPS.

``calculate_lpips`` is registered in basicsr's METRIC_REGISTRY for validation in YAML options
(``type: calculate_lpips``); basicsr's own ``calculate_psnr``/``calculate_ssim`` serve PSNR/SSIM there.
"""

from .._basicsr import register
from .fidelity import data_range_of, psnr, ssim
from .lpips_metric import (BACKBONE_FILE, LPIPSUnavailable, LPIPSWeightsMissing, build_lpips, lpips_distance,
                           lpips_unavailable)

__all__ = ["BACKBONE_FILE", "LPIPSUnavailable", "LPIPSWeightsMissing", "build_lpips", "calculate_lpips",
           "data_range_of", "lpips_distance", "lpips_unavailable", "psnr", "ssim"]


def calculate_lpips(img, img2, crop_border: int = 0, random_backbone: bool = False, **_):
    """basicsr metric hook: img, img2 are uint8 BGR HWC arrays as basicsr's validation produces."""
    if crop_border:
        img, img2 = img[crop_border:-crop_border, crop_border:-crop_border], img2[crop_border:-crop_border, crop_border:-crop_border]
    return lpips_distance(img, img2, bgr=True, random_backbone=random_backbone)


register("METRIC_REGISTRY", calculate_lpips)
