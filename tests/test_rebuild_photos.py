"""datasets/rebuild_photos.py offline: plan parsing and the resize/crop transform (no downloads)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "datasets" / "rebuild_photos.py"
spec = importlib.util.spec_from_file_location("rebuild_photos", SCRIPT)
rebuild_photos = importlib.util.module_from_spec(spec)
sys.modules["rebuild_photos"] = rebuild_photos  # dataclasses look their module up there
spec.loader.exec_module(rebuild_photos)


def sources(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "SOURCES.json"
    path.write_text(json.dumps(entries))
    return path


def test_plan_parsing_and_dry_run(tmp_path, capsys):
    path = sources(tmp_path, {
        "b_val": {"split": "val", "source_package_file": "/usr/share/x/b.jpg", "size": [512, 512]},
        "a_train": {"split": "train", "source_package_file": "/usr/share/x/a.jpg", "size": [1024, 640]},
    })
    entries = rebuild_photos.parse_sources(path)
    assert [e.name for e in entries] == ["a_train", "b_val"]
    assert entries[0] == rebuild_photos.Entry("a_train", "train", "/usr/share/x/a.jpg", (1024, 640))
    rebuild_photos.main(["--sources", str(path), "--out", str(tmp_path / "photos"), "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "apt-get download mate-backgrounds lomiri-wallpapers-20.04 plasma-workspace-wallpapers"
    assert lines[2] == f"/usr/share/x/a.jpg -> {tmp_path / 'photos' / 'train' / 'a_train.png'} (1024x640)"
    assert not (tmp_path / "photos").exists()


def test_bad_split_rejected(tmp_path):
    path = sources(tmp_path, {"x": {"split": "test", "source_package_file": "/a.jpg", "size": [1, 1]}})
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        rebuild_photos.parse_sources(path)


def test_transform_train_and_val():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (1600, 2560, 3), dtype=np.uint8))
    train = rebuild_photos.transform(image, "train")
    assert train.size == (1024, 640) and train.mode == "RGB"
    val = rebuild_photos.transform(image, "val")
    assert val.size == (512, 512)
    # the val crop is the centre of the resized train image
    np.testing.assert_array_equal(np.asarray(val), np.asarray(train)[64:576, 256:768])


def test_rebuild_from_an_extracted_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/share/x").mkdir(parents=True)
    Image.new("L", (2048, 1300), 128).save(tree / "usr/share/x/a.png")
    entries = [rebuild_photos.Entry("a", "train", "/usr/share/x/a.png", (1024, 650))]
    rebuild_photos.rebuild(entries, tree, tmp_path / "out")
    assert Image.open(tmp_path / "out" / "train" / "a.png").size == (1024, 650)
    with pytest.raises(RuntimeError, match="SOURCES.json says"):
        rebuild_photos.rebuild([rebuild_photos.Entry("a", "train", "/usr/share/x/a.png", (1024, 651))], tree,
                               tmp_path / "out")
