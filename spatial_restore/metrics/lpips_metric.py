"""LPIPS through the `lpips` package, offline.

The package ships its linear heads, but its AlexNet backbone comes from torchvision's download cache.
We never download: the backbone file must already be in torchvision's cache (or at the path in
SPATIAL_RESTORE_LPIPS_BACKBONE), and its absence is a clear error naming the file and the folder.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_ENV = "SPATIAL_RESTORE_LPIPS_BACKBONE"


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here: its package, or a usable backbone file, is missing."""


class LPIPSWeightsMissing(LPIPSUnavailable, FileNotFoundError):
    """The AlexNet backbone weights for LPIPS are not on disk."""


def backbone_path() -> Path:
    override = os.environ.get(BACKBONE_ENV)
    return Path(override) if override else Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILE


def build_lpips(random_backbone: bool = False) -> torch.nn.Module:
    """LPIPS(alex) in eval mode; ``random_backbone`` keeps the backbone untrained (for tests only)."""
    try:
        import lpips
    except ImportError as err:
        raise LPIPSUnavailable(f"LPIPS needs the lpips package ({err})") from err

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    if not random_backbone:
        path = backbone_path()
        if not path.is_file():
            raise LPIPSWeightsMissing(
                f"LPIPS needs the AlexNet backbone weights '{BACKBONE_FILE}' in '{path.parent}' "
                f"(torchvision's cache; or set {BACKBONE_ENV}=/path/to/{BACKBONE_FILE}). Nothing is downloaded."
            )
        try:
            features = torch.load(path, map_location="cpu", weights_only=True)
            for slice_ in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
                for name, module in slice_.named_children():
                    for pname, param in module.named_parameters(recurse=False):
                        param.data.copy_(features[f"features.{name}.{pname}"])
        except Exception as err:  # not a pickle, a foreign pickle, missing or mis-shaped entries
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LPIPSUnavailable(f"LPIPS backbone {path} is unusable: {reason[:200]} (expected torchvision's "
                                   f"{BACKBONE_FILE})") from err
    return model.eval()


def lpips_unavailable() -> str | None:
    """Why LPIPS cannot be computed here (one line), or None if it can: asked once, before any work."""
    try:
        _cached(False, "cpu")
    except LPIPSUnavailable as err:
        return str(err)
    return None


@functools.lru_cache(maxsize=2)
def _cached(random_backbone: bool, device: str) -> torch.nn.Module:
    return build_lpips(random_backbone).to(device)


def lpips_distance(a: np.ndarray, b: np.ndarray, data_range: float | None = None, bgr: bool = False,
                   device: str = "cpu", random_backbone: bool = False) -> float:
    """LPIPS(alex) between two HWC colour images (RGB unless ``bgr``); lower is more similar."""
    from .fidelity import _check, data_range_of

    _check(a, b)

    def prep(img: np.ndarray) -> torch.Tensor:
        img = np.asarray(img, dtype=np.float64) / (data_range or data_range_of(np.asarray(img)))
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if bgr:
            img = img[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().to(device) * 2 - 1

    with torch.no_grad():
        return float(_cached(random_backbone, device)(prep(a), prep(b)).item())
