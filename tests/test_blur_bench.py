"""bench deblur: blurred input, Wiener and RL given the true kernel (oracle parameter), a model, JSON and figure."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from spatial_restore.bench import deblur


def bench_options(tmp_path):
    """Two small photos and an option file whose val set blurs each with 2 kernels of 5-9 px."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(2):
        img = cv2.GaussianBlur(rng.integers(0, 256, (56, 64, 3)).astype(np.uint8), (0, 0), 1.0)
        cv2.imwrite(str(tmp_path / "photos" / f"p{i}.png"), img)
    options = tmp_path / "deblur.yml"
    options.write_text(yaml.safe_dump({"datasets": {"val": {
        "type": "SyntheticBlurDataset", "dataroot_gt": str(tmp_path), "folders": ["photos"],
        "kernel_size": [5, 9], "defocus_size": [5, 7], "noise_range": [0, 1], "val_kernels": 2}}}))
    return options


def test_baselines_given_the_true_kernel_beat_the_blurred_input(tmp_path):
    out, fig = tmp_path / "d.json", tmp_path / "fig.png"
    deblur.main(["--options", str(bench_options(tmp_path)), "--json", str(out), "--figure", str(fig)])
    report = json.loads(out.read_text())
    results = report["results"]
    assert list(results) == ["blurred", "wiener", "rl"] and report["pairs"] == ["p0_k0", "p0_k1", "p1_k0", "p1_k1"]
    for method in ("wiener", "rl"):
        assert results[method]["psnr"] > results["blurred"]["psnr"] + 1
        params = {r["param"] for r in results[method]["images"]}
        assert params <= set(deblur.WIENER_BALANCES if method == "wiener" else deblur.RL_ITERATIONS)
    widths = [r["kernel_size"] for r in results["blurred"]["images"][:2]]  # p0's two kernels: its two rows
    side = 56 - max(widths) + 1  # the smaller valid region's short side
    assert cv2.imread(str(fig)).shape == (2 * side, 4 * side, 3)  # target + 3 methods


def test_a_model_is_scored_and_ours_needs_one(tmp_path):
    options = bench_options(tmp_path)
    out = tmp_path / "d.json"
    # plumbing only: the shipped denoiser stands in for a deblurring model (it neither wrecks nor deblurs)
    deblur.main(["--options", str(options), "--methods", "blurred,ours,ours_x2", "--model", "default",
                 "--device", "cpu", "--limit", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert (report["device"], report["precision"], report["tile"]) == ("cpu", "fp32", None)  # how it ran
    results = report["results"]
    assert list(results) == ["blurred", "ours", "ours_x2"] and len(results["ours_x2"]["images"]) == 2
    assert abs(results["ours"]["psnr"] - results["blurred"]["psnr"]) < 5  # it neither wrecks nor deblurs
    # the ×2 ensemble averages a second (half-turned) view: other outputs, of about the same quality
    single, double = ([r["psnr"] for r in results[m]["images"]] for m in ("ours", "ours_x2"))
    assert all(abs(a - b) > 1e-4 and abs(a - b) < 1 for a, b in zip(single, double))
    for argv in (["--methods", "ours"], ["--methods", "ours_x8"], ["--methods", "sharp"], ["--dataset", "nosuch"]):
        with pytest.raises(SystemExit) as info:
            deblur.main(["--options", str(options), *argv])
        assert info.value.code != 0
