"""spatial_restore: Spatial-Mamba backbones, Triton kernels and image restoration on BasicSR."""

__version__ = "0.1.0"
