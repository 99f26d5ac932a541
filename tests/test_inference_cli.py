"""inference.py end to end on a tiny model: bad inputs never stop the batch, outputs never clobber anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spatial_restore.inference.cli import main
from spatial_restore.inference.restorer import Restorer

REPO = Path(__file__).resolve().parents[1]


def photo(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def run_main_error(capsys, *args: str) -> tuple[int, str, str]:
    """An argument error: argparse exits (code 2) with its message on stderr."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_corrupt_file_does_not_stop_the_others(tmp_path, model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(src / f"ok{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (src / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, src, tmp_path / "missing.png", "-o", tmp_path / "out", "--model", model,
                       "--json", tmp_path / "r.json")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.png", "ok1.png"]
    assert "error: " + str(src / "broken.png") + ": not a readable image" in err
    assert f"error: {tmp_path / 'missing.png'}: no such file or folder" in err
    assert "skipped 1 file(s) without an image extension" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failed"] == 2 and [r["status"] for r in report["images"]] == ["error", "ok", "ok", "error"]


def test_all_good_exits_zero_with_table_and_json(tmp_path, model, capsys, monkeypatch):
    monkeypatch.setenv("SPATIAL_RESTORE_LPIPS_BACKBONE", str(tmp_path / "absent.pth"))
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(tmp_path / f"p{i}.png")
    code, out, err = run(capsys, str(tmp_path / "p*.png"), "-o", tmp_path / "out", "--model", model,
                         "--add-noise", "25", "--json", tmp_path / "r.json")
    assert code == 0
    assert err.count("LPIPS skipped") == 1
    assert "| image | PSNR in | PSNR out | SSIM in | SSIM out | LPIPS out |" in out
    assert "| p0.png |" in out and "| **mean** |" in out and "2 of 2 image(s) restored" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["arch"] == "SpatialMambaUNet" and report["settings"]["add_noise"] == 25.0
    first = report["images"][0]
    assert first["status"] == "ok" and first["lpips"] is None and first["psnr_input"] < 25
    assert report["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in report["images"]]))


def test_gt_folder_matched_by_name_with_lpips(tmp_path, model, capsys, monkeypatch):
    monkeypatch.setattr("spatial_restore.inference.cli.lpips_unavailable", lambda: None)
    monkeypatch.setattr("spatial_restore.metrics.lpips_distance", lambda a, b, data_range=None: 0.25)
    (tmp_path / "in").mkdir()
    (tmp_path / "gt").mkdir()
    clean = photo()
    Image.fromarray(clean).save(tmp_path / "gt" / "a.png")
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "in" / "a.png")
    Image.fromarray(noisy).save(tmp_path / "in" / "b.png")  # no ground truth for this one
    code, _, err = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--gt", tmp_path / "gt",
                       "--json", tmp_path / "r.json", "--compare")
    assert code == 0
    assert "b.png: no ground truth for it" in err
    a, b = json.loads((tmp_path / "r.json").read_text())["images"]
    assert a["lpips"] == 0.25 and a["psnr"] > 0 and "psnr" not in b
    compare = np.asarray(Image.open(tmp_path / "out" / "compare" / "a.png"))
    assert compare.shape == (24, 3 * 32 + 2 * 8, 3)


def test_refuses_to_write_over_inputs(tmp_path, model, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path, "--model", model)
    assert code == 2 and "holds input images" in err
    assert (tmp_path / "a.png").read_bytes() == before


def test_compile_on_the_cpu_is_refused_before_anything_runs(tmp_path, model, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--model", model,
                       "--device", "cpu", "--compile")
    assert code == 2 and "--compile is for CUDA devices" in err
    assert not (tmp_path / "out").exists()


def test_add_blur_blurs_the_input_and_scores_against_the_sharp_one(tmp_path, model, capsys, monkeypatch):
    """--add-blur as --add-noise: the network gets the blurred input (then noised), the sharp input is the truth."""
    from spatial_restore.data.blur import blur_same, kernel_from_spec

    monkeypatch.setenv("SPATIAL_RESTORE_LPIPS_BACKBONE", str(tmp_path / "absent.pth"))
    sharp = cv2.GaussianBlur(photo(40, 48), (0, 0), 0.7)
    Image.fromarray(sharp).save(tmp_path / "a.png")
    seen = []
    monkeypatch.setattr(Restorer, "__call__", lambda self, image: seen.append(image) or image)
    code, _, _ = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--model", model, "--add-blur",
                     "trajectory:7", "--seed", "3", "--json", tmp_path / "r.json")
    assert code == 0
    expected = blur_same(sharp.astype(np.float32) / 255, kernel_from_spec("trajectory:7", seed=3))
    np.testing.assert_allclose(seen[0], expected, atol=1e-6)
    report = json.loads((tmp_path / "r.json").read_text())
    row = report["images"][0]
    assert report["settings"]["add_blur"] == "trajectory:7" and row["psnr"] == pytest.approx(row["psnr_input"], abs=0.05)
    assert row["psnr_input"] < 40  # scored against the sharp input, not against itself
    code, _, err = run_main_error(capsys, tmp_path / "a.png", "-o", tmp_path / "out2", "--add-blur", "defocus:4")
    assert code == 2 and "the size must be odd" in err and not (tmp_path / "out2").exists()


def test_a_grey_picture_in_an_rgb_file_comes_out_grey_unless_asked_not_to(tmp_path, model, capsys):
    rng = np.random.default_rng(5)
    grey = np.repeat(rng.integers(60, 200, (48, 64, 1)), 3, axis=2)
    noisy = np.clip(grey + rng.normal(0, 20, grey.shape), 0, 255).astype(np.uint8)  # independent per channel
    Image.fromarray(noisy).save(tmp_path / "g.png")
    assert run(capsys, tmp_path / "g.png", "-o", tmp_path / "a", "--model", model)[0] == 0
    assert run(capsys, tmp_path / "g.png", "-o", tmp_path / "b", "--model", model, "--no-keep-grey")[0] == 0
    kept, raw = (np.asarray(Image.open(tmp_path / d / "g.png")).astype(int) for d in ("a", "b"))
    assert kept.shape == raw.shape == (48, 64, 3)
    assert np.abs(kept[..., 0] - kept[..., 2]).max() == 0
    assert np.abs(raw[..., 0] - raw[..., 2]).max() > 0


def test_existing_outputs_kept_unless_overwrite(tmp_path, model, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"precious")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--model", model)
    assert code == 1 and "exists (pass --overwrite" in err
    assert (tmp_path / "out" / "a.png").read_bytes() == b"precious"
    code, _, _ = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--model", model, "--overwrite")
    assert code == 0 and Image.open(tmp_path / "out" / "a.png").size == (32, 24)


def test_output_name_clash(tmp_path, model, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    Image.fromarray(photo()).save(tmp_path / "a.jpg")
    code, _, err = run(capsys, tmp_path / "a.png", tmp_path / "a.jpg", "-o", tmp_path / "out", "--model", model)
    assert code == 1 and "a.jpg: output name a.png clashes with" in err


def test_awkward_images_keep_their_form(tmp_path, model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "deep.png"), np.full((24, 32, 3), 40000, np.uint16))
    cv2.imwrite(str(src / "deep2.tif"), np.full((24, 32, 3), 1000, np.uint16))
    Image.fromarray(photo()[..., 0]).save(src / "grey.png")
    Image.fromarray(np.concatenate([photo(), np.full((24, 32, 1), 9, np.uint8)], 2), "RGBA").save(src / "alpha.png")
    Image.fromarray(photo()[:3, :5]).save(src / "tiny.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(photo(20, 40)).save(src / "phone.jpg", exif=exif)
    code, _, err = run(capsys, src, "-o", tmp_path / "out", "--model", model)
    assert code == 0
    out = {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / "out").glob("*.png")}
    assert out["deep"].dtype == np.uint16 and out["deep"].shape == (24, 32, 3)
    assert out["deep2"].dtype == np.uint16
    assert out["grey"].shape == (24, 32) and out["grey"].dtype == np.uint8
    assert out["alpha"].shape == (24, 32, 4) and (out["alpha"][..., 3] == 9).all()
    assert out["tiny"].shape == (3, 5, 3)
    assert out["phone"].shape == (40, 20, 3)
    for note in ("16-bit", "grayscale", "alpha channel kept aside", "smaller than the network stride",
                 "EXIF orientation 8"):
        assert note in err


def test_missing_default_weights_fail_clearly(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("spatial_restore.weights.WEIGHTS_DIR", tmp_path)
    Image.fromarray(photo()).save(tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out")
    assert code == 2 and "shipped model 'default' is not installed" in err


def test_script_help_matches_docs():
    """docs/usage.md quotes `inference.py --help` (rendered 100 columns wide) verbatim."""
    help_text = subprocess.run([sys.executable, "inference.py", "--help"], cwd=REPO, capture_output=True, text=True,
                               env={"COLUMNS": "100", "PATH": ""}, check=True).stdout
    assert help_text.strip() in (REPO / "docs" / "usage.md").read_text()


@pytest.mark.parametrize("args, views", [([], 1), (["--self-ensemble"], 8), (["--self-ensemble", "2"], 2),
                                         (["--self-ensemble=4"], 4)])
def test_self_ensemble_views_reach_the_restorer(tmp_path, model, capsys, monkeypatch, args, views):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    built = []
    monkeypatch.setattr("spatial_restore.inference.cli.Restorer",
                        lambda *a, **k: built.append(Restorer(*a, **k)) or built[-1])
    code, _, _ = run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--model", model, *args)
    assert code == 0 and [r.self_ensemble for r in built] == [views]


@pytest.mark.parametrize("value", ["3", "a.png"])
def test_self_ensemble_refuses_other_view_counts_with_a_hint(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["--self-ensemble", value, str(tmp_path / "a.png"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "N must be one of 1, 2, 4, 8" in err and f"got '{value}'" in err
