"""Networks (pure nn.Modules), registered in basicsr's ARCH_REGISTRY and, when installed, timm's."""

from importlib.util import find_spec

from .._basicsr import register
from .spatial_mamba_arch import (
    VARIANTS,
    SpatialMamba,
    SpatialMambaBackbone,
    SpatialMambaBlock,
    StructureAwareSSM,
    spatial_mamba,
)
from .spatial_mamba_unet_arch import PRESETS as UNET_PRESETS
from .spatial_mamba_unet_arch import SpatialMambaUNet

__all__ = [
    "VARIANTS",
    "SpatialMamba",
    "SpatialMambaBackbone",
    "SpatialMambaBlock",
    "StructureAwareSSM",
    "SpatialMambaUNet",
    "UNET_PRESETS",
    "spatial_mamba",
]

for _cls in (SpatialMamba, SpatialMambaBackbone, SpatialMambaUNet):
    register("ARCH_REGISTRY", _cls)


if find_spec("timm") is not None:
    from . import timm_spatial_mamba  # noqa: F401  (registers spatial_mamba_t/s/b with timm)
