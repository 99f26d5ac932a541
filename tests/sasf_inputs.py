"""The one builder of random SASF core op inputs for the tests."""

from __future__ import annotations

import torch

from spatial_restore.kernels import SASFInputs


def random_sasf_inputs(b: int, d: int, height: int, width: int, *, seed: int, dtype: torch.dtype = torch.float64,
                       scan: str = "row", channels_last: bool = True) -> SASFInputs:
    """Seeded random inputs; every eighth delta crosses the softplus threshold 20, A is negative.

    ``channels_last`` picks the memory of u and delta: (b, L, d) as the network makes them, or
    (b, d, L) (the public ``sasf_core`` layout) seen through (b, L, d) views.
    """
    g = torch.Generator().manual_seed(seed)
    length = height * width

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def activation(x):
        x = x if channels_last else x.transpose(1, 2).contiguous().transpose(1, 2)
        return x.to(dtype)

    delta = r(b, length, d) - 1.0
    delta[:, ::8] += 25.0
    return SASFInputs(activation(r(b, length, d)), activation(delta), -torch.exp(0.5 * r(d, 1)), r(b, length).to(dtype),
                      r(b, length).to(dtype), r(d), 0.5 * r(d), r(3, d, 3, 3), r(3), height, width, scan)
