"""The SASF core op (scan + structure-aware state fusion + readout) and its backend dispatch.

``sasf_core`` picks Triton for CUDA tensors when Triton imports (float32/16, bfloat16; float64 goes to
the reference), else the pure-PyTorch reference (computed by ``sasf_core_inference``, its in-place
twin, when autograd is off).
Override per call with ``backend=`` or globally with ``SPATIAL_RESTORE_BACKEND=reference|triton``.
The choice is logged once per (backend, device type) and reported by ``last_backend()``.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from .reference import linear_scan, sasf_core_inference, sasf_core_ref, selective_scan_ref, state_fusion_ref

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "last_backend",
    "linear_scan",
    "resolve_backend",
    "sasf_core",
    "sasf_core_inference",
    "sasf_core_ref",
    "selective_scan_ref",
    "state_fusion_ref",
    "triton_available",
]

BACKENDS = ("reference", "triton")
ENV_VAR = "SPATIAL_RESTORE_BACKEND"
logger = logging.getLogger("spatial_restore.kernels")
_logged: set[tuple[str, str]] = set()
_last: str | None = None


@functools.lru_cache(maxsize=1)
def _triton_impl():
    """The Triton implementation module, or the ImportError that keeps it away."""
    try:
        from . import triton_sasf
    except ImportError as err:  # triton missing or broken: the reference still works
        return err
    return triton_sasf


def triton_available() -> bool:
    return not isinstance(_triton_impl(), ImportError)


def resolve_backend(backend: str | None, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Explicit argument > environment variable > auto (triton for CUDA tensors of a dtype it supports)."""
    choice = backend or os.environ.get(ENV_VAR) or None
    if choice is None:
        fast = device.type == "cuda" and triton_available() and dtype in _triton_impl().SUPPORTED_DTYPES
        return "triton" if fast else "reference"
    if choice not in BACKENDS:
        raise ValueError(f"unknown SASF backend {choice!r}; choose one of {BACKENDS} (or unset {ENV_VAR})")
    if choice == "triton" and not triton_available():
        raise RuntimeError(f"SASF backend 'triton' requested but Triton is unavailable: {_triton_impl()}")
    return choice


def last_backend() -> str | None:
    """The backend the most recent ``sasf_core`` call used (for benchmarks and logs)."""
    return _last


def sasf_core(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    Dskip: torch.Tensor,
    dt_bias: torch.Tensor,
    fusion_kernels: torch.Tensor,
    alpha: torch.Tensor,
    height: int,
    width: int,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """y = SASF(h) * C + Dskip * u, with h the scan of u under softplus(delta + dt_bias) and A.

    u, delta (b,d,L); A (d,1); B, C (b,1,L); Dskip, dt_bias (d,); fusion_kernels (3,d,3,3) for
    dilations 1, 3, 5; alpha (3,); L = height * width row-major. Returns (b,d,L), float32 for
    half-precision inputs, else the input dtype.
    """
    global _last
    b, d, length = u.shape
    if length != height * width:
        raise ValueError(f"sequence length {length} != height*width = {height}*{width}")
    if tuple(fusion_kernels.shape) != (3, d, 3, 3):
        raise ValueError(f"fusion_kernels must be (3,{d},3,3), got {tuple(fusion_kernels.shape)}")
    name = resolve_backend(backend, u.device, u.dtype)
    key = (name, u.device.type)
    if key not in _logged:
        _logged.add(key)
        logger.info("SASF core op: %s backend on %s", name, u.device.type)
    _last = name
    if name == "triton":
        fn = _triton_impl().sasf_core_triton
    else:
        fn = sasf_core_ref if torch.is_grad_enabled() else sasf_core_inference
    return fn(u, delta, A, B, C, Dskip, dt_bias, fusion_kernels, alpha, height, width)
