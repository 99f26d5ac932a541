"""Restoration datasets for basicsr's DATASET_REGISTRY: on-the-fly Gaussian noise, and paired folders.

Both return basicsr's sample dict: ``lq`` and ``gt`` as float32 CHW tensors in [0, 1] (RGB, or one
grey channel), plus ``lq_path`` and ``gt_path``. Training samples are random crops with random
flips/90-degree rotations; validation samples are whole images.

Randomness comes from torch's generator (reseeded by the DataLoader every epoch and per worker), not
from numpy's global state, which basicsr reseeds identically at every epoch's worker start.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..image_io import IMAGE_SUFFIXES, ImageReadError
from ..image_io import read_image as read_picture
from ..noise import add_gaussian_noise
from . import image_sets
from .image_sets import centre_crop, dataset_images
from .synthetic import synthetic_image

LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as OpenCV's RGB2GRAY


def grey_rgb(rgb: np.ndarray) -> np.ndarray:
    """A colour image desaturated to its BT.601 luma, kept in three equal channels (in rgb's float type)."""
    return np.repeat(rgb @ LUMA_RGB.astype(rgb.dtype)[:, None], 3, axis=2)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; a missing or empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def read_image(path: Path, channels: int) -> np.ndarray:
    """HWC float32 in [0, 1], decoded as inference decodes it (``spatial_restore.image_io``: bit depth,
    EXIF, alpha dropped): RGB for channels=3, grey (H, W, 1) for channels=1 (a colour file's BT.601 luma)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        picture = read_picture(path)
    except ImageReadError as err:
        raise OSError(f"cannot read image {path}: {err}") from err
    if channels == 3:
        return picture.rgb
    return picture.rgb[..., :1] if picture.gray else picture.rgb @ LUMA_RGB[:, None]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def sample_rng() -> np.random.Generator:
    """A numpy generator drawn from torch's RNG, so each epoch and each worker gets fresh randomness."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ())))


def random_crop_augment(imgs: Sequence[np.ndarray], size: int, flip: bool, rotate: bool, rng: np.random.Generator,
                        name: str = "") -> list[np.ndarray]:
    """The same random ``size``-square crop, horizontal flip and 90-degree rotation applied to every image."""
    h, w = imgs[0].shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {name} is {h}x{w}, smaller than the training crop {size}: remove it or lower gt_size")
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    do_flip = flip and rng.random() < 0.5
    turns = int(rng.integers(0, 4)) if rotate else 0
    out = []
    for img in imgs:
        img = img[top : top + size, left : left + size]
        if do_flip:
            img = img[:, ::-1]
        out.append(np.rot90(img, turns, axes=(0, 1)))
    return out


def validation_seed(name: str, seed: int) -> int:
    """A fixed seed per image name, so validation noise is the same in every run and every order."""
    return zlib.crc32(name.encode()) ^ seed


class GaussianNoiseDataset(Dataset):
    """Clean images from ``dataroot_gt``; ``lq = gt + N(0, (sigma/255)^2)`` drawn on the fly.

    Options: dataroot_gt, phase ('train'|'val'), sigma (fixed, 0-255 scale) or sigma_range [lo, hi]
    (training only: blind denoising, sigma uniform per sample), channels (3 colour, 1 grey),
    gt_size / use_hflip / use_rot (training crops), grey_prob (colour only: the probability that a clean
    crop is desaturated to grey before the noise is added; colour photo sets rarely hold grey photos, and
    a model that never saw one leaves colour noise on them instead of averaging the three noisy channels),
    grey_noise_prob (the probability that such a grey crop gets one noise field shared by its three
    channels, as a noisy grey file read as colour has: a model trained on independent noise only reads
    shared noise as grey texture and leaves it; grey_prob 1 with grey_noise_prob 1 in validation
    measures that case), scale_range [lo, hi] (training only: each crop is taken from a region 1/s times
    larger, s log-uniform in [lo, hi] <= 1, and area-downscaled to gt_size; denser fine texture and thin
    lines than the photos hold at their own scale, as in DnCNN's multi-scale training), synthetic_prob
    (training only: the probability that a clean crop is a procedural scene from ``synthetic.py``,
    straight edges and thin regular lines that nature photos rarely hold), clip (clip noisy
    input to [0, 1]; default off, as in the Gaussian denoising literature), cache (decode every image once and keep it; for small sets), seed (validation noise
    seed, default 0). Validation always uses the fixed ``sigma``. folders, holdout, holdout_keep,
    centre_crop (validation): which images and which part of them, see ``image_sets.py``.
    """

    OPTIONS = image_sets.OPTIONS  # keys read through image_sets' helpers (option validation reads the rest)

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.train = opt["phase"] == "train"
        self.channels = int(opt.get("channels", 3))
        self.paths = dataset_images(opt, list_images)
        sigma, sigma_range = opt.get("sigma"), opt.get("sigma_range")
        if self.train and sigma_range is not None:
            lo, hi = (float(s) for s in sigma_range)
            if not 0 <= lo <= hi:
                raise ValueError(f"sigma_range must be [lo, hi] with 0 <= lo <= hi, got {sigma_range}")
            self.sigma_range = (lo, hi)
        elif sigma is not None:
            self.sigma_range = (float(sigma), float(sigma))
        else:
            raise ValueError(f"dataset {opt.get('name')}: set 'sigma' (and, for blind training, 'sigma_range')")
        self.grey_prob = float(opt.get("grey_prob", 0.0))
        if not 0.0 <= self.grey_prob <= 1.0 or (self.grey_prob and self.channels != 3):
            raise ValueError(f"grey_prob must be in [0, 1] and needs channels: 3, got {self.grey_prob} "
                             f"with channels: {self.channels}")
        self.grey_noise_prob = float(opt.get("grey_noise_prob", 0.0))
        if not 0.0 <= self.grey_noise_prob <= 1.0 or (self.grey_noise_prob and not self.grey_prob):
            raise ValueError(f"grey_noise_prob must be in [0, 1] and needs grey_prob > 0, got {self.grey_noise_prob}")
        self.scale_range = tuple(float(s) for s in opt.get("scale_range", (1.0, 1.0)))
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1] <= 1:
            raise ValueError(f"scale_range must be [lo, hi] with 0 < lo <= hi <= 1, got {opt.get('scale_range')}")
        self.synthetic_prob = float(opt.get("synthetic_prob", 0.0))
        if not 0.0 <= self.synthetic_prob <= 1.0:
            raise ValueError(f"synthetic_prob must be in [0, 1], got {self.synthetic_prob}")
        self.cache = [read_image(p, self.channels) for p in self.paths] if opt.get("cache") else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        gt = self.cache[index] if self.cache is not None else read_image(path, self.channels)
        if self.train:
            rng = sample_rng()
            size = int(self.opt["gt_size"])
            if self.synthetic_prob and rng.random() < self.synthetic_prob:
                gt = synthetic_image(size, rng)
                gt = gt @ LUMA_RGB[:, None] if self.channels == 1 else gt
            else:
                gt = self._photo_crop(gt, size, rng, str(path))
        else:
            gt = centre_crop(gt, self.opt.get("centre_crop"))
            rng = np.random.default_rng(validation_seed(path.name, int(self.opt.get("seed", 0))))
        shared_noise = False
        if self.grey_prob and rng.random() < self.grey_prob:
            gt = grey_rgb(gt)
            shared_noise = bool(self.grey_noise_prob and rng.random() < self.grey_noise_prob)
        sigma = rng.uniform(*self.sigma_range) if self.sigma_range[0] < self.sigma_range[1] else self.sigma_range[0]
        lq = add_gaussian_noise(gt, sigma, rng, shared_channels=shared_noise)
        if self.opt.get("clip", False):
            lq = np.clip(lq, 0.0, 1.0)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "lq_path": str(path), "gt_path": str(path)}

    def _photo_crop(self, img: np.ndarray, size: int, rng: np.random.Generator, name: str) -> np.ndarray:
        """A random crop, flip and rotation; with scale_range, of a larger region area-downscaled to size."""
        scale = float(np.exp(rng.uniform(*np.log(self.scale_range))))
        region = min(round(size / scale), *img.shape[:2]) if scale < 1 else size
        (img,) = random_crop_augment([img], region, self.opt.get("use_hflip", True),
                                     self.opt.get("use_rot", True), rng, name)
        if region != size:
            img = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_AREA)
            img = img.reshape(size, size, -1)  # cv2 drops a single channel axis
        return img


def find_pairs(root: str | Path, lq_folder: str, gt_folder: str) -> list[tuple[Path, Path]]:
    """(lq, gt) pairs from every folder under ``root`` (root included) holding both sub-folders.

    Files pair by name, so GoPro's ``<scene>/blur`` + ``<scene>/sharp`` and flat ``input/`` +
    ``target/`` layouts both work. A file without its partner is an error, not a silent skip.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    parents = sorted({p.parent for p in root.rglob(lq_folder) if p.is_dir() and (p.parent / gt_folder).is_dir()})
    if not parents:
        raise FileNotFoundError(f"no folder under {root} holds both '{lq_folder}/' and '{gt_folder}/'")
    pairs = []
    for parent in parents:
        lqs = {p.name: p for p in list_images(parent / lq_folder)}
        gts = {p.name: p for p in list_images(parent / gt_folder)}
        if lqs.keys() != gts.keys():
            odd = sorted(lqs.keys() ^ gts.keys())[:5]
            raise FileNotFoundError(f"{parent}: '{lq_folder}/' and '{gt_folder}/' differ in file names, e.g. {odd}")
        pairs += [(lqs[name], gts[name]) for name in sorted(lqs)]
    return pairs


class PairedFolderDataset(Dataset):
    """Degraded/clean pairs from folders: GoPro (``blur``/``sharp``), SIDD (``input``/``target``), ...

    Options: dataroot, lq_folder, gt_folder (sub-folder names, see ``find_pairs``), phase,
    channels (3|1), gt_size / use_hflip / use_rot (training crops).
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.train = opt["phase"] == "train"
        self.channels = int(opt.get("channels", 3))
        self.pairs = find_pairs(opt["dataroot"], opt["lq_folder"], opt["gt_folder"])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        lq_path, gt_path = self.pairs[index]
        lq, gt = read_image(lq_path, self.channels), read_image(gt_path, self.channels)
        if lq.shape != gt.shape:
            raise ValueError(f"{lq_path} is {lq.shape[:2]} but {gt_path} is {gt.shape[:2]}")
        if self.train:
            lq, gt = random_crop_augment([lq, gt], int(self.opt["gt_size"]), self.opt.get("use_hflip", True),
                                         self.opt.get("use_rot", True), sample_rng(), str(lq_path))
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "lq_path": str(lq_path), "gt_path": str(gt_path)}
