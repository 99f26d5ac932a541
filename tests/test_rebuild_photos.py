"""datasets/rebuild_photos.py offline: plan parsing, the resize/crop transform, container members (no downloads)."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import sys
import zipfile
import zlib
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


def extra_sources(tmp_path: Path) -> Path:
    """A photos_extra-style SOURCES.json: no split, package and version per file, '#' members."""
    item = {"package_version": "1.0-1", "size": [768, 480]}
    return sources(tmp_path, {
        "b": {**item, "package": "pkg-b", "source_file": "/usr/share/b/res.rcc#pics/sub/b.png"},
        "a": {**item, "package": "pkg-a", "source_file": "/usr/share/a/a.png"},
        "c": {**item, "package": "pkg-a", "source_file": "/usr/share/a/tex.pk3#textures/c.png"},
    })


def test_photos_extra_sources_pin_each_package_and_filter_by_package(tmp_path, capsys):
    entries = rebuild_photos.parse_sources(extra_sources(tmp_path))
    assert [(e.name, e.split, e.package) for e in entries] == [
        ("a", "train", "pkg-a=1.0-1"), ("b", "train", "pkg-b=1.0-1"), ("c", "train", "pkg-a=1.0-1")]
    args = ["--set", "photos_extra", "--sources", str(extra_sources(tmp_path)), "--out", str(tmp_path / "x"),
            "--dry-run"]
    rebuild_photos.main(args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "apt-get download pkg-a=1.0-1 pkg-b=1.0-1"
    assert lines[3] == f"/usr/share/b/res.rcc#pics/sub/b.png -> {tmp_path / 'x' / 'train' / 'b.jpg'} (768x480)"
    rebuild_photos.main([*args, "--package", "pkg-b"])
    assert capsys.readouterr().out.splitlines()[0] == "apt-get download pkg-b=1.0-1"
    (tmp_path / "photos").mkdir()
    photos = sources(tmp_path / "photos", {"p": {"split": "val", "source_package_file": "/p.jpg", "size": [512, 512]}})
    for bad in ([*args, "--package", "nosuch"], ["--sources", str(photos), "--package", "pkg-a", "--dry-run"]):
        with pytest.raises(SystemExit) as exit_info:
            rebuild_photos.main(bad)
        assert exit_info.value.code == 2
    assert "names no package per photo" in capsys.readouterr().err


def png_bytes(size: tuple[int, int], value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_rcc(files: dict[str, bytes], compress: set[str]) -> bytes:
    """A Qt resource file, format version 3 (as rcc writes it), holding ``files`` (nested paths)."""
    tree: dict = {}
    for path, body in files.items():
        *folders, leaf = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = path
    names, payload, nodes = bytearray(), bytearray(), []
    name_at: dict[str, int] = {}

    def add_name(name: str) -> int:
        if name not in name_at:
            name_at[name] = len(names)
            names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return name_at[name]

    # breadth-first, children of a folder consecutive: nodes[i] = [name_offset, flags, a, b]
    nodes.append([add_name(""), 2, 0, 0])
    queue = [(0, tree)]
    while queue:
        index, children = queue.pop(0)
        nodes[index][2:] = [len(children), len(nodes)]
        for name, child in children.items():
            if isinstance(child, dict):
                queue.append((len(nodes), child))
                nodes.append([add_name(name), 2, 0, 0])
            else:
                body = files[child]
                body = struct.pack(">I", len(body)) + zlib.compress(body) if child in compress else body
                nodes.append([add_name(name), 1 if child in compress else 0, 0, len(payload)])
                payload.extend(struct.pack(">I", len(body)) + body)
    tree_bytes = b"".join(
        struct.pack(">IHII", n, f, a, b) + bytes(8) if f & 2 else struct.pack(">IHHHI", n, f, 0, 0, b) + bytes(8)
        for n, f, a, b in nodes)
    header_size = 24
    data_at, names_at = header_size, header_size + len(payload)
    tree_at = names_at + len(names)
    return struct.pack(">4sIIIII", b"qres", 3, tree_at, data_at, names_at, 0) + payload + names + tree_bytes


def make_eet(entries: dict[str, bytes]) -> bytes:
    """An Eet file (format 0x1ee70f42) with uncompressed entries and an empty dictionary."""
    head = 12 + 24 * len(entries)
    names = b"".join(name.encode() + b"\0" for name in entries)
    directory, name_at, data_at, data = b"", head, head + len(names), b""
    for name, body in entries.items():
        directory += struct.pack(">6I", data_at + len(data), len(body), len(body), name_at, len(name) + 1, 0)
        name_at += len(name) + 1
        data += body
    return struct.pack(">III", 0x1EE70F42, len(entries), 0) + directory + names + data


def test_container_members_rcc_eet_and_zip():
    files = {"gcompris/a/x.png": png_bytes((4, 3), 10), "gcompris/a/y.png": png_bytes((5, 3), 20),
             "gcompris/b.png": png_bytes((6, 3), 30)}
    rcc = make_rcc(files, compress={"gcompris/a/y.png"})
    for path, body in files.items():
        assert rebuild_photos.rcc_member(rcc, path) == body
    with pytest.raises(KeyError, match="no 'z.png'"):
        rebuild_photos.rcc_member(rcc, "gcompris/a/z.png")
    eet = make_eet({"edje/images/1": b"one", "edje/images/0": b"zero"})
    assert rebuild_photos.eet_member(eet, "edje/images/0") == b"zero"
    with pytest.raises(KeyError):
        rebuild_photos.eet_member(eet, "edje/images/2")
    with pytest.raises(ValueError, match="not an Eet file"):
        rebuild_photos.eet_member(rcc, "x")


def test_rebuild_photos_extra_from_containers_as_jpeg_q97_444(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/share/a").mkdir(parents=True)
    (tree / "usr/share/b").mkdir(parents=True)
    rng = np.random.default_rng(1)
    pictures = {name: Image.fromarray(rng.integers(0, 256, (960, 1536, 3), dtype=np.uint8)) for name in "abc"}
    pictures["a"].save(tree / "usr/share/a/a.png")
    buffer = io.BytesIO()
    pictures["b"].save(buffer, format="PNG")
    (tree / "usr/share/b/res.rcc").write_bytes(make_rcc({"pics/sub/b.png": buffer.getvalue()}, set()))
    with zipfile.ZipFile(tree / "usr/share/a/tex.pk3", "w") as archive:
        buffer = io.BytesIO()
        pictures["c"].save(buffer, format="PNG")
        archive.writestr("textures/c.png", buffer.getvalue())
    photo_set = rebuild_photos.SETS["photos_extra"]
    rebuild_photos.rebuild(rebuild_photos.parse_sources(extra_sources(tmp_path)), tree, tmp_path / "out", photo_set)
    for name, picture in pictures.items():
        path = tmp_path / "out" / "train" / f"{name}.jpg"
        expected = io.BytesIO()
        picture.resize((768, 480), Image.LANCZOS).save(expected, format="JPEG", quality=97, subsampling=0)
        assert path.read_bytes() == expected.getvalue()
