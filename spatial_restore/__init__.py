"""spatial_restore: Spatial-Mamba backbones, Triton kernels and image restoration on BasicSR.

Importing it (or any of its subpackages) changes no process state: the CPU memory settings that the
command-line entry points opt into live in ``spatial_restore.cpu_memory``.
"""

__version__ = "0.1.0"
