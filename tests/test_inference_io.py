"""Image files in and out: every kind of awkward input a user may have is read or refused in one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from spatial_restore.image_io import ImageReadError, encode_like, read_image, write_png


def photo(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_8bit_rgb_round_trip(tmp_path):
    rgb = photo()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    assert pic.rgb.dtype == np.float32 and pic.rgb.shape == (24, 32, 3) and pic.bit_depth == 8
    assert not pic.gray and pic.alpha is None
    write_png(tmp_path / "b.png", encode_like(pic, pic.rgb))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgb)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_kept_exactly(tmp_path, suffix):
    rgb16 = np.random.default_rng(1).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"a{suffix}"), rgb16[..., ::-1])
    pic = read_image(tmp_path / f"a{suffix}")
    assert pic.bit_depth == 16 and any("16-bit" in n for n in pic.notes)
    np.testing.assert_allclose(pic.rgb, rgb16 / 65535.0, atol=1e-7)
    write_png(tmp_path / "out.png", encode_like(pic, pic.rgb))
    back = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[..., ::-1], rgb16)


def test_grayscale_goes_through_colour_and_back(tmp_path):
    grey = photo()[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    pic = read_image(tmp_path / "g.png")
    assert pic.gray and pic.rgb.shape == (24, 32, 3)
    assert np.array_equal(pic.rgb[..., 0], pic.rgb[..., 2])
    out = encode_like(pic, pic.rgb)
    assert out.shape == (24, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, grey)


def test_alpha_kept_aside_and_reattached(tmp_path):
    rgba = np.concatenate([photo(), np.arange(24 * 32, dtype=np.uint8).reshape(24, 32, 1)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    assert pic.rgb.shape == (24, 32, 3) and pic.alpha is not None
    out = encode_like(pic, 1.0 - pic.rgb)  # a "restoration" that changes colour must leave alpha alone
    write_png(tmp_path / "o.png", out)
    back = np.asarray(Image.open(tmp_path / "o.png"))
    assert back.shape == (24, 32, 4)
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(back[..., :3], 255 - rgba[..., :3])


def test_grey_with_alpha(tmp_path):
    la = np.stack([photo()[..., 0], np.full((24, 32), 77, np.uint8)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    pic = read_image(tmp_path / "la.png")
    out = encode_like(pic, pic.rgb)
    np.testing.assert_array_equal(out[..., 3], 77)
    np.testing.assert_array_equal(out[..., 0], la[..., 0])


def test_exif_orientation_applied_for_jpeg(tmp_path):
    img = Image.fromarray(photo(20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    img.save(tmp_path / "p.jpg", exif=exif, quality=95)
    pic = read_image(tmp_path / "p.jpg")
    assert pic.shape == (40, 20)
    assert any("EXIF orientation 6" in n for n in pic.notes)


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.png", b"", "empty file"),
    ("text.png", b"this is not an image", "not a readable image"),
    ("text.jpg", b"this is not an image either", "corrupt or truncated JPEG"),
])
def test_non_images_refused_in_one_line(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(tmp_path / name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_refused(tmp_path, suffix):
    Image.fromarray(photo(64, 64)).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / f"cut{suffix}")


def test_unreadable_file(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path / "absent.png")


def test_float_images_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageReadError, match="only 8- and 16-bit"):
        read_image(tmp_path / "f.tif")
