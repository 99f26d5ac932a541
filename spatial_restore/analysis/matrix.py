"""The SASF layer as an explicit matrix: y = M·u per channel, in closed form from the parameters.

With d_state = 1, Mamba's scan is y_t = Σ_{s≤t} C_t Λ[t,s] Δ_s B_s u_s + D u_t with the cumulative
decay Λ[t,s] = exp(A Σ_{s<j≤t} Δ_j). Spatial-Mamba reads out the fused state instead,
y_t = C_t Σ_{t'} S[t,t'] h_{t'} + D u_t, so

    M = diag(C) · S · Λ · diag(ΔB) + D·I,

with S the sparse stencil of the state fusion (dilations 1, 3, 5, clamped borders). Mamba's M is
lower-triangular; S reaches forward in raster order, so Spatial-Mamba's is not. Everything here is
dense (L×L per channel): it is meant for small inputs (L up to a few hundred).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..archs import StructureAwareSSM
from ..kernels import sasf_core
from ..kernels.reference import DILATIONS, compute_dtype


@dataclass(frozen=True)
class CoreInputs:
    """One core op call as the public ``sasf_core`` arguments (channels-first: the matrix view is per
    channel). Everything but ``u`` is held fixed: y is linear in u."""

    u: torch.Tensor  # (b, d, L)
    delta: torch.Tensor  # (b, d, L), before dt_bias and softplus
    A: torch.Tensor  # (d, 1), negative
    B: torch.Tensor  # (b, 1, L)
    C: torch.Tensor  # (b, 1, L)
    Dskip: torch.Tensor  # (d,)
    dt_bias: torch.Tensor  # (d,)
    fusion_kernels: torch.Tensor  # (3, d, 3, 3) for dilations 1, 3, 5
    alpha: torch.Tensor  # (3,)
    height: int
    width: int

    def run(self, u: torch.Tensor | None = None, backend: str | None = None) -> torch.Tensor:
        """The core op's output y (b, d, L) for ``u`` (default: the recorded one)."""
        return sasf_core(
            self.u if u is None else u, self.delta, self.A, self.B, self.C, self.Dskip, self.dt_bias,
            self.fusion_kernels, self.alpha, self.height, self.width, backend=backend,
        )  # fmt: skip


def sasf_layers(model: nn.Module) -> list[tuple[str, StructureAwareSSM]]:
    """Every SASF layer of a model (classifier, backbone, U-Net, or the layer itself), by module name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, StructureAwareSSM)]


@torch.no_grad()
def layer_input(model: nn.Module, layer: StructureAwareSSM, *args: torch.Tensor) -> torch.Tensor:
    """The channels-last input (b, H, W, C) that ``layer`` receives when ``model(*args)`` runs."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0]))
    try:
        model(*args)
    finally:
        handle.remove()
    if not seen:
        raise ValueError("the layer was not called during the model's forward pass")
    return seen[0]


@torch.no_grad()
def core_inputs(layer: StructureAwareSSM, x: torch.Tensor) -> CoreInputs:
    """What ``layer.forward(x)`` passes to the core op for channels-last x (b, H, W, C), channels-first."""
    inputs, _ = layer.core_inputs(x)
    return CoreInputs(*(a.detach() if isinstance(a, torch.Tensor) else a for a in inputs.channels_first()))


def without_fusion(inputs: CoreInputs) -> CoreInputs:
    """The same layer and input with the state fusion replaced by the identity (pure Mamba, S = I)."""
    kernels = torch.zeros_like(inputs.fusion_kernels)
    kernels[0, :, 1, 1] = 1.0  # centre tap of the dilation-1 kernel
    alpha = torch.zeros_like(inputs.alpha)
    alpha[0] = 1.0
    return dataclasses.replace(inputs, fusion_kernels=kernels, alpha=alpha)


def stencil_sources(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(3, 9, L) raster index of the pixel each fusion tap reads, per dilation, tap and target pixel.

    Taps are clamped to the image (replicate padding), so at borders several taps read one pixel.
    """
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    per_dilation = []
    for dil in DILATIONS:
        taps = []
        for dy in (-dil, 0, dil):
            for dx in (-dil, 0, dil):
                sy = (ys + dy).clamp(0, height - 1)
                sx = (xs + dx).clamp(0, width - 1)
                taps.append((sy[:, None] * width + sx[None, :]).flatten())
        per_dilation.append(torch.stack(taps))
    return torch.stack(per_dilation)


def stencil_matrix(fusion_kernels: torch.Tensor, alpha: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """S (d, L, L) with fused[t] = Σ_{t'} S[t, t'] h[t'] per channel: Σ_r α_r K_r as a sparse matrix."""
    length = height * width
    onehot = F.one_hot(stencil_sources(height, width, fusion_kernels.device), length).to(fusion_kernels.dtype)
    weights = alpha[:, None, None] * fusion_kernels.flatten(2)  # (3, d, 9)
    return torch.einsum("rdk,rkts->dts", weights, onehot)


def mamba_decay(delta: torch.Tensor, A: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    """Λ (b, d, L, L): Λ[t, s] = exp(A Σ_{s<j≤t} Δ_j) for s ≤ t, else 0, with Δ = softplus(delta + dt_bias)."""
    dt = F.softplus(delta + dt_bias[:, None])
    log_decay = torch.cumsum(dt * A, dim=-1)  # A Σ_{j≤t} Δ_j, non-increasing in t
    exponent = log_decay[..., :, None] - log_decay[..., None, :]
    causal = torch.ones(exponent.shape[-2:], dtype=torch.bool, device=exponent.device).tril()
    return torch.exp(exponent.masked_fill(~causal, float("-inf")))  # -inf, not the positive exponent: no overflow


def sasf_matrix(inputs: CoreInputs) -> torch.Tensor:
    """M (b, d, L, L) with y[b, d] = M[b, d] @ u[b, d]: M = diag(C) · S · Λ · diag(ΔB) + D·I."""
    dtype = compute_dtype(inputs.u)
    delta, A, B, C = (t.to(dtype) for t in (inputs.delta, inputs.A, inputs.B, inputs.C))
    Dskip, dt_bias = inputs.Dskip.to(dtype), inputs.dt_bias.to(dtype)
    dt = F.softplus(delta + dt_bias[:, None])
    mixed = mamba_decay(delta, A, dt_bias) * (dt * B)[..., None, :]  # Λ · diag(ΔB)
    S = stencil_matrix(inputs.fusion_kernels.to(dtype), inputs.alpha.to(dtype), inputs.height, inputs.width)
    eye = torch.eye(mixed.shape[-1], dtype=dtype, device=mixed.device)
    return C[..., :, None] * (S @ mixed) + Dskip[:, None, None] * eye


def autograd_matrix(inputs: CoreInputs, backend: str | None = None) -> torch.Tensor:
    """M (b, d, L, L) from autograd through ``sasf_core``: row t is ∂(Σ_{b,d} y[b,d,t])/∂u.

    One backward pass per pixel covers all channels at once because channels (and batch items) never
    mix inside the core op; the tests check that against the full Jacobian.
    """
    u = inputs.u.detach().requires_grad_()
    y = inputs.run(u, backend=backend)
    rows = [torch.autograd.grad(y[..., t].sum(), u, retain_graph=True)[0] for t in range(y.shape[-1])]
    return torch.stack(rows, dim=-2)


def random_layer(d_model: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64) -> StructureAwareSSM:
    """A seeded SASF layer with the official init, but random fusion kernels, α, A and D.

    The official init sets every fusion kernel and α to ones and A to -1, which hides the structure
    a trained layer has; random values show (and test) the general case.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = StructureAwareSSM(d_model).to(dtype)
        with torch.no_grad():
            fusion = layer.state_fusion
            for kernel in (fusion.kernel_3, fusion.kernel_3_1, fusion.kernel_3_2):
                kernel.normal_(0.0, 0.5)
            fusion.alpha.uniform_(0.2, 1.0)
            layer.A_logs.normal_(0.0, 0.5)
            layer.Ds.normal_(0.0, 1.0)
    return layer.eval()
