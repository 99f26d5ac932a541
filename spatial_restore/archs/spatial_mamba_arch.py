"""Spatial-Mamba (Xiao et al., ICLR 2025): SASF layer, block, classifier and feature backbone.

Module names, parameter names, shapes and state_dict order equal the official model's, so official
checkpoints load with ``strict=True``. The residual stream is channels-last (B, H, W, C); sequences
are row-major (l = h*W + w). The SASF core (scan, state fusion, readout) is the kernel op
``spatial_restore.kernels.sasf``, called channels-last; nothing derived from the weights is ever cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..kernels import SCAN_CODES, SASFInputs, fused_dwconv, layer_norm, sasf

# Official variants (classification/configs/spatialmamba/*.yaml): configs as data.
VARIANTS: dict[str, dict] = {
    "T": dict(depths=[2, 4, 8, 4], dims=64, drop_path_rate=0.2),
    "S": dict(depths=[2, 4, 21, 5], dims=64, drop_path_rate=0.3),
    "B": dict(depths=[2, 4, 21, 5], dims=96, drop_path_rate=0.5),
}


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval or at rate 0)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def _inplace(x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> bool:
    """Without autograd, temporaries are overwritten in place: on CPU every fresh activation-sized
    tensor costs more in page faults than the op that fills it. Never where writing into ``x`` would
    round the result (a bf16 ``x`` and an fp32 ``y`` under autocast give fp32 out of place)."""
    return not torch.is_grad_enabled() and (x is None or x.dtype == torch.promote_types(x.dtype, y.dtype))


def _add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + y, written into x without autograd (x must then be a temporary the caller owns)."""
    return x.add_(y) if _inplace(x, y) else x + y


def _mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x * y, written into x without autograd (x must then be a temporary the caller owns)."""
    return x.mul_(y) if _inplace(x, y) else x * y


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, in place without autograd (x must then be a temporary the caller owns)."""
    return torch.ops.aten.gelu_(x) if _inplace() else F.gelu(x)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last dim, optionally times silu(gate). Where the SASF op runs Triton, one
    Triton kernel does it and writes autocast's dtype (the next projection's input) directly; elsewhere
    torch's LayerNorm runs (in place without autograd, as the rest of the CPU path)."""

    def __init__(self, dim: int, backend: str | None = None):
        super().__init__(dim)
        self.backend = backend

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        if x.is_cuda:
            out_dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else self.weight.dtype
            fused = layer_norm(x, self.weight, self.bias, self.eps, gate, out_dtype, backend=self.backend)
            if fused is not None:
                return fused
        if gate is None:
            return super().forward(x)
        return _mul(super().forward(x.to(self.weight.dtype)), F.silu(gate, inplace=_inplace()))


class ConvLayer(nn.Module):
    """conv -> optional BatchNorm -> optional ReLU (the official stem/downsampler unit)."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, padding=0, groups=1, bias=False, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.ReLU() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x) if self.act is not None else x


class Stem(nn.Module):
    """Stride-4 convolutional stem; returns channels-last features."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        half = dim // 2
        self.conv1 = ConvLayer(in_chans, half, 3, 2, 1)
        self.conv2 = nn.Sequential(ConvLayer(half, half, 3, 1, 1), ConvLayer(half, half, 3, 1, 1, act=False))
        self.conv3 = nn.Sequential(ConvLayer(half, 4 * dim, 3, 2, 1), ConvLayer(4 * dim, dim, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.conv2(x) + x
        return self.conv3(x).permute(0, 2, 3, 1)


class DownSampling(nn.Module):
    """Inverted-bottleneck stride-2 downsampler C -> 2C on channels-last input."""

    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        hidden, out = int(2 * dim * ratio), 2 * dim
        self.conv = nn.Sequential(
            ConvLayer(dim, hidden, 1, bias=True, norm=False),
            ConvLayer(hidden, hidden, 3, 2, 1, groups=hidden, bias=True, norm=False),
            ConvLayer(hidden, out, 1, bias=True, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class StateFusion(nn.Module):
    """Parameters of the structure-aware state fusion: 3x3 kernels for dilations 1, 3, 5 and raw weights alpha."""

    def __init__(self, dim: int):
        super().__init__()
        self.kernel_3 = nn.Parameter(torch.ones(dim, 1, 3, 3))
        self.kernel_3_1 = nn.Parameter(torch.ones(dim, 1, 3, 3))
        self.kernel_3_2 = nn.Parameter(torch.ones(dim, 1, 3, 3))
        self.alpha = nn.Parameter(torch.ones(3))

    def fusion_kernels(self) -> torch.Tensor:
        """(3, dim, 3, 3), rebuilt on every call so it can never go stale."""
        return torch.cat([self.kernel_3, self.kernel_3_1, self.kernel_3_2], dim=1).transpose(0, 1)


class StructureAwareSSM(nn.Module):
    """The SASF mixer: in_proj -> dwconv+SiLU -> selective scan -> state fusion -> readout -> gate -> out_proj."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        d_conv: int = 3,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        backend: str | None = None,
        scan_direction: str = "row",
        fuse_dwconv: bool = True,
    ):
        super().__init__()
        if d_state != 1:
            raise ValueError("Spatial-Mamba's state fusion is defined for d_state = 1 (as in every official config)")
        d_inner = int(expand * d_model)
        rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.d_inner, self.dt_rank, self.d_state, self.backend = d_inner, rank, d_state, backend
        self.fuse_dwconv = fuse_dwconv
        # Registered first, as in the official module, so the state_dict order matches.
        self.x_proj_weight = nn.Parameter(torch.empty(rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(d_inner, rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(d_inner))
        self.A_logs = nn.Parameter(torch.empty(d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(d_inner))
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=True)
        self.state_fusion = StateFusion(d_inner)
        self.out_norm = LayerNorm(d_inner, backend)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        if scan_direction not in SCAN_CODES:
            raise ValueError(f"scan_direction must be one of {sorted(SCAN_CODES)}, got {scan_direction!r}")
        self.scan_direction = scan_direction
        self._init_ssm(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor):
        bound = self.d_inner**-0.5  # nn.Linear's default for x_proj
        self.x_proj_weight.uniform_(-bound, bound)
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "random":
            self.dt_projs_weight.uniform_(-std, std)
        elif dt_init == "constant":
            self.dt_projs_weight.fill_(std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def core_inputs(self, x: torch.Tensor) -> tuple[SASFInputs, torch.Tensor]:
        """The SASF core op's inputs for channels-last x (b, H, W, C), and the gate z.

        The forward and the analysis tools (which rebuild the layer as an explicit matrix) share it.
        Everything stays channels-last: u, delta are (b, L, d) views of the projections' memory.
        """
        b, h, w, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        conv = self.conv2d
        u = fused_dwconv(x, conv.weight, conv.bias, "silu", backend=self.backend) if self.fuse_dwconv else None
        if u is None:  # torch's conv; its output has channels-last memory (b, d, H, W)
            u = F.silu(conv(x.permute(0, 3, 1, 2)), inplace=_inplace()).permute(0, 2, 3, 1)
        u = u.reshape(b, h * w, self.d_inner)  # (b, L, d), a view
        dt_low, B, C = torch.split(F.linear(u, self.x_proj_weight), [self.dt_rank, self.d_state, self.d_state], -1)
        fusion = self.state_fusion
        inputs = SASFInputs(u, F.linear(dt_low, self.dt_projs_weight), -torch.exp(self.A_logs), B.reshape(b, -1),
                            C.reshape(b, -1), self.Ds, self.dt_projs_bias, fusion.fusion_kernels(), fusion.alpha, h, w,
                            self.scan_direction)
        return inputs, z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, H, W, C) -> (b, H, W, C). The scan direction is only the order in which the recurrence
        visits the pixels: every other step is pointwise or a centred stencil, which commute with the
        image's transposes and half turns."""
        b, h, w, _ = x.shape
        inputs, z = self.core_inputs(x)
        y = sasf(inputs, backend=self.backend).view(b, h, w, self.d_inner)
        return self.out_proj(self.out_norm(y, gate=z))


class MLP(nn.Module):
    """Token MLP: Linear -> exact GELU -> Linear (the official block's FFN)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv of channels-last x (B, H, W, C) -> (B, H, W, C') contiguous. On CUDA one GEMM with the
    bias in its epilogue (cuDNN adds a conv's bias in a broadcast kernel of its own); elsewhere the conv
    (oneDNN's is faster than the GEMM on CPU). The parameters stay the conv's, as checkpoints hold them."""
    if x.is_cuda:
        return F.linear(x, conv.weight.flatten(1), conv.bias)
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class GatedDWConvFFN(nn.Module):
    """Gated depthwise-conv FFN (Restormer's GDFN) on channels-last input: local mixing for restoration.

    Where the SASF op runs Triton (and ``fuse_dwconv``), dwconv, chunk, GELU and gate are one Triton
    kernel (``kernels.fused_dwconv``) reading project_in's output; elsewhere torch's ops.
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, backend: str | None = None,
                 fuse_dwconv: bool = True):
        super().__init__()
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project_out = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)
        self.backend, self.fuse_dwconv = backend, fuse_dwconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _pointwise(self.project_in, x)  # (B, H, W, 2 hidden) contiguous
        dw = self.dwconv
        gated = fused_dwconv(y, dw.weight, dw.bias, "gate", backend=self.backend) if self.fuse_dwconv else None
        if gated is None:
            x1, x2 = dw(y.permute(0, 3, 1, 2)).chunk(2, dim=1)
            # x1 * x2 out of place: a dense product in channels-last memory, which project_out reads without a copy
            gated = (_gelu(x1) * x2).permute(0, 2, 3, 1)
        return self.drop(_pointwise(self.project_out, gated))


FFNS = ("mlp", "gdfn")


class SpatialMambaBlock(nn.Module):
    """x += cpe1(x); x += DropPath(SASF(LN(x))); x += cpe2(x); x += DropPath(FFN(LN(x))), channels-last.

    ``fuse_dwconv``: where the SASF op runs Triton, each x + cpe(x) is one Triton kernel
    (``kernels.fused_dwconv``), and so are the mixer's dwconv + SiLU and the GDFN's dwconv + GELU gate;
    False keeps torch's ops (for A/B timing). Elsewhere (the CPU) it changes nothing.
    """

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        d_state: int = 1,
        dt_init: str = "random",
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        ffn: str = "mlp",
        backend: str | None = None,
        scan_direction: str = "row",
        fuse_dwconv: bool = True,
    ):
        super().__init__()
        if ffn not in FFNS:
            raise ValueError(f"ffn must be one of {sorted(FFNS)}, got {ffn!r}")
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln_1 = LayerNorm(dim, backend)
        self.self_attention = StructureAwareSSM(dim, d_state=d_state, dt_init=dt_init, backend=backend,
                                                scan_direction=scan_direction, fuse_dwconv=fuse_dwconv)
        self.drop_path = DropPath(drop_path)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln_2 = LayerNorm(dim, backend)
        hidden = int(dim * mlp_ratio)
        self.mlp = GatedDWConvFFN(dim, hidden, drop, backend, fuse_dwconv) if ffn == "gdfn" else MLP(dim, hidden, drop)
        self.backend, self.fuse_dwconv = backend, fuse_dwconv

    def _cpe_residual(self, conv: nn.Conv2d, x: torch.Tensor, keep_input: bool) -> torch.Tensor:
        """x + conv(x): one Triton kernel where the backend is Triton and fusion is on; else torch's conv,
        the add written into the fresh conv output (``keep_input``: x stays intact) or into x (no autograd)."""
        fused = fused_dwconv(x, conv.weight, conv.bias, "residual", backend=self.backend) if self.fuse_dwconv else None
        if fused is not None:
            return fused
        y = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return _add(y, x) if keep_input else _add(x, y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._cpe_residual(self.cpe1, x, keep_input=True)  # the block's input belongs to the caller
        x = _add(x, self.drop_path(self.self_attention(self.ln_1(x))))
        x = self._cpe_residual(self.cpe2, x, keep_input=False)
        return _add(x, self.drop_path(self.mlp(self.ln_2(x))))


class SpatialMambaLayer(nn.Module):
    """One stage: ``depth`` blocks, then an optional stride-2 downsampler."""

    def __init__(self, dim, depth, drop_path: Sequence[float], downsample: bool, use_checkpoint=False, **block_kw):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(SpatialMambaBlock(dim, drop_path=drop_path[i], **block_kw) for i in range(depth))
        self.downsample = DownSampling(dim) if downsample else None

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.use_checkpoint and self.training else blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_blocks(x)
        return self.downsample(x) if self.downsample is not None else x


def _stage_dims(dims: int | Sequence[int], num_stages: int) -> list[int]:
    return [int(dims) * 2**i for i in range(num_stages)] if isinstance(dims, int) else [int(d) for d in dims]


class SpatialMamba(nn.Module):
    """Spatial-Mamba image classifier; constructor arguments are the official ones (configs.json kwargs work)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 4, 8, 4),
        dims: int | Sequence[int] = 64,
        d_state: int = 1,
        dt_init: str = "random",
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer=None,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        backend: str | None = None,
        **_unused,
    ):
        super().__init__()
        # img_size, patch_size, attn_drop_rate, norm_layer and patch_norm are accepted for signature
        # compatibility with the official constructor; the computation does not use them.
        self.num_layers = len(depths)
        self.dims = _stage_dims(dims, self.num_layers)
        self.num_features = self.dims[-1]
        self.num_classes = num_classes
        self.patch_embed = Stem(in_chans, self.dims[0])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(
                SpatialMambaLayer(
                    self.dims[i], depth, dpr[start : start + depth], downsample=i < self.num_layers - 1,
                    use_checkpoint=use_checkpoint, d_state=d_state, dt_init=dt_init, mlp_ratio=mlp_ratio,
                    drop=drop_rate, backend=backend,
                )
            )  # fmt: skip
        self._build_head()
        self.apply(_init_linear_and_norm)

    def _build_head(self) -> None:
        self.norm = nn.LayerNorm(self.num_features)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(self.num_features, self.num_classes) if self.num_classes > 0 else nn.Identity()

    def forward_stages(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per stage: (blocks output before downsampling, stage output), both channels-last."""
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for layer in self.layers:
            feat = layer.forward_blocks(x)
            x = layer.downsample(feat) if layer.downsample is not None else feat
            outs.append((feat, x))
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, num_features) after the final LayerNorm."""
        x = self.forward_stages(x)[-1][1]
        x = self.norm(x.flatten(1, 2))
        return self.avgpool(x.transpose(1, 2)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class SpatialMambaBackbone(SpatialMamba):
    """Multi-scale feature backbone (detection/segmentation): NCHW stage features at strides 4/8/16/32.

    Each returned stage output is the blocks' output before downsampling, normalised by ``outnorm{i}``,
    as in the official dense-prediction backbone. The classifier's ``norm`` and ``head`` do not exist.
    """

    def __init__(self, out_indices: Sequence[int] = (0, 1, 2, 3), **kwargs):
        self.out_indices = tuple(out_indices)
        super().__init__(**{**kwargs, "num_classes": 0})

    def _build_head(self) -> None:
        for i in self.out_indices:
            self.add_module(f"outnorm{i}", nn.LayerNorm(self.dims[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        stages = self.forward_stages(x)
        return [getattr(self, f"outnorm{i}")(stages[i][0]).permute(0, 3, 1, 2).contiguous() for i in self.out_indices]


def _init_linear_and_norm(m: nn.Module) -> None:
    """Official init: trunc-normal(0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def spatial_mamba(variant: str, backbone: bool = False, **overrides) -> SpatialMamba:
    """Build an official variant ('T', 'S', 'B'), as classifier or feature backbone, with overrides."""
    key = variant.upper().removeprefix("SPATIAL_MAMBA_")
    if key not in VARIANTS:
        raise ValueError(f"unknown Spatial-Mamba variant {variant!r}; choose one of {sorted(VARIANTS)}")
    cls = SpatialMambaBackbone if backbone else SpatialMamba
    return cls(**{**VARIANTS[key], **overrides})
