"""Rebuild the offline photo set (train/val) from its Debian wallpaper packages.

``../shared/data/photos/SOURCES.json`` lists each photo's split and its file inside a package; the
set's README names the packages and the transform: Lanczos resize so the long side is 1024 px (sizes
rounded to nearest), and for val a centre crop to 512x512 after that. This reproduces the shipped
PNGs bit for bit with Pillow. Usage:

    python datasets/rebuild_photos.py --out datasets/photos            # download, extract, rebuild
    python datasets/rebuild_photos.py --dry-run                        # print the plan only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = REPO.parent / "shared" / "data" / "photos" / "SOURCES.json"
# Named in ../shared/data/photos/README.md; every file in SOURCES.json lies in one of them.
PACKAGES = ("mate-backgrounds", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")
LONG_SIDE = 1024
VAL_CROP = 512


@dataclass(frozen=True)
class Entry:
    name: str
    split: str  # "train" or "val"
    source: str  # absolute path inside the package, e.g. /usr/share/backgrounds/mate/nature/Garden.jpg
    size: tuple[int, int]  # expected (width, height) of the result


def parse_sources(path: Path) -> list[Entry]:
    """SOURCES.json -> entries sorted by name; rejects unknown splits and missing fields."""
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = []
    for name, item in sorted(data.items()):
        if item.get("split") not in ("train", "val"):
            raise ValueError(f"{path}: {name}: split must be 'train' or 'val', got {item.get('split')!r}")
        entries.append(Entry(name, item["split"], item["source_package_file"], tuple(item["size"])))
    return entries


def transform(image: Image.Image, split: str) -> Image.Image:
    """Lanczos resize to long side 1024; val is then centre-cropped to 512x512."""
    image = image.convert("RGB")
    width, height = image.size
    scale = LONG_SIDE / max(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.LANCZOS)
    if split == "val":
        width, height = image.size
        left, top = (width - VAL_CROP) // 2, (height - VAL_CROP) // 2
        image = image.crop((left, top, left + VAL_CROP, top + VAL_CROP))
    return image


def plan(entries: list[Entry], out: Path) -> list[str]:
    """Human-readable steps, one line each."""
    lines = [f"apt-get download {' '.join(PACKAGES)}", "dpkg -x <each .deb> <temporary folder>"]
    for e in entries:
        lines.append(f"{e.source} -> {out / e.split / (e.name + '.png')} ({e.size[0]}x{e.size[1]})")
    return lines


def fetch(root: Path) -> None:
    """Download the packages with apt-get and extract them (no install) under ``root``."""
    debs = root / "debs"
    debs.mkdir()
    debs.chmod(0o777)  # apt's sandbox user must be able to write here
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root / "tree")], check=True)


def rebuild(entries: list[Entry], tree: Path, out: Path) -> None:
    """Write out/<split>/<name>.png from the extracted package tree, checking each size."""
    for e in entries:
        source = tree / e.source.lstrip("/")
        with Image.open(source) as image:
            result = transform(image, e.split)
        if result.size != e.size:
            raise RuntimeError(f"{e.name}: got {result.size}, SOURCES.json says {e.size}")
        target = out / e.split / f"{e.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        result.save(target)
        print(f"{target} ({result.size[0]}x{result.size[1]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help="SOURCES.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "datasets" / "photos", help="output root (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, download nothing")
    args = parser.parse_args(argv)
    entries = parse_sources(args.sources)
    if args.dry_run:
        print("\n".join(plan(entries, args.out)))
        return
    with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
        fetch(Path(tmp))
        rebuild(entries, Path(tmp) / "tree", args.out)


if __name__ == "__main__":
    main()
