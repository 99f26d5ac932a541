"""Write the clean images of one dataset of an option file as PNG files, as that dataset reads them.

A validation set defined by a rule (``folders``, ``holdout``, ``centre_crop``: see
``spatial_restore/data/image_sets.py``) becomes a plain folder for tools that take one, such as
``python -m spatial_restore.bench quality --data``. Existing files are never overwritten. Usage:

    python datasets/export_split.py options/train/default_denoiser.yml val_extra --out datasets/photos_extra_heldout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from spatial_restore.data.image_sets import centre_crop, dataset_images  # noqa: E402
from spatial_restore.data.restoration_dataset import list_images, read_image  # noqa: E402


def export(dataset_opt: dict, out: Path) -> list[Path]:
    """The dataset's images (centre-cropped when it says so) as out/<stem>.png; returns the files."""
    paths = dataset_images(dataset_opt, list_images)
    targets = [out / f"{p.stem}.png" for p in paths]
    clashes = [t for t in targets if t.exists()]
    if clashes or len(set(targets)) != len(targets):
        raise FileExistsError(f"refusing to overwrite or merge files in {out}, e.g. {(clashes or targets)[0]}")
    out.mkdir(parents=True, exist_ok=True)
    for path, target in zip(paths, targets):
        img = centre_crop(read_image(path, 3), dataset_opt.get("centre_crop"))
        cv2.imwrite(str(target), np.round(img[..., ::-1] * 255).astype(np.uint8))
        print(f"{path} -> {target} ({img.shape[1]}x{img.shape[0]})")
    return targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("options", type=Path, help="option YAML file")
    parser.add_argument("dataset", help="key under datasets:, e.g. val_extra")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new files only)")
    parser.add_argument("--root", help="override the dataset's dataroot_gt")
    args = parser.parse_args(argv)
    datasets = yaml.safe_load(args.options.read_text(encoding="utf-8"))["datasets"]
    if args.dataset not in datasets:
        parser.error(f"{args.options} has no dataset {args.dataset!r}; it has {sorted(datasets)}")
    dataset_opt = dict(datasets[args.dataset])
    if args.root:
        dataset_opt["dataroot_gt"] = args.root
    try:
        export(dataset_opt, args.out)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
