"""Several folders under one root, the held-out split rule (never in training) and the validation centre crop."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from spatial_restore.data import GaussianNoiseDataset, list_images
from spatial_restore.data.image_sets import centre_crop, dataset_images, holdout_split

REPO = Path(__file__).resolve().parents[1]


def photo_root(tmp_path: Path, extra: int = 23) -> Path:
    """root/photos/train (3 files) and root/photos_extra/train (``extra`` files, names out of creation order)."""
    rng = np.random.default_rng(0)
    for folder, names in (("photos/train", ["p0.png", "p1.png", "p2.png"]),
                          ("photos_extra/train", [f"x{(7 * i) % extra:02d}.jpg" for i in range(extra)])):
        (tmp_path / folder).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(tmp_path / folder / name), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return tmp_path


def test_holdout_split_takes_every_nth_by_sorted_name():
    paths = [Path(f"d/{n:03d}.png") for n in reversed(range(25))]
    rest, held = holdout_split(paths, 11)
    assert [p.name for p in held] == ["010.png", "021.png"]
    assert len(rest) == 23 and not set(rest) & set(held) and set(rest) | set(held) == set(paths)
    with pytest.raises(ValueError, match=">= 2"):
        holdout_split(paths, 1)


def test_train_side_excludes_exactly_what_the_validation_side_reads(tmp_path):
    root = photo_root(tmp_path)
    rule = {"folder": "photos_extra/train", "every": 11}
    train = dataset_images({"dataroot_gt": str(root), "folders": ["photos/train", "photos_extra/train"],
                            "holdout": rule}, list_images)
    val = dataset_images({"dataroot_gt": str(root), "folders": ["photos_extra/train"], "holdout": rule,
                          "holdout_keep": "held_out"}, list_images)
    assert [p.name for p in val] == ["x10.jpg", "x21.jpg"]
    assert not set(train) & set(val)
    assert len(train) == 3 + 23 - 2 and {p.parent.name for p in train} == {"train"}
    everything = set(list_images(root / "photos/train")) | set(list_images(root / "photos_extra/train"))
    assert set(train) | set(val) == everything


def test_folders_default_to_the_root_and_bad_rules_are_errors(tmp_path):
    root = photo_root(tmp_path)
    assert len(dataset_images({"dataroot_gt": str(root / "photos/train")}, list_images)) == 3
    base = {"dataroot_gt": str(root), "folders": ["photos/train"]}
    bad = [({"holdout": {"folder": "photos_extra/train", "every": 11}}, "not one of folders"),
           ({"holdout": {"folder": "photos/train"}}, "exactly 'folder' and 'every'"),
           ({"holdout_keep": "held_out"}, "needs a holdout"),
           ({"holdout_keep": "test"}, "holdout_keep must be"),
           ({"folders": ["photos/train", "photos_extra/train"], "holdout_keep": "held_out",
             "holdout": {"folder": "photos_extra/train", "every": 11}}, "reads only")]
    for extra, message in bad:
        with pytest.raises(ValueError, match=message):
            dataset_images({**base, **extra}, list_images)


def test_centre_crop_is_the_centre_and_never_larger_than_the_image():
    img = np.arange(6 * 10).reshape(6, 10, 1)
    np.testing.assert_array_equal(centre_crop(img, 4), img[1:5, 3:7])
    assert centre_crop(img, 8).shape == (6, 8, 1)
    assert centre_crop(img, None) is img


def test_the_default_denoiser_options_hold_out_the_same_photos_on_both_sides(tmp_path):
    """The shipped recipe: every validation set that reads photos_extra reads only its held-out files,
    and the training set reads the rest, by the one rule written in the file."""
    root = photo_root(tmp_path)
    datasets = yaml.safe_load((REPO / "options/train/default_denoiser.yml").read_text())["datasets"]
    for opt in datasets.values():
        opt.update(dataroot_gt=str(root), phase="train" if opt is datasets["train"] else "val")
    train = set(GaussianNoiseDataset(datasets["train"]).paths)
    extra_vals = [set(GaussianNoiseDataset(o).paths) for k, o in datasets.items()
                  if k != "train" and "photos_extra/train" in o.get("folders", [])]
    assert extra_vals and all(v and not v & train for v in extra_vals)
    assert datasets["train"]["holdout"] == datasets["val_extra"]["holdout"]
    sample = GaussianNoiseDataset(datasets["val_extra"])[0]
    assert sample["gt"].shape[1:] == (20, 24)  # centre_crop 512 leaves these small images whole


def test_export_split_writes_the_held_out_crops_and_never_overwrites(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_split", REPO / "datasets" / "export_split.py")
    export_split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_split)
    root = photo_root(tmp_path / "data")
    opt = {"dataroot_gt": str(root), "folders": ["photos_extra/train"], "holdout_keep": "held_out",
           "holdout": {"folder": "photos_extra/train", "every": 11}, "centre_crop": 16}
    written = export_split.export(opt, tmp_path / "out")
    assert [p.name for p in written] == ["x10.png", "x21.png"]
    source = cv2.imread(str(root / "photos_extra/train/x10.jpg"))
    np.testing.assert_array_equal(cv2.imread(str(written[0])), source[2:18, 4:20])
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        export_split.export(opt, tmp_path / "out")
