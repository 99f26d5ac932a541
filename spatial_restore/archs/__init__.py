"""Networks (pure nn.Modules), registered in basicsr's ARCH_REGISTRY and, when installed, timm's."""

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


def _register_timm() -> None:
    """Expose spatial_mamba_t/s/b to ``timm.create_model`` when timm is installed."""
    try:
        from timm.models import register_model
    except ImportError:
        return

    def make(variant: str):
        def builder(pretrained: bool = False, **kwargs):
            if pretrained:
                raise ValueError("no pretrained download: load an official checkpoint with "
                                 "spatial_restore.checkpoint.load_official_checkpoint")
            return spatial_mamba(variant, **kwargs)

        builder.__name__ = f"spatial_mamba_{variant.lower()}"
        return builder

    for variant in VARIANTS:
        register_model(make(variant))


_register_timm()
