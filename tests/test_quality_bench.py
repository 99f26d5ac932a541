"""The quality bench: our plain and self-ensembled model side by side in one run, JSON per method."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from spatial_restore.bench import quality
from spatial_restore.data.restoration_dataset import grey_rgb


def smooth_photo(h: int, w: int, shift: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x / w, y / h, 0.5 + 0.3 * np.sin((x + y) / 9 + shift)], axis=2)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def test_ours_and_its_ensembles_are_all_scored(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), smooth_photo(40, 56, i)[..., ::-1])
    out = tmp_path / "q.json"
    quality.main(["--data", str(tmp_path), "--sigmas", "25", "--methods", "noisy,ours,ours_x2,ours_x8",
                  "--device", "cpu", "--json", str(out)])
    report = json.loads(out.read_text())
    assert (report["device"], report["precision"]) == ("cpu", "fp32")  # how ours ran
    results = report["results"]["25"]
    assert set(results) == {"noisy", "ours", "ours_x2", "ours_x8"}
    assert [r["image"] for r in results["ours_x8"]["images"]] == ["p0.png", "p1.png"]
    ours = ("ours", "ours_x2", "ours_x8")
    for method in ours:  # the shipped denoiser removes most of sigma-25 noise
        assert results[method]["psnr"] > results["noisy"]["psnr"] + 5
    assert len({results[m]["psnr"] for m in ours}) == 3  # different estimates, not copies


def test_unknown_method_is_refused():
    with pytest.raises(SystemExit):
        quality.main(["--methods", "ours,ours_x16"])


def test_grey_files_are_desaturated_with_one_noise_field_and_denoised(tmp_path):
    clean = grey_rgb(smooth_photo(40, 56, 0).astype(np.float64) / 255)
    noisy = quality.noisy_version(clean, 25, shared=True)
    np.testing.assert_array_equal(noisy[..., 0], noisy[..., 2])
    assert abs((noisy - clean).std() * 255 - 25) < 2  # 2,240 samples: the std's s.e. is 0.4
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), smooth_photo(40, 56, i)[..., ::-1])
    out = tmp_path / "q.json"
    quality.main(["--data", str(tmp_path), "--sigmas", "25", "--methods", "noisy,nlm,cbm3d,ours", "--grey-files",
                  "--device", "cpu", "--json", str(out)])
    report = json.loads(out.read_text())
    results = report["results"]["25"]
    assert report["grey_files"] is True
    assert results["nlm"]["psnr"] > results["noisy"]["psnr"] + 3  # grey NLM on the one channel
    assert results["cbm3d"]["psnr"] > results["noisy"]["psnr"] + 5  # BM3D on the one channel, told sigma
    assert results["ours"]["psnr"] > results["noisy"]["psnr"] + 10  # the stage-6 model managed +4.5 on grey files


def test_tile_option_reaches_our_restorer(tmp_path):
    cv2.imwrite(str(tmp_path / "wide.png"), smooth_photo(40, 520, 0)[..., ::-1])
    psnrs = {}
    for tile in ("0", "448"):  # 448: two balanced tiles across the 520-pixel width
        out = tmp_path / f"q{tile}.json"
        quality.main(["--data", str(tmp_path), "--sigmas", "25", "--methods", "ours", "--device", "cpu",
                      "--tile", tile, "--json", str(out)])
        report = json.loads(out.read_text())
        assert report["tile"] == int(tile)
        psnrs[tile] = report["results"]["25"]["ours"]["psnr"]
    assert psnrs["0"] != psnrs["448"] and abs(psnrs["0"] - psnrs["448"]) < 0.5  # blended tiles: close, not equal
