"""PSNR/SSIM agree with scikit-image on every bit depth; LPIPS works offline and says what is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from spatial_restore import metrics
from spatial_restore.metrics import LPIPSWeightsMissing, build_lpips, calculate_lpips, lpips_distance, psnr, ssim


def noisy_pair(dtype, seed: int, shape=(37, 52, 3)):
    rng = np.random.default_rng(seed)
    peak = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1.0)
    clean = rng.random(shape)
    noisy = np.clip(clean + rng.normal(0, 0.05, shape), 0, 1)
    if dtype in (np.uint8, np.uint16):
        return np.round(clean * peak).astype(dtype), np.round(noisy * peak).astype(dtype), peak
    return clean.astype(dtype), noisy.astype(dtype), peak


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_psnr_and_ssim_match_scikit_image(dtype):
    a, b, peak = noisy_pair(dtype, seed=int(np.random.SeedSequence().entropy % 2**31))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=peak), abs=1e-6)
    # skimage with the Gaussian window (sigma 1.5) and population covariance is the same SSIM as basicsr's
    expected = structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=peak, channel_axis=2,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-4)


def test_grey_images_and_shape_mismatch():
    a, b, _ = noisy_pair(np.uint8, seed=3, shape=(30, 40))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, b[:, :-1])


def test_lpips_with_random_backbone_orders_distortions():
    a, b, _ = noisy_pair(np.float32, seed=4, shape=(64, 64, 3))
    worse = np.clip(a + np.random.default_rng(5).normal(0, 0.3, a.shape), 0, 1).astype(np.float32)
    same = lpips_distance(a, a, random_backbone=True)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert lpips_distance(a, worse, random_backbone=True) > lpips_distance(a, b, random_backbone=True) > same
    u8 = (a * 255).round().astype(np.uint8)
    assert calculate_lpips(u8, u8[..., ::-1].copy(), random_backbone=True) > 0  # registered basicsr hook


def test_missing_backbone_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.lpips_metric.BACKBONE_ENV, str(tmp_path / "nowhere" / metrics.BACKBONE_FILE))
    with pytest.raises(LPIPSWeightsMissing) as err:
        build_lpips()
    assert metrics.BACKBONE_FILE in str(err.value) and str(tmp_path / "nowhere") in str(err.value)


def test_backbone_weights_are_loaded_from_the_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path / metrics.BACKBONE_FILE
    torch.save(features, path)
    monkeypatch.setenv(metrics.lpips_metric.BACKBONE_ENV, str(path))
    model = build_lpips()
    torch.testing.assert_close(model.net.slice1.get_submodule("0").weight, features["features.0.weight"])
    torch.testing.assert_close(model.net.slice5.get_submodule("10").bias, features["features.10.bias"])
