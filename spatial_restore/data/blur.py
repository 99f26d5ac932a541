"""Synthetic camera blur: blur kernels, and a clean photo blurred, noised and rounded as a camera delivers it.

Kernels are odd-sized squares, non-negative, summing to 1, with their centre of mass on the centre pixel,
so a blurred image is not shifted against its target (a shift is no blur and cannot be learned back):
- ``trajectory``: camera shake, a random 2-D walk of the image point during the exposure in the manner of
  Boracchi & Foi (2012): inertia, a random acceleration each step, occasional abrupt jerks, and a pull
  back towards the start; its samples are splatted bilinearly into the kernel;
- ``linear``: straight uniform motion through the centre at a random angle;
- ``defocus``: a uniform disc (pixel coverage computed on an 8 x 8 sub-grid).
Blurring is a true convolution over the *valid* region: the blurred image is smaller than the clean one
by size - 1, and its target is the clean image's centre, so no pixel of either depends on padding.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from ..noise import add_gaussian_noise

KERNEL_TYPES = ("trajectory", "linear", "defocus")


def _check_size(size: int) -> int:
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {size}")
    return int(size)


def splat(points: np.ndarray, size: int) -> np.ndarray:
    """Kernel from equally weighted 2-D points (x, y), moved so their mean lies on the centre pixel.

    Bilinear splatting keeps the points' mean as the kernel's centre of mass exactly. Points are first
    scaled down (about the mean) if any would fall outside the kernel.
    """
    size = _check_size(size)
    points = points - points.mean(axis=0)
    reach = (size - 1) / 2 - 1  # one pixel left for the bilinear neighbour
    extent = np.abs(points).max()
    if extent > reach:
        points = points * (reach / extent)
    x, y = (points + (size - 1) / 2).T
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), np.float64)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return kernel / kernel.sum()


def trajectory_kernel(size: int, rng: np.random.Generator, steps: int = 1000) -> np.ndarray:
    """Camera shake: a random walk with inertia, scaled to span the kernel."""
    size = _check_size(size)
    # Units are arbitrary (the path is scaled to the kernel at the end); what matters is the balance of
    # the initial drift, the random acceleration, the jerks and the pull back.
    anxiety = rng.uniform(0.0005, 0.005)  # random acceleration per step
    jerk_prob = rng.uniform(0.0, 0.02)  # chance of an abrupt jerk per step
    pull = rng.uniform(0.0, 3e-5)  # pull back towards the start (a hand's tremor returns)
    velocity = np.exp(1j * rng.uniform(0, 2 * np.pi)) * 0.01
    position, path = 0j, np.empty(steps, np.complex128)
    for t in range(steps):
        accel = anxiety * complex(*rng.standard_normal(2)) - pull * position
        if rng.random() < jerk_prob:
            accel += 0.02 * np.exp(1j * rng.uniform(0, 2 * np.pi))
        velocity = velocity + accel
        position = position + velocity
        path[t] = position
    exposure = int(steps * rng.uniform(0.5, 1.0))  # the shutter closes before the walk ends
    points = np.stack([path[:exposure].real, path[:exposure].imag], axis=1)
    span = np.abs(points - points.mean(axis=0)).max()
    return splat(points * ((size - 1) / 2 - 1) / max(span, 1e-12), size)


def linear_kernel(size: int, angle: float) -> np.ndarray:
    """Uniform straight motion through the centre, at ``angle`` radians, as long as the kernel allows."""
    size = _check_size(size)
    half = (size - 1) / 2 - 1
    t = np.linspace(-half, half, 8 * size)
    return splat(np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1), size)


def defocus_kernel(size: int) -> np.ndarray:
    """A uniform disc of diameter ``size`` px (pixel coverage on an 8 x 8 sub-grid)."""
    size = _check_size(size)
    sub = (np.arange(size * 8) + 0.5) / 8 - size / 2
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= (size / 2) ** 2
    kernel = inside.reshape(size, 8, size, 8).mean(axis=(1, 3))
    return kernel / kernel.sum()


def odd_sizes(sizes: Sequence[int]) -> list[int]:
    """The odd kernel sizes >= 3 in the range [lo, hi]; none is an error."""
    lo, hi = int(sizes[0]), int(sizes[1])
    odd = [s for s in range(max(lo, 3), hi + 1) if s % 2 == 1]
    if len(sizes) != 2 or not odd:
        raise ValueError(f"kernel size range {list(sizes)} holds no odd size >= 3")
    return odd


def _odd_size(rng: np.random.Generator, sizes: Sequence[int]) -> int:
    return int(rng.choice(odd_sizes(sizes)))


def make_kernel(kind: str, rng: np.random.Generator, sizes: Sequence[int], defocus_sizes: Sequence[int]) -> np.ndarray:
    """A kernel of type ``kind`` with a random odd size in ``sizes`` (``defocus_sizes`` for discs)."""
    if kind == "trajectory":
        return trajectory_kernel(_odd_size(rng, sizes), rng)
    if kind == "linear":
        return linear_kernel(_odd_size(rng, sizes), rng.uniform(0, np.pi))
    if kind == "defocus":
        return defocus_kernel(_odd_size(rng, defocus_sizes))
    raise ValueError(f"kernel type must be one of {KERNEL_TYPES}, got {kind!r}")


def random_kernel(rng: np.random.Generator, probs: Mapping[str, float], sizes: Sequence[int],
                  defocus_sizes: Sequence[int]) -> np.ndarray:
    """A kernel whose type is drawn with ``probs`` ({type: probability}, summing to 1)."""
    kinds = list(probs)
    return make_kernel(kinds[int(rng.choice(len(kinds), p=[probs[k] for k in kinds]))], rng, sizes, defocus_sizes)


def kernel_set(count: int, seed: int, sizes: Sequence[int], defocus_sizes: Sequence[int]) -> list[np.ndarray]:
    """The fixed validation kernels: the types in turn (trajectory, linear, defocus, ...), kernel i drawn
    from a generator seeded by (seed, i), so the set never depends on anything else."""
    return [make_kernel(KERNEL_TYPES[i % len(KERNEL_TYPES)], np.random.default_rng([seed, i]), sizes, defocus_sizes)
            for i in range(count)]


def blur_same(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolution of HWC float ``img`` with ``kernel``, the same size, the border mirrored (float32)."""
    h, w = img.shape[:2]
    # filter2D correlates; the flipped kernel makes it a convolution
    out = cv2.filter2D(img.astype(np.float32), -1, np.ascontiguousarray(kernel[::-1, ::-1], np.float32),
                       borderType=cv2.BORDER_REFLECT)
    return out.reshape(h, w, -1)


def blur_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolution of HWC float ``img`` with ``kernel`` over the valid region: (H - k + 1, W - k + 1, C)."""
    k = kernel.shape[0]
    h, w = img.shape[:2]
    if h < k or w < k:
        raise ValueError(f"image {h}x{w} is smaller than the {k}x{k} kernel")
    c = k // 2
    return blur_same(img, kernel)[c : h - c, c : w - c]  # the rows and columns that saw the border cut away


BLUR_SPECS = "defocus:D, linear:L[:DEGREES] or trajectory:S"
MAX_SPEC_SIZE = 63


def kernel_from_spec(spec: str, seed: int = 0) -> np.ndarray:
    """The kernel ``spec`` names: ``defocus:D`` (a disc D px across), ``linear:L[:DEGREES]`` (straight
    motion L px long, DEGREES clockwise from horizontal on screen, default 0) or ``trajectory:S`` (camera
    shake within S x S px, drawn from ``seed``); sizes odd, 3 to ``MAX_SPEC_SIZE``. ValueError otherwise."""
    kind, _, rest = spec.partition(":")
    fields = rest.split(":") if rest else []
    if kind not in KERNEL_TYPES or not 1 <= len(fields) <= (2 if kind == "linear" else 1):
        raise ValueError(f"blur {spec!r}: write {BLUR_SPECS}")
    try:
        size, degrees = int(fields[0]), float(fields[1]) if len(fields) == 2 else 0.0
    except ValueError:
        raise ValueError(f"blur {spec!r}: sizes are whole numbers and DEGREES a number ({BLUR_SPECS})") from None
    if not np.isfinite(degrees):
        raise ValueError(f"blur {spec!r}: DEGREES must be a finite number")
    if size % 2 == 0 or not 3 <= size <= MAX_SPEC_SIZE:
        raise ValueError(f"blur {spec!r}: the size must be odd, from 3 to {MAX_SPEC_SIZE}")
    if kind == "defocus":
        return defocus_kernel(size)
    if kind == "linear":
        return linear_kernel(size, np.deg2rad(degrees))
    return trajectory_kernel(size, np.random.default_rng(seed))


def centre_target(img: np.ndarray, kernel_size: int) -> np.ndarray:
    """The part of the clean image that ``blur_valid`` output pixels sit on (same size, same place)."""
    c = kernel_size // 2
    return img[c : img.shape[0] - c, c : img.shape[1] - c]


def camera_output(blurred: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Blurred light as a camera file holds it: plus N(0, sigma/255), clipped and rounded to 8 bits."""
    noisy = add_gaussian_noise(blurred, sigma, rng)
    return (np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def validation_rng(name: str, kernel_index: int, seed: int) -> np.random.Generator:
    """Noise of validation pair (image, kernel), the same in every run and order."""
    return np.random.default_rng([zlib.crc32(name.encode()), kernel_index, seed])
