"""Rebuild the offline photo sets (photos: train/val, photos_extra: train) from their Debian packages.

Each set's ``SOURCES.json`` lists every photo's file inside a package (and, for ``photos``, its split);
the set's README names the packages and the transform, which ``SETS`` below repeats:
- ``photos``: Lanczos resize to long side 1024 px (sizes rounded to nearest), val then centre-cropped to
  512x512, saved as PNG.
- ``photos_extra``: Lanczos resize to long side 768 px, saved as JPEG quality 97 with 4:4:4 chroma. Some
  pictures lie inside a container, the member after ``#``: a Qt resource file (``.rcc``), an Edje/Eet
  file (``.edj``, an uncompressed JPEG entry) or a zip (``.pk3``).
Both reproduce the shipped files bit for bit with Pillow. Usage:

    python datasets/rebuild_photos.py --out datasets/photos                   # download, extract, rebuild
    python datasets/rebuild_photos.py --set photos_extra --out datasets/photos_extra
    python datasets/rebuild_photos.py --set photos_extra --package lxqt-themes  # one package's photos only
    python datasets/rebuild_photos.py --set photos_extra --dry-run              # print the plan only
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class PhotoSet:
    """How one set was made: where its SOURCES.json is, the resize, the val crop and the file format."""

    sources: Path
    long_side: int
    suffix: str
    save_options: dict[str, Any] = field(default_factory=dict)
    val_crop: int | None = None
    packages: tuple[str, ...] = ()  # when SOURCES.json names no package per file (photos)


SETS = {
    # Named in ../shared/data/photos/README.md; every file in its SOURCES.json lies in one of them.
    "photos": PhotoSet(SHARED_DATA / "photos" / "SOURCES.json", 1024, ".png", val_crop=512,
                       packages=("mate-backgrounds", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")),
    "photos_extra": PhotoSet(SHARED_DATA / "photos_extra" / "SOURCES.json", 768, ".jpg",
                             {"quality": 97, "subsampling": 0}),
}


@dataclass(frozen=True)
class Entry:
    name: str
    split: str  # "train" or "val"
    source: str  # path inside the package, e.g. /usr/share/backgrounds/mate/nature/Garden.jpg (+ "#member")
    size: tuple[int, int]  # expected (width, height) of the result
    package: str | None = None  # "name=version" when SOURCES.json says (photos_extra)


def parse_sources(path: Path) -> list[Entry]:
    """SOURCES.json -> entries sorted by name; rejects unknown splits and missing fields.

    ``photos`` spells the source ``source_package_file`` and gives a split; ``photos_extra`` spells it
    ``source_file``, is all train, and names each file's package and version.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = []
    for name, item in sorted(data.items()):
        split = item.get("split", "train")
        if split not in ("train", "val"):
            raise ValueError(f"{path}: {name}: split must be 'train' or 'val', got {split!r}")
        source = item.get("source_file", item.get("source_package_file"))
        if source is None or "size" not in item:
            raise ValueError(f"{path}: {name}: needs 'source_file' (or 'source_package_file') and 'size'")
        package = f"{item['package']}={item['package_version']}" if "package" in item else None
        entries.append(Entry(name, split, source, tuple(item["size"]), package))
    return entries


def packages_of(photo_set: PhotoSet, entries: list[Entry]) -> list[str]:
    """The packages to download: named per file (pinned to their version), else the set's list."""
    named = sorted({e.package for e in entries if e.package})
    return named or list(photo_set.packages)


def transform(image: Image.Image, split: str, long_side: int = 1024, val_crop: int | None = 512) -> Image.Image:
    """Lanczos resize to ``long_side``; val is then centre-cropped to ``val_crop`` squared."""
    image = image.convert("RGB")
    width, height = image.size
    scale = long_side / max(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.LANCZOS)
    if split == "val" and val_crop:
        width, height = image.size
        left, top = (width - val_crop) // 2, (height - val_crop) // 2
        image = image.crop((left, top, left + val_crop, top + val_crop))
    return image


def rcc_member(data: bytes, member: str) -> bytes:
    """A file from a Qt binary resource (.rcc, format versions 1-3): walk the name tree from the root."""
    magic, version, tree, payload, names = struct.unpack(">4sIIII", data[:20])
    if magic != b"qres" or not 1 <= version <= 3:
        raise ValueError(f"not a Qt resource file (magic {magic!r}, version {version})")
    node_size = 14 if version == 1 else 22  # versions 2+ add an 8-byte modification time

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    index = 0  # the root
    for part in member.strip("/").split("/"):
        start = tree + index * node_size
        _, flags, count, first = struct.unpack(">IHII", data[start : start + 14])
        if not flags & 2:
            raise KeyError(f"{member}: {part!r} is inside a file, not a folder")
        for child in range(first, first + count):
            (offset,) = struct.unpack(">I", data[tree + child * node_size : tree + child * node_size + 4])
            if name(offset) == part:
                index = child
                break
        else:
            raise KeyError(f"{member}: no {part!r} in the resource file")
    start = tree + index * node_size
    _, flags, _, _, offset = struct.unpack(">IHHHI", data[start : start + 14])
    (size,) = struct.unpack(">I", data[payload + offset : payload + offset + 4])
    body = data[payload + offset + 4 : payload + offset + 4 + size]
    if flags & 4:
        raise ValueError(f"{member}: zstd-compressed resources are not supported")
    return zlib.decompress(body[4:]) if flags & 1 else body  # qCompress: 4-byte length, then zlib


def eet_member(data: bytes, member: str) -> bytes:
    """An uncompressed, unencrypted entry of an Eet file (Edje ``.edj``, format 0x1ee70f42)."""
    magic, count, dictionary = struct.unpack(">III", data[:12])
    if magic != 0x1EE70F42:
        raise ValueError(f"not an Eet file (magic {magic:#x})")
    for i in range(count):
        offset, size, data_size, name_offset, name_size, flags = struct.unpack(">6I", data[12 + 24 * i : 36 + 24 * i])
        if data[name_offset : name_offset + name_size].rstrip(b"\0").decode() == member:
            if flags & 3 or size != data_size:
                raise ValueError(f"{member}: compressed or encrypted Eet entry (flags {flags})")
            return data[offset : offset + size]
    raise KeyError(f"{member}: no such entry in the Eet file")


def read_source(tree: Path, source: str) -> Image.Image:
    """The picture a SOURCES.json path names, from the extracted package tree (``file#member`` too)."""
    path, _, member = source.partition("#")
    path = tree / path.lstrip("/")
    if not member:
        return Image.open(path)
    data = path.read_bytes()
    if path.suffix == ".rcc":
        body = rcc_member(data, member)
    elif path.suffix == ".edj":
        body = eet_member(data, member)
    elif path.suffix in (".pk3", ".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            body = archive.read(member)
    else:
        raise ValueError(f"{source}: unknown container {path.suffix!r}")
    return Image.open(io.BytesIO(body))


def plan(entries: list[Entry], packages: list[str], out: Path, suffix: str = ".png") -> list[str]:
    """Human-readable steps, one line each."""
    lines = [f"apt-get download {' '.join(packages)}", "dpkg -x <each .deb> <temporary folder>"]
    for e in entries:
        lines.append(f"{e.source} -> {out / e.split / (e.name + suffix)} ({e.size[0]}x{e.size[1]})")
    return lines


def fetch(root: Path, packages: list[str]) -> None:
    """Download the packages with apt-get and extract them (no install) under ``root``."""
    debs = root / "debs"
    debs.mkdir()
    debs.chmod(0o777)  # apt's sandbox user must be able to write here
    subprocess.run(["apt-get", "download", *packages], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root / "tree")], check=True)


def rebuild(entries: list[Entry], tree: Path, out: Path, photo_set: PhotoSet = SETS["photos"]) -> None:
    """Write out/<split>/<name><suffix> from the extracted package tree, checking each size."""
    for e in entries:
        with read_source(tree, e.source) as image:
            result = transform(image, e.split, photo_set.long_side, photo_set.val_crop)
        if result.size != e.size:
            raise RuntimeError(f"{e.name}: got {result.size}, SOURCES.json says {e.size}")
        target = out / e.split / f"{e.name}{photo_set.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        result.save(target, **photo_set.save_options)
        print(f"{target} ({result.size[0]}x{result.size[1]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="photos", dest="photo_set",
                        help="which photo set (default: %(default)s)")
    parser.add_argument("--sources", type=Path, help="SOURCES.json (default: the set's, in ../shared/data/<set>/)")
    parser.add_argument("--out", type=Path, help="output root (default: datasets/<set>)")
    parser.add_argument("--package", action="append", metavar="NAME",
                        help="rebuild only the photos of this package (repeatable; photos_extra names them)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, download nothing")
    args = parser.parse_args(argv)
    photo_set = SETS[args.photo_set]
    out = args.out or REPO / "datasets" / args.photo_set
    entries = parse_sources(args.sources or photo_set.sources)
    if args.package:
        if not any(e.package for e in entries):
            parser.error(f"--package: the {args.photo_set} SOURCES.json names no package per photo")
        unknown = set(args.package) - {e.package.split("=")[0] for e in entries}
        if unknown:
            parser.error(f"--package: no photo comes from {sorted(unknown)}")
        entries = [e for e in entries if e.package.split("=")[0] in args.package]
    packages = packages_of(photo_set, entries)
    if args.dry_run:
        print("\n".join(plan(entries, packages, out, photo_set.suffix)))
        return
    with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
        fetch(Path(tmp), packages)
        rebuild(entries, Path(tmp) / "tree", out, photo_set)


if __name__ == "__main__":
    main()
