"""SpatialMambaUNet: Restormer's U-shaped skeleton with Spatial-Mamba blocks, for image restoration.

3x3 conv embed -> 3 encoder levels -> latent level -> 3 decoder levels (pixel-unshuffle down,
pixel-shuffle up, concatenated skips reduced by 1x1 convs except at level 1, which stays at twice the
width) -> refinement blocks -> 3x3 conv out -> global residual. Blocks run channels-last, and so
does the memory of the NCHW tensors between levels (the convolutions there are faster so on CPU).
Any H, W: the input is padded to a multiple of 8 and cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .spatial_mamba_arch import SpatialMambaBlock, _init_linear_and_norm

# Presets as data. `base` has Restormer's widths, depths and refinement (27.2 M parameters against
# Restormer's 26.1 M: the SASF mixer is a little larger than its attention, hence FFN ratio 2 instead
# of 2.66); `small` is the shipped default denoiser (5.6 M, 22.5 MB in fp32); `tiny` is for tests.
PRESETS: dict[str, dict] = {
    "tiny": dict(widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), num_refinement=1, ffn="gdfn", mlp_ratio=2.0),
    "small": dict(widths=(32, 64, 128, 256), depths=(2, 2, 2, 3), num_refinement=2, ffn="gdfn", mlp_ratio=2.0),
    "base": dict(widths=(48, 96, 192, 384), depths=(4, 6, 6, 8), num_refinement=4, ffn="gdfn", mlp_ratio=2.0),
}
PAD_MULTIPLE = 8  # three 2x downsamplings
# The block stages in build order; ``use_checkpoint`` may name some of them.
STAGES = ("encoder1", "encoder2", "encoder3", "latent", "decoder3", "decoder2", "decoder1", "refinement")


class BlockStage(nn.Module):
    """A run of Spatial-Mamba blocks on NCHW input (permuted to channels-last once for the whole run)."""

    def __init__(self, dim: int, drop_paths: Sequence[float], scans: Sequence[str], use_checkpoint: bool = False,
                 **block_kw):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(SpatialMambaBlock(dim, drop_path=p, scan_direction=s, **block_kw)
                                    for p, s in zip(drop_paths, scans, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1).contiguous()
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.use_checkpoint and self.training else blk(x)
        return x.permute(0, 3, 1, 2)  # channels-last memory, which the convolutions after it run faster on


class Downsample(nn.Sequential):
    """C -> 2C at half resolution: 3x3 conv to C/2, then pixel-unshuffle (as Restormer)."""

    def __init__(self, dim: int):
        super().__init__(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


class Upsample(nn.Sequential):
    """C -> C/2 at twice the resolution: 3x3 conv to 2C, then pixel-shuffle (as Restormer)."""

    def __init__(self, dim: int):
        super().__init__(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))


class SpatialMambaUNet(nn.Module):
    """U-shaped restoration network; input and output are NCHW images (out = in + predicted residual)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        widths: Sequence[int] = (48, 96, 192, 384),
        depths: Sequence[int] = (4, 6, 6, 8),
        num_refinement: int = 4,
        ffn: str = "gdfn",
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        d_state: int = 1,
        dt_init: str = "random",
        global_residual: bool = True,
        use_checkpoint: bool | Sequence[str] = False,
        backend: str | None = None,
        scans: Sequence[str] = ("row",),
        fuse_dwconv: bool = True,
    ):
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"SpatialMambaUNet has 4 levels: got widths={list(widths)}, depths={list(depths)}")
        if any(w % 2 for w in widths):
            raise ValueError(f"widths must be even (pixel-(un)shuffle halves/doubles them): {list(widths)}")
        for lo, hi in zip(widths[:-1], widths[1:]):
            if hi != 2 * lo:
                raise ValueError(f"each level must double the width (pixel-unshuffle of a C/2 conv): {list(widths)}")
        out_channels = in_channels if out_channels is None else out_channels
        if global_residual and out_channels != in_channels:
            raise ValueError("global_residual needs out_channels == in_channels")
        self.in_channels, self.out_channels, self.global_residual = in_channels, out_channels, global_residual
        w1, w2, w3, w4 = (int(w) for w in widths)
        d1, d2, d3, d4 = (int(d) for d in depths)
        # Stochastic depth grows linearly along the path embed -> latent -> refinement.
        order = [d1, d2, d3, d4, d3, d2, d1, num_refinement]
        rates = iter(torch.linspace(0, drop_path_rate, max(sum(order), 1)).tolist())
        layer_scans = iter(parse_scans(scans, sum(order)))
        self.scans = tuple(scans)
        checkpointed = checkpointed_stages(use_checkpoint)

        def stage(name: str, dim: int, depth: int) -> BlockStage:
            return BlockStage(dim, [next(rates) for _ in range(depth)], [next(layer_scans) for _ in range(depth)],
                              name in checkpointed, d_state=d_state, dt_init=dt_init, mlp_ratio=mlp_ratio, ffn=ffn,
                              backend=backend, fuse_dwconv=fuse_dwconv)

        self.embed = nn.Conv2d(in_channels, w1, 3, padding=1, bias=False)
        self.encoder1, self.down1 = stage("encoder1", w1, d1), Downsample(w1)
        self.encoder2, self.down2 = stage("encoder2", w2, d2), Downsample(w2)
        self.encoder3, self.down3 = stage("encoder3", w3, d3), Downsample(w3)
        self.latent = stage("latent", w4, d4)
        self.up3, self.reduce3 = Upsample(w4), nn.Conv2d(2 * w3, w3, 1, bias=False)
        self.decoder3 = stage("decoder3", w3, d3)
        self.up2, self.reduce2 = Upsample(w3), nn.Conv2d(2 * w2, w2, 1, bias=False)
        self.decoder2 = stage("decoder2", w2, d2)
        self.up1 = Upsample(w2)
        self.decoder1 = stage("decoder1", 2 * w1, d1)
        self.refinement = stage("refinement", 2 * w1, num_refinement)
        self.output = nn.Conv2d(2 * w1, out_channels, 3, padding=1, bias=False)
        self.apply(_init_linear_and_norm)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SpatialMambaUNet:
        """Build a named preset ('tiny', 'small', 'base'); keyword overrides replace preset values."""
        if name not in PRESETS:
            raise ValueError(f"unknown SpatialMambaUNet preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        x = _pad_to_multiple(img, PAD_MULTIPLE)
        e1 = self.encoder1(self.embed(x))
        e2 = self.encoder2(self.down1(e1))
        e3 = self.encoder3(self.down2(e2))
        y = self.latent(self.down3(e3))
        y = self.decoder3(self.reduce3(torch.cat([self.up3(y), e3], dim=1)))
        y = self.decoder2(self.reduce2(torch.cat([self.up2(y), e2], dim=1)))
        y = self.decoder1(torch.cat([self.up1(y), e1], dim=1))
        y = self.output(self.refinement(y))
        if self.global_residual:
            y = y + x
        return y[..., :h, :w]


def parse_scans(scans: Sequence[str], num_layers: int) -> list[str]:
    """The scan direction of each SASF layer, in build order: layer i takes ``scans[i % len(scans)]``.
    ``["row"]`` is the official network; ``["row", "col", "row_reverse", "col_reverse"]`` turns the
    scan a quarter from one layer to the next (the shipped default denoiser's)."""
    if isinstance(scans, str) or not scans:
        raise ValueError(f"scans must be a non-empty list of scan directions, got {scans!r}")
    return [scans[i % len(scans)] for i in range(num_layers)]


def checkpointed_stages(use_checkpoint: bool | Sequence[str]) -> frozenset[str]:
    """Which block stages recompute their activations in backward: all (True), none (False) or those
    named. The full-resolution stages (decoder1, refinement, encoder1) hold most of the saved
    activations, so naming only them keeps most of the memory saving for part of the recompute."""
    if isinstance(use_checkpoint, bool):
        return frozenset(STAGES) if use_checkpoint else frozenset()
    if isinstance(use_checkpoint, str):
        raise ValueError(f"use_checkpoint must be true/false or a list of stages, got {use_checkpoint!r}")
    unknown = sorted(set(use_checkpoint) - set(STAGES))
    if unknown:
        raise ValueError(f"use_checkpoint names unknown stages {unknown}; choose from {list(STAGES)}")
    return frozenset(use_checkpoint)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple: reflection when the image is large enough, else edge replication."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"  # reflection needs pad < size
    return F.pad(x, (0, pw, 0, ph), mode=mode)
