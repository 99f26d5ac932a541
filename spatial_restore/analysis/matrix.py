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

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..archs import StructureAwareSSM
from ..kernels import SASFInputs, sasf_core
from ..kernels.reference import DILATIONS, compute_dtype


def core_output(inputs: SASFInputs, u: torch.Tensor | None = None, backend: str | None = None) -> torch.Tensor:
    """The core op's output y (b, d, L) for channels-first ``u`` (b, d, L) (default: the recorded one);
    everything else held fixed, so y is linear in u. Channels-first because the matrix view is per channel."""
    args = inputs.channels_first()
    return sasf_core(args[0] if u is None else u, *args[1:], backend=backend, scan=inputs.scan)


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
def core_inputs(layer: StructureAwareSSM, x: torch.Tensor) -> SASFInputs:
    """What ``layer.forward(x)`` passes to the core op for channels-last x (b, H, W, C), channels-first."""
    inputs, _ = layer.core_inputs(x)
    return inputs.replace(**{f.name: getattr(inputs, f.name).detach() for f in dataclasses.fields(inputs)
                             if isinstance(getattr(inputs, f.name), torch.Tensor)})


def without_fusion(inputs: SASFInputs) -> SASFInputs:
    """The same layer and input with the state fusion replaced by the identity (pure Mamba, S = I)."""
    kernels = torch.zeros_like(inputs.fusion_kernels)
    kernels[0, :, 1, 1] = 1.0  # centre tap of the dilation-1 kernel
    alpha = torch.zeros_like(inputs.alpha)
    alpha[0] = 1.0
    return inputs.replace(fusion_kernels=kernels, alpha=alpha)


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


def sasf_matrix(inputs: SASFInputs) -> torch.Tensor:
    """M (b, d, L, L) with y[b, d] = M[b, d] @ u[b, d] (u channels-first): M = diag(C) · S · Λ · diag(ΔB) + D·I.
    The closed form is the row-major scan's."""
    if inputs.scan != "row":
        raise ValueError(f"the closed-form matrix is the row scan's, this layer scans {inputs.scan!r}")
    dtype = compute_dtype(inputs.u)
    _, delta, A, B, C, Dskip, dt_bias, *_ = (t.to(dtype) if torch.is_tensor(t) else t for t in inputs.channels_first())
    dt = F.softplus(delta + dt_bias[:, None])
    mixed = mamba_decay(delta, A, dt_bias) * (dt * B)[..., None, :]  # Λ · diag(ΔB)
    S = stencil_matrix(inputs.fusion_kernels.to(dtype), inputs.alpha.to(dtype), inputs.height, inputs.width)
    eye = torch.eye(mixed.shape[-1], dtype=dtype, device=mixed.device)
    return C[..., :, None] * (S @ mixed) + Dskip[:, None, None] * eye


def autograd_matrix(inputs: SASFInputs, backend: str | None = None) -> torch.Tensor:
    """M (b, d, L, L) from autograd through ``sasf_core``: row t is ∂(Σ_{b,d} y[b,d,t])/∂u.

    One backward pass per pixel covers all channels at once because channels (and batch items) never
    mix inside the core op; the tests check that against the full Jacobian.
    """
    u = inputs.u.transpose(1, 2).detach().requires_grad_()
    y = core_output(inputs, u, backend=backend)
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
