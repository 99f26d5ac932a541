"""The SASF core op (scan + structure-aware state fusion + readout) and its backend dispatch.

``sasf(SASFInputs)`` is the channels-last form the network calls; ``sasf_core`` is the public
channels-first wrapper (views of the same tensors). Both pick Triton for CUDA tensors when Triton
imports (float32/16, bfloat16; float64 goes to the reference), else the pure-PyTorch reference
(computed by ``sasf_core_inference``, its in-place twin, when autograd is off).
Override per call with ``backend=`` or globally with ``SPATIAL_RESTORE_BACKEND=reference|triton``.
The choice is logged once per (backend, device type) and reported by ``last_backend()``.
"""

from __future__ import annotations

import importlib
import logging
import os

import torch

from .interface import SCAN_CODES, SASFInputs
from .reference import linear_scan, sasf_core_inference, sasf_core_ref, selective_scan_ref, state_fusion_ref

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "SCAN_CODES",
    "SASFInputs",
    "fused_dwconv",
    "last_backend",
    "layer_norm",
    "linear_scan",
    "resolve_backend",
    "sasf",
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


TRITON_MODULES = ("triton_sasf", "triton_layer_norm", "triton_dwconv")
_triton_modules: dict = {}  # name -> the Triton module, or the ImportError that keeps it away


def _triton_impl(name: str = "triton_sasf"):
    """A Triton implementation module of this package, or the ImportError that keeps it away.

    The first call imports all of ``TRITON_MODULES``. Backend resolution makes it through
    ``triton_available``, which ``torch.compile`` runs rather than traces, so a compiled graph finds every
    module here and traces no import (an import inside the trace is a graph break)."""
    if not _triton_modules:
        for module in TRITON_MODULES:
            try:
                _triton_modules[module] = importlib.import_module(f"{__name__}.{module}")
            except ImportError as err:  # triton missing or broken: the reference still works
                _triton_modules[module] = err
    return _triton_modules[name]


@torch.compiler.assume_constant_result
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


def sasf(inputs: SASFInputs, *, backend: str | None = None) -> torch.Tensor:
    """The SASF core op on channels-last inputs: y (b, L, d), float32 for half-precision inputs, else u's dtype.

    The Triton backend runs as the custom op ``torch.ops.spatial_restore.sasf_fwd`` (autograd
    registered), so ``torch.compile`` keeps it in the graph; the reference is plain PyTorch.
    """
    global _last
    name = resolve_backend(backend, inputs.u.device, inputs.u.dtype)
    key = (name, inputs.u.device.type)
    if not torch.compiler.is_compiling():  # bookkeeping stays out of compiled graphs
        if key not in _logged:
            _logged.add(key)
            logger.info("SASF core op: %s backend on %s", name, inputs.u.device.type)
        _last = name
    if name == "triton":
        return _triton_impl().sasf_triton(inputs)
    fn = sasf_core_ref if torch.is_grad_enabled() else sasf_core_inference
    return fn(*inputs.channels_first(), scan=inputs.scan).transpose(1, 2)


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
    scan: str = "row",
) -> torch.Tensor:
    """y = SASF(h) * C + Dskip * u, with h the scan of u under softplus(delta + dt_bias) and A.

    u, delta (b,d,L); A (d,1); B, C (b,1,L); Dskip, dt_bias (d,); fusion_kernels (3,d,3,3) for
    dilations 1, 3, 5; alpha (3,); L = height * width row-major; ``scan`` one of ``SCAN_CODES``.
    Returns (b,d,L), float32 for half-precision inputs, else the input dtype. A thin wrapper over
    ``sasf`` (views, no copies).
    """
    if u.dim() != 3:
        raise ValueError(f"u must be (b, d, L), got {tuple(u.shape)}")
    inputs = SASFInputs.from_channels_first(u, delta, A, B, C, Dskip, dt_bias, fusion_kernels, alpha, height, width,
                                            scan)
    return sasf(inputs, backend=backend).transpose(1, 2)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               gate: torch.Tensor | None = None, out_dtype: torch.dtype | None = None, *,
               backend: str | None = None) -> torch.Tensor | None:
    """LayerNorm over the last dim (times silu(gate)) as one Triton kernel when the backend for x is
    Triton; None otherwise, so that the caller runs its own PyTorch path (see kernels/triton_layer_norm.py)."""
    if resolve_backend(backend, x.device, x.dtype) != "triton":
        return None
    return _triton_impl("triton_layer_norm").layer_norm_triton(x, weight, bias, eps, gate, out_dtype)


def fused_dwconv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epilogue: str, *,
                 backend: str | None = None) -> torch.Tensor | None:
    """A depthwise 3x3 conv (zero padding, bias; weight (N, 1, 3, 3), bias (N,): an nn.Conv2d's with
    groups=N) of channels-last x (B, H, W, N) and its epilogue, in x's dtype, as one Triton kernel when
    the backend for x is Triton; None otherwise, so that the caller runs its own PyTorch path. Epilogues:
    ``"residual"`` x + conv(x); ``"silu"`` silu(conv(x)); ``"gate"`` gelu(a) * v, (a, v) the conv's channel
    halves, (B, H, W, N/2). See kernels/triton_dwconv.py."""
    if resolve_backend(backend, x.device, x.dtype) != "triton":
        return None
    return _triton_impl("triton_dwconv").dwconv_triton(x, weight, bias, epilogue)
