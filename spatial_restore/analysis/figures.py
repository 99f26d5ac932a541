"""PNG figures for the matrix view and the ERFs (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from .erf import mass_radius  # noqa: E402

DYNAMIC_RANGE = 1e-4  # log colour scales span [max·1e-4, max]; zeros stay blank


def _positive(values: torch.Tensor) -> np.ndarray:
    """Float numpy array with exact zeros as NaN, so a log scale leaves them blank (structural zeros)."""
    arr = values.detach().double().cpu().numpy()
    return np.where(arr > 0, arr, np.nan)


def plot_matrices(
    fused: torch.Tensor, mamba: torch.Tensor, height: int, width: int, path: str | Path, title: str = ""
) -> Path:
    """|M| of Spatial-Mamba beside Mamba's (top), and the row of the centre pixel as an image (bottom)."""
    vmax = float(max(fused.max(), mamba.max()))
    norm = LogNorm(vmin=vmax * DYNAMIC_RANGE, vmax=vmax, clip=True)
    centre = (height // 2) * width + width // 2
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 8.6), height_ratios=(1.0, 0.75), layout="constrained")
    for col, (name, m) in enumerate((("Spatial-Mamba (SASF)", fused), ("Mamba (fusion off, S = I)", mamba))):
        ax = axes[0, col]
        image = ax.imshow(_positive(m), norm=norm, cmap="viridis", interpolation="nearest")
        ax.set_title(f"{name}: |M[t, s]|")
        ax.set_xlabel("input position s (raster order)")
        ax.set_ylabel("output position t")
        ax = axes[1, col]
        ax.imshow(_positive(m[centre].reshape(height, width)), norm=norm, cmap="viridis", interpolation="nearest")
        ax.plot(width // 2, height // 2, marker="s", markersize=9, markerfacecolor="none", markeredgecolor="red")
        ax.set_title(f"row of the centre pixel ({height // 2}, {width // 2}) as {height}×{width} image")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0, :], shrink=0.8, label="|M| (blank: exactly 0)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_erfs(panels: Sequence[tuple[str, torch.Tensor]], path: str | Path, title: str = "") -> Path:
    """One log-scaled ERF map per panel, normalised to its own maximum, with 50%/90% mass squares."""
    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.0 * len(panels), 5.0), 3.7), squeeze=False, layout="constrained")
    for ax, (name, erf) in zip(axes[0], panels):
        h, w = erf.shape
        image = ax.imshow(_positive(erf / erf.max()), norm=LogNorm(DYNAMIC_RANGE, 1.0, clip=True), cmap="magma")
        for fraction, colour in ((0.5, "cyan"), (0.9, "limegreen")):
            r = mass_radius(erf, fraction)
            ax.add_patch(plt.Rectangle((w // 2 - r - 0.5, h // 2 - r - 0.5), 2 * r + 1, 2 * r + 1,
                                       fill=False, edgecolor=colour, linewidth=1.0,
                                       label=f"{fraction:.0%} of mass: {2 * r + 1}² px"))  # fmt: skip
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0, :], shrink=0.8, label="|∂ centre output / ∂ input| / max")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
