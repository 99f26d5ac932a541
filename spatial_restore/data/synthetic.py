"""Procedural clean images: occluding straight-edged shapes, thin-line gratings and fine grain.

Why: small photo sets (the 18 nature photos the default denoiser trains on) hold few straight edges and
almost no thin, regular lines, and a denoiser trained on them smooths such lines away (planks, panel
seams, window grids). Dead-leaves images are a known synthetic prior for denoising (occlusion gives
sharp edges at every scale); gratings add the regular, 1-3 px lines that block matching exploits.
Scenes are drawn at twice the size with sub-pixel coordinates and area-downscaled, so edges are
anti-aliased as a camera would record them.
"""

from __future__ import annotations

import cv2
import numpy as np

SUPERSAMPLE = 2
SUBPIXEL_BITS = 4  # cv2 drawing: coordinates in 1/16 pixel


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random brightness with a random, mostly low, saturation, as in photos."""
    grey = rng.uniform(0.0, 1.0)
    return (grey + rng.uniform(0.0, 0.8) * (rng.uniform(0.0, 1.0, 3) - grey)).astype(np.float32)


def _points(xy: np.ndarray) -> np.ndarray:
    return np.round(xy * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _rotated_rect(centre: np.ndarray, length: float, width: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    half = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2
    return centre + half @ np.array([[c, s], [-s, c]])


def _dead_leaves(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Occluding discs, rotated (often elongated) rectangles and triangles; radii ~ r^-3 (scale invariant)."""
    n = img.shape[0]
    r_min, r_max = 1.5 * SUPERSAMPLE, n / 3
    u = rng.uniform(size=count)
    radii = (r_min**-2 + u * (r_max**-2 - r_min**-2)) ** -0.5  # inverse CDF of p(r) ~ r^-3 on [r_min, r_max]
    for r in np.sort(radii)[::-1]:  # large first, so small shapes stay visible
        centre = rng.uniform(-0.1 * n, 1.1 * n, 2)
        colour = tuple(float(c) for c in _colour(rng))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(img, tuple(_points(centre)), int(r * (1 << SUBPIXEL_BITS)), colour, -1, cv2.LINE_AA,
                       SUBPIXEL_BITS)
            continue
        if kind == 1:
            aspect = float(np.exp(rng.uniform(0.0, np.log(20.0))))  # up to 20:1, i.e. bars and lines
            poly = _rotated_rect(centre, 2 * r * np.sqrt(aspect), 2 * r / np.sqrt(aspect), rng.uniform(0, np.pi))
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
            poly = centre + r * np.stack([np.cos(angles), np.sin(angles)], 1)
        cv2.fillConvexPoly(img, _points(poly), colour, cv2.LINE_AA, SUBPIXEL_BITS)


def _grating(img: np.ndarray, rng: np.random.Generator) -> None:
    """Parallel lines of one colour over part of the image: period 3-24 px, width 1 px to half the period,
    any angle, with a period that changes across the image as under perspective."""
    n = img.shape[0]
    period = rng.uniform(3.0, 24.0) * SUPERSAMPLE
    width = rng.uniform(1.0 * SUPERSAMPLE, max(period / 2, 1.0 * SUPERSAMPLE))
    angle = rng.uniform(0, np.pi)
    chirp = rng.uniform(-0.5, 0.5) / n  # relative change of the period per pixel along the lines' normal
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - n / 2
    across = xx * np.cos(angle) + yy * np.sin(angle)
    phase = across / period * (1 + chirp * across) + rng.uniform(0, 1)
    # distance to the nearest line centre in pixels, then an anti-aliased line profile
    distance = np.abs(phase - np.round(phase)) * period
    line = np.clip(width / 2 - distance + 0.5, 0.0, 1.0)
    # restricted to a random half-plane, so gratings meet other content along an edge
    side = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.3, 0.3) * n
    mask = (xx * np.cos(side) + yy * np.sin(side) > offset) if rng.random() < 0.5 else np.ones_like(line, bool)
    alpha = (line * mask)[..., None] * rng.uniform(0.3, 1.0)
    img *= 1 - alpha
    img += alpha * _colour(rng)


def _grain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative fine texture (wood grain, plaster), sometimes stretched along one direction."""
    n = img.shape[0]
    noise = rng.standard_normal((n, n)).astype(np.float32)
    sx, sy = rng.uniform(0.5, 3.0, 2) * SUPERSAMPLE
    if rng.random() < 0.5:
        sx *= rng.uniform(2.0, 8.0)  # streaks
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=sx, sigmaY=sy)
    noise /= noise.std() + 1e-6
    strength = rng.uniform(0.0, 0.15)
    return img * (1 + strength * noise[..., None])


def synthetic_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """One size x size RGB float32 scene in [0, 1]."""
    n = size * SUPERSAMPLE
    img = np.empty((n, n, 3), np.float32)
    img[:] = _colour(rng)
    _dead_leaves(img, rng, count=int(rng.integers(100, 500)))
    for _ in range(int(rng.integers(0, 3))):
        _grating(img, rng)
    if rng.random() < 0.5:  # after the gratings too: shapes occlude lines as well as the reverse
        _dead_leaves(img, rng, count=int(rng.integers(10, 50)))
    img = _grain(img, rng)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    blur = rng.uniform(0.0, 0.8)
    if blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    return np.clip(img, 0.0, 1.0)
