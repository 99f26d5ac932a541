"""Synthetic blur: kernels (normalised, non-negative, seeded, sized, centred), valid convolution without
shift, camera noise and rounding, and SyntheticBlurDataset pairs that align with their targets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from spatial_restore.data import SyntheticBlurDataset
from spatial_restore.data import blur

SIZES, DEFOCUS = (5, 31), (5, 11)


def centroid(img: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of mass of a 2-D array."""
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return float((img * xx).sum() / img.sum()), float((img * yy).sum() / img.sum())


def kernels_of_every_type(seed: int) -> dict[str, np.ndarray]:
    return {kind: blur.make_kernel(kind, np.random.default_rng(seed), SIZES, DEFOCUS) for kind in blur.KERNEL_TYPES}


@pytest.mark.parametrize("size", [5, 9, 17, 31])
def test_kernels_are_normalised_non_negative_centred_and_of_the_requested_size(size):
    rng = np.random.default_rng(size)
    for kernel in (blur.trajectory_kernel(size, rng), blur.linear_kernel(size, 0.7), blur.defocus_kernel(size)):
        assert kernel.shape == (size, size)
        assert kernel.min() >= 0 and abs(kernel.sum() - 1) < 1e-12
        np.testing.assert_allclose(centroid(kernel), ((size - 1) / 2,) * 2, atol=1e-9)
        assert kernel.max() < 1  # a blur, not a delta
    with pytest.raises(ValueError, match="odd"):
        blur.defocus_kernel(8)


def test_kernels_are_seeded():
    one, two, other = kernels_of_every_type(3), kernels_of_every_type(3), kernels_of_every_type(4)
    for kind in blur.KERNEL_TYPES:
        np.testing.assert_array_equal(one[kind], two[kind])
    assert not np.array_equal(one["trajectory"], other["trajectory"])
    sizes = {blur.make_kernel("trajectory", np.random.default_rng(s), SIZES, DEFOCUS).shape[0] for s in range(30)}
    assert all(5 <= s <= 31 and s % 2 for s in sizes) and len(sizes) > 5
    assert all(blur.make_kernel("defocus", np.random.default_rng(s), SIZES, DEFOCUS).shape[0] <= 11 for s in range(10))


def test_validation_kernel_set_is_fixed_and_takes_the_types_in_turn():
    first, again = blur.kernel_set(6, 0, SIZES, DEFOCUS), blur.kernel_set(6, 0, SIZES, DEFOCUS)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(blur.kernel_set(3, 0, SIZES, DEFOCUS), first):  # a shorter set is a prefix
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(blur.kernel_set(1, 1, SIZES, DEFOCUS)[0], first[0])
    np.testing.assert_array_equal(first[2], blur.defocus_kernel(first[2].shape[0]))  # the third is a disc


def test_blur_is_a_true_convolution_over_the_valid_region():
    rng = np.random.default_rng(0)
    img = rng.random((40, 33, 3)).astype(np.float32)
    kernel = blur.trajectory_kernel(9, rng)
    out = blur.blur_valid(img, kernel)
    assert out.shape == (32, 25, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], convolve2d(img[..., c], kernel, mode="valid"), atol=1e-5)


def test_a_delta_kernel_gives_the_target_and_blur_keeps_a_dot_in_place():
    rng = np.random.default_rng(1)
    img = rng.random((30, 28, 3)).astype(np.float32)
    delta = np.zeros((7, 7))
    delta[3, 3] = 1
    np.testing.assert_array_equal(blur.blur_valid(img, delta), blur.centre_target(img, 7))
    dot = np.zeros((61, 61, 1), np.float32)
    dot[30, 30] = 1
    for kind, kernel in kernels_of_every_type(5).items():
        k = kernel.shape[0]
        blurred, target = blur.blur_valid(dot, kernel)[..., 0], blur.centre_target(dot, k)[..., 0]
        np.testing.assert_allclose(centroid(blurred), centroid(target), atol=1e-4, err_msg=kind)


def test_camera_output_is_8_bit_and_noisy_at_the_requested_level():
    clean = np.full((64, 64, 3), 0.5, np.float32)
    out = blur.camera_output(clean, 3.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out * 255, np.round(out * 255))
    assert abs((out - clean).std() * 255 - 3.0) < 0.3
    np.testing.assert_array_equal(blur.camera_output(clean + 0.001, 0.0, np.random.default_rng(0)), np.round(
        (clean + 0.001) * 255) / 255)


def photos(folder, count: int = 2, size: int = 80):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        img = cv2.GaussianBlur(rng.integers(0, 256, (size, size + 6, 3)).astype(np.uint8), (0, 0), 1.5)
        cv2.imwrite(str(folder / f"p{i}.png"), img)
    return folder


def test_validation_pairs_are_deterministic_and_aligned(tmp_path):
    opt = {"phase": "val", "dataroot_gt": str(photos(tmp_path)), "kernel_size": [5, 15], "val_kernels": 3}
    one, two = SyntheticBlurDataset(opt), SyntheticBlurDataset(opt)
    assert len(one) == 2 * 3
    for i in range(len(one)):
        a, b = one[i], two[i]
        torch.testing.assert_close(a["lq"], b["lq"], rtol=0, atol=0)
        assert a["lq"].shape == a["gt"].shape
        name, gt, lq, kernel = one.pair(i)
        k = kernel.shape[0]
        assert gt.shape == (80 - k + 1, 86 - k + 1, 3)
        clean = cv2.imread(str(tmp_path / f"p{i // 3}.png"))[..., ::-1].astype(np.float32) / 255
        assert np.abs(lq - blur.blur_valid(clean, kernel)).max() <= 3.5 * 4 / 255  # noise sigma <= 3, rounding
        np.testing.assert_array_equal(gt, blur.centre_target(clean, k))
    assert one.pair(4)[0] == "p1_k1"


def best_shift(lq: np.ndarray, gt: np.ndarray, reach: int = 3) -> tuple[int, int]:
    """The integer shift (dy, dx) of gt that matches lq best (least mean squared difference)."""
    h, w = gt.shape[:2]
    errors = {}
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            a = lq[reach : h - reach, reach : w - reach]
            b = gt[reach + dy : h - reach + dy, reach + dx : w - reach + dx]
            errors[dy, dx] = float(((a - b) ** 2).mean())
    return min(errors, key=errors.get)


def test_training_crops_align_with_their_targets(tmp_path):
    torch.manual_seed(0)  # the training samples draw from torch's generator
    # point-symmetric kernels only: with those no shift can match better than none (a shake kernel's
    # heavier end would pull the best-matching shift towards it; its centring is tested above)
    opt = {"phase": "train", "dataroot_gt": str(photos(tmp_path, 1, 96)), "gt_size": 40, "kernel_size": [5, 15],
           "noise_range": [0, 0], "kernel_probs": {"linear": 0.5, "defocus": 0.5}}
    ds = SyntheticBlurDataset(opt)
    for _ in range(6):
        sample = ds[0]
        assert sample["lq"].shape == sample["gt"].shape == (3, 40, 40)
        lq, gt = (sample[k].permute(1, 2, 0).numpy() for k in ("lq", "gt"))
        assert best_shift(lq, gt) == (0, 0)


def test_bad_options_are_errors(tmp_path):
    base = {"phase": "train", "dataroot_gt": str(photos(tmp_path, 1)), "gt_size": 16}
    for bad, message in (({"kernel_probs": {"trajectory": 0.5}}, "kernel_probs"),
                         ({"kernel_probs": {"gaussian": 1.0}}, "kernel_probs"),
                         ({"noise_range": [3, 1]}, "noise_range")):
        with pytest.raises(ValueError, match=message):
            SyntheticBlurDataset({**base, **bad})
    with pytest.raises(ValueError, match="no odd size"):
        SyntheticBlurDataset({**base, "kernel_size": [6, 6]})


def test_the_deblur_options_use_only_keys_the_dataset_reads():
    from pathlib import Path

    import yaml

    from spatial_restore.options import LOADER_KEYS, dataset_keys

    options = Path(__file__).resolve().parents[1] / "options" / "train" / "deblur_synthetic.yml"
    accepted = dataset_keys(SyntheticBlurDataset) | LOADER_KEYS
    assert {"kernel_size", "noise_range", "holdout", "dataroot_gt"} <= accepted
    for opt in yaml.safe_load(options.read_text())["datasets"].values():
        assert set(opt) <= accepted, set(opt) - accepted


def test_blur_same_keeps_the_size_and_agrees_with_the_valid_blur_inside():
    rng = np.random.default_rng(2)
    img = rng.random((30, 41, 3)).astype(np.float32)
    kernel = blur.linear_kernel(7, 0.4)
    same = blur.blur_same(img, kernel)
    assert same.shape == img.shape
    np.testing.assert_array_equal(same[3:-3, 3:-3], blur.blur_valid(img, kernel))


def test_kernel_specs_name_the_training_kernels():
    np.testing.assert_array_equal(blur.kernel_from_spec("defocus:9"), blur.defocus_kernel(9))
    np.testing.assert_array_equal(blur.kernel_from_spec("linear:15:30"), blur.linear_kernel(15, np.deg2rad(30)))
    np.testing.assert_array_equal(blur.kernel_from_spec("linear:15"), blur.linear_kernel(15, 0.0))
    shake = blur.kernel_from_spec("trajectory:19", seed=4)
    np.testing.assert_array_equal(shake, blur.trajectory_kernel(19, np.random.default_rng(4)))
    assert not np.array_equal(shake, blur.kernel_from_spec("trajectory:19", seed=5))


@pytest.mark.parametrize("spec, message", [
    ("blur:9", "write defocus:D"), ("defocus", "write defocus:D"), ("defocus:9:10", "write defocus:D"),
    ("linear:15:30:1", "write defocus:D"), ("defocus:nine", "whole numbers"), ("linear:15:east", "whole numbers"),
    ("linear:15:nan", "finite"), ("defocus:8", "odd, from 3 to 63"), ("trajectory:65", "odd, from 3 to 63"),
    ("defocus:1", "odd, from 3 to 63"),
])
def test_bad_kernel_specs_say_what_to_write(spec, message):
    with pytest.raises(ValueError, match=message):
        blur.kernel_from_spec(spec)
