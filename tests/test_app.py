"""The web app's restore function without a server: the CLI's results, file forms kept, clear refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spatial_restore.app.restore import PhotoRestorer, RestoreError
from spatial_restore.inference.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
FLOWER = REPO / "datasets" / "samples" / "red_flower_256.png"


@pytest.fixture(scope="module")
def restorer(tmp_path_factory) -> PhotoRestorer:
    return PhotoRestorer(tmp_path_factory.mktemp("work"), device="cpu")


@pytest.fixture(scope="module")
def crop(tmp_path_factory) -> Path:
    """A 64x64 crop of the bundled photo (the shipped model takes about a second on it)."""
    path = tmp_path_factory.mktemp("in") / "flower.png"
    Image.open(FLOWER).crop((96, 96, 160, 160)).save(path)
    return path


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_noise_gives_the_cli_output_and_psnr(restorer, crop, tmp_path, capsys):
    """Same file, same sigma: the app writes what inference.py writes, and reports its PSNR."""
    result = restorer.restore(crop, "default", 25)
    assert cli_main([str(crop), "-o", str(tmp_path / "cli"), "--add-noise", "25", "--device", "cpu"]) == 0
    assert "| flower.png |" in capsys.readouterr().out
    np.testing.assert_array_equal(read(result.output), read(tmp_path / "cli" / "flower.png"))
    assert (result.width, result.height, result.name, result.sigma) == (64, 64, "flower.png", 25.0)
    assert result.psnr_input is not None and result.psnr is not None
    assert result.psnr > result.psnr_input + 5  # the denoiser removed most of the noise
    before = read(result.before)
    assert before.dtype == np.uint8 and before.shape == (64, 64, 3)
    clean = read(crop)
    assert np.abs(before.astype(int) - clean).mean() > 10  # the 'before' side shows the noisy input
    assert result.summary()["psnr"] == result.psnr


def test_blur_gives_the_cli_output_and_psnr(restorer, tmp_path, capsys):
    """Same file, same blur spec: the app writes what inference.py --add-blur writes; the deblurrer gains."""
    result = restorer.restore(FLOWER, "deblur", blur="defocus:9")
    assert cli_main([str(FLOWER), "-o", str(tmp_path / "cli"), "--model", "deblur", "--add-blur", "defocus:9",
                     "--device", "cpu"]) == 0
    assert "| red_flower_256.png |" in capsys.readouterr().out
    np.testing.assert_array_equal(read(result.output), read(tmp_path / "cli" / "red_flower_256.png"))
    assert result.blur == "defocus:9" and result.summary()["blur"] == "defocus:9"
    assert result.psnr > result.psnr_input + 4  # measured: +8.0 dB (first deblur weights: +7.2)
    before, sharp = read(result.before).astype(int), read(FLOWER).astype(int)
    assert np.abs(before - sharp).mean() > 2  # the 'before' side shows the blurred input
    from spatial_restore.app.ui import report

    assert "PSNR with blur defocus:9: " in report([result], [])
    for spec in ("none", "", None):
        assert restorer.restore(FLOWER, "deblur", blur=spec).blur is None


def test_without_noise_no_psnr_and_repeatable(restorer, crop):
    first, second = restorer.restore(crop, "default", 0), restorer.restore(crop, "default", None)
    assert first.psnr is None and first.psnr_input is None
    assert first.output != second.output  # each upload gets its own folder: same names never collide
    np.testing.assert_array_equal(read(first.output), read(second.output))
    np.testing.assert_array_equal(read(first.before), read(crop))


def test_16_bit_alpha_kept(restorer, tmp_path):
    rng = np.random.default_rng(0)
    bgra = rng.integers(0, 65536, (40, 48, 4), dtype=np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), bgra)
    out = read(restorer.restore(path, "default").output)
    assert out.dtype == np.uint16 and out.shape == (40, 48, 4)
    np.testing.assert_array_equal(out[..., 3], bgra[..., 3])


def test_grey_stays_grey(restorer, tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
    result = restorer.restore(path, "default")
    assert read(result.output).shape == (32, 32)
    assert any("grayscale" in note for note in result.notes)


def test_progress_counts_tiles(restorer, crop):
    model = restorer.model("default")
    assert model.restorer.tile == "auto"  # the CLI's default: whole up to 512x512 on the CPU
    assert model.passes(64, 64) == 1
    calls = []
    try:
        model.restorer.tile = 1024
        assert model.passes(3000, 2000) == 12  # 4 x 3 tiles of at most 1024 with 64 overlap
        model.restorer.tile, model.restorer.tile_overlap = 48, 16  # 2 x 2 tiles on the 64x64 crop
        restorer.restore(crop, "default", 0, lambda done, total: calls.append((done, total)))
    finally:
        model.restorer.tile, model.restorer.tile_overlap = "auto", 64
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_bad_file_is_a_one_line_error(restorer, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(RestoreError, match=r"^broken.png: not a readable image"):
        restorer.restore(path, "default")
    with pytest.raises(RestoreError, match="no such file"):
        restorer.restore(tmp_path / "missing.png", "default")


def test_pixel_limit_refuses_before_loading(tmp_path, crop):
    small = PhotoRestorer(tmp_path, device="cpu", max_pixels=64 * 63)
    with pytest.raises(RestoreError, match=r"64x64 is 4,096 pixels, over this app's limit of 4,032 pixels "
                                           r"\(start it with --max-pixels"):
        small.restore(crop, "default")
    assert small._loaded == {}  # refused from the header: nothing decoded, no model loaded


def test_bad_settings(restorer, crop):
    with pytest.raises(RestoreError, match="unknown model 'nope'; available: default, deblur"):
        restorer.restore(crop, "nope")
    with pytest.raises(RestoreError, match="sigma must be between 0 and 255"):
        restorer.restore(crop, "default", -1)
    with pytest.raises(RestoreError, match="blur 'shake:9': write defocus:D"):
        restorer.restore(crop, "default", blur="shake:9")
    with pytest.raises(ValueError, match="max_pixels"):
        PhotoRestorer(Path("."), max_pixels=0)


def test_models_come_from_the_registry(restorer, monkeypatch):
    from spatial_restore import weights

    assert restorer.models == list(weights.SHIPPED)
    monkeypatch.setitem(weights.SHIPPED, "inpaint", "not_installed_yet")
    later = PhotoRestorer(restorer.workdir, device="cpu")
    assert "inpaint" in later.models
    with pytest.raises(RestoreError, match="model 'inpaint' cannot be loaded: shipped model 'inpaint' is not installed"):
        later.restore(FLOWER, "inpaint")


def test_entry_point_port_taken_exits_2(capsys):
    """Nothing served: one line on stderr, exit code 2."""
    import socket

    from spatial_restore.app.__main__ import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["--port", str(taken.getsockname()[1]), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_report_names_refused_files_escaped():
    from spatial_restore.app.ui import report

    assert report([], ["<b>.png: not a readable image"]) == "- not restored: &lt;b&gt;.png: not a readable image"
