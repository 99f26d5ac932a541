"""Restoration datasets, registered in basicsr's DATASET_REGISTRY (``type:`` in YAML options)."""

from .._basicsr import register
from .blur_dataset import SyntheticBlurDataset
from .restoration_dataset import GaussianNoiseDataset, PairedFolderDataset, find_pairs, list_images, read_image

__all__ = ["GaussianNoiseDataset", "PairedFolderDataset", "SyntheticBlurDataset", "find_pairs", "list_images",
           "read_image"]

for _cls in (GaussianNoiseDataset, PairedFolderDataset, SyntheticBlurDataset):
    register("DATASET_REGISTRY", _cls)
