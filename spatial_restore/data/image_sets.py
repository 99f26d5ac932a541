"""Which clean images a dataset reads: folders under one root, and a held-out split written as a rule.

Options (read by the clean-image datasets):
- ``dataroot_gt``: the root; ``folders`` (list, default ``["."]``): sub-folders read, in order. One
  override of ``dataroot_gt`` moves every folder at once (e.g. to photos carried to a GPU machine).
- ``holdout: {folder: F, every: N}``: of folder F (one of ``folders``), the N-th, 2N-th, ... file by
  sorted name is held out. Training sets leave those files out; a validation set with
  ``holdout_keep: held_out`` reads only them. Both sides apply the same rule from the same options, so
  a held-out photo cannot drift into training when files are added or renamed elsewhere.
- ``centre_crop: S`` (validation): each image cut to its centre S x S (at most its own size), so a
  validation set of larger photos costs a fixed, small amount of time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

HOLDOUT_KEEP = ("rest", "held_out")
OPTIONS = ("dataroot_gt", "folders", "holdout", "holdout_keep", "centre_crop")  # the keys read here


def holdout_split(paths: list[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(rest, held out) of ``paths`` sorted by name: the every-th, 2·every-th, ... (1-based) is held out."""
    if every < 2:
        raise ValueError(f"holdout every must be >= 2, got {every}")
    paths = sorted(paths, key=lambda p: p.name)
    return [p for i, p in enumerate(paths, 1) if i % every], paths[every - 1 :: every]


def dataset_images(opt: dict, list_images: Callable[[Path], list[Path]]) -> list[Path]:
    """The image files named by ``dataroot_gt``/``folders``/``holdout``/``holdout_keep`` (see module doc).

    ``list_images`` lists one folder (sorted, non-empty, or raises).
    """
    root = Path(os.path.expanduser(str(opt["dataroot_gt"])))
    folders = [str(f) for f in opt.get("folders") or ["."]]
    keep = opt.get("holdout_keep", "rest")
    holdout = opt.get("holdout")
    if keep not in HOLDOUT_KEEP:
        raise ValueError(f"holdout_keep must be one of {HOLDOUT_KEEP}, got {keep!r}")
    if holdout is None:
        if keep == "held_out":
            raise ValueError("holdout_keep: held_out needs a holdout: {folder, every} rule")
        return [p for folder in folders for p in list_images(root / folder)]
    if not isinstance(holdout, dict) or set(holdout) != {"folder", "every"}:
        raise ValueError(f"holdout must be a mapping with exactly 'folder' and 'every', got {holdout!r}")
    held_folder = str(holdout["folder"])
    if held_folder not in folders:
        raise ValueError(f"holdout folder {held_folder!r} is not one of folders {folders}")
    if keep == "held_out" and folders != [held_folder]:
        raise ValueError(f"holdout_keep: held_out reads only {held_folder!r}: list only it in folders, got {folders}")
    paths = []
    for folder in folders:
        images = list_images(root / folder)
        if folder == held_folder:
            rest, held = holdout_split(images, int(holdout["every"]))
            images = held if keep == "held_out" else rest
        paths += images
    return paths


def centre_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    """The centre ``size`` x ``size`` of an HWC image (each side at most the image's); None: unchanged."""
    if size is None:
        return img
    h, w = img.shape[:2]
    ch, cw = min(int(size), h), min(int(size), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw]
