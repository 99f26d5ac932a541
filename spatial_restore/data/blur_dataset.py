"""SyntheticBlurDataset (basicsr DATASET_REGISTRY): clean photos blurred on the fly, as a shaky camera delivers them.

Training: a random crop of ``gt_size`` + k - 1 (random flip/rotation), convolved over its valid region with
a fresh random kernel of size k, then noise sigma ~ U(noise_range)/255 and 8-bit rounding; the target is
the crop's centre ``gt_size``. Validation: every image with every kernel of a fixed seeded set
(``val_kernels`` of them, see ``blur.kernel_set``), noise seeded per (image, kernel); whole images (or
their ``centre_crop``), so blurred and target images are k - 1 smaller than the clean one.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from . import blur, image_sets
from .image_sets import centre_crop, dataset_images
from .restoration_dataset import list_images, random_crop_augment, read_image, sample_rng, to_tensor


class SyntheticBlurDataset(Dataset):
    """Blurred/sharp pairs made from clean photos.

    kernel_size [lo, hi] (odd sizes for shake and linear motion, default [5, 31]), defocus_size [lo, hi]
    (discs, default [5, 11]), kernel_probs {trajectory, linear, defocus} (training, default 0.6/0.25/0.15),
    noise_range [lo, hi] (sigma on the 0-255 scale, default [0, 3]), val_kernels (size of the validation
    kernel set, default 6), kernel_seed (its seed, default 0), gt_size / use_hflip / use_rot (training
    crops), cache, plus the image selection of ``image_sets`` (dataroot_gt, folders, holdout,
    holdout_keep, centre_crop). Colour only.
    """

    OPTIONS = image_sets.OPTIONS  # keys read through image_sets' helpers (option validation reads the rest)

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.train = opt["phase"] == "train"
        self.paths = dataset_images(opt, list_images)
        self.sizes = [int(s) for s in opt.get("kernel_size", (5, 31))]
        self.defocus_sizes = [int(s) for s in opt.get("defocus_size", (5, 11))]
        blur.odd_sizes(self.sizes), blur.odd_sizes(self.defocus_sizes)  # fail here, not in a worker
        self.probs = {k: float(v) for k, v in opt.get("kernel_probs", {"trajectory": 0.6, "linear": 0.25,
                                                                       "defocus": 0.15}).items()}
        if set(self.probs) - set(blur.KERNEL_TYPES) or abs(sum(self.probs.values()) - 1) > 1e-6:
            raise ValueError(f"kernel_probs must map some of {blur.KERNEL_TYPES} to probabilities summing to 1, "
                             f"got {self.probs}")
        self.noise_range = tuple(float(s) for s in opt.get("noise_range", (0.0, 3.0)))
        if len(self.noise_range) != 2 or not 0 <= self.noise_range[0] <= self.noise_range[1]:
            raise ValueError(f"noise_range must be [lo, hi] with 0 <= lo <= hi, got {opt.get('noise_range')}")
        self.kernels = [] if self.train else blur.kernel_set(int(opt.get("val_kernels", 6)),
                                                             int(opt.get("kernel_seed", 0)), self.sizes,
                                                             self.defocus_sizes)
        self.cache = [read_image(p, 3) for p in self.paths] if opt.get("cache") else None

    def __len__(self) -> int:
        return len(self.paths) * (1 if self.train else len(self.kernels))

    def _clean(self, index: int) -> np.ndarray:
        return self.cache[index] if self.cache is not None else read_image(self.paths[index], 3)

    def pair(self, index: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        """Validation pair ``index``: (name, clean target, blurred camera image, kernel), HWC float32."""
        image, k = divmod(index, len(self.kernels))
        path, kernel = self.paths[image], self.kernels[k]
        clean = centre_crop(self._clean(image), self.opt.get("centre_crop"))
        rng = blur.validation_rng(path.name, k, int(self.opt.get("kernel_seed", 0)))
        lq = blur.camera_output(blur.blur_valid(clean, kernel), rng.uniform(*self.noise_range), rng)
        return f"{path.stem}_k{k}", blur.centre_target(clean, kernel.shape[0]), lq, kernel

    def __getitem__(self, index: int) -> dict:
        if not self.train:
            name, gt, lq, _ = self.pair(index)
            path = str(self.paths[index // len(self.kernels)])
            return {"lq": to_tensor(lq), "gt": to_tensor(gt), "lq_path": f"{name}.png", "gt_path": path}
        rng = sample_rng()
        kernel = blur.random_kernel(rng, self.probs, self.sizes, self.defocus_sizes)
        size, k = int(self.opt["gt_size"]), kernel.shape[0]
        (region,) = random_crop_augment([self._clean(index)], size + k - 1, self.opt.get("use_hflip", True),
                                        self.opt.get("use_rot", True), rng, str(self.paths[index]))
        lq = blur.camera_output(blur.blur_valid(region, kernel), rng.uniform(*self.noise_range), rng)
        gt = blur.centre_target(np.ascontiguousarray(region), k)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "lq_path": str(self.paths[index]),
                "gt_path": str(self.paths[index])}
