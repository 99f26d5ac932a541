"""Restoration datasets, registered in basicsr's DATASET_REGISTRY (``type:`` in YAML options)."""

from .._basicsr import register
from .restoration_dataset import GaussianNoiseDataset, PairedFolderDataset, find_pairs, list_images, read_image

__all__ = ["GaussianNoiseDataset", "PairedFolderDataset", "find_pairs", "list_images", "read_image"]

for _cls in (GaussianNoiseDataset, PairedFolderDataset):
    register("DATASET_REGISTRY", _cls)
