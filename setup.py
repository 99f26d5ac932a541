"""Package metadata. Install with `make install` (see README for why torch and basicsr go first)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="spatial_restore",
    version="0.1.0",
    description="Spatial-Mamba backbones, Triton SASF kernels and image restoration on BasicSR",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["spatial_restore", "spatial_restore.*"]),
    package_data={"spatial_restore": ["weights/*.safetensors", "weights/*.json"]},
    install_requires=[
        "torch>=2.4",
        "numpy",
        "opencv-python-headless",
        "pyyaml",
        "tqdm",
        "scikit-image",
        "lpips",
        "safetensors",
        "addict",
    ],
    extras_require={"triton": ["triton"], "timm": ["timm>=1.0.3"], "bench": ["bm3d"], "analysis": ["matplotlib"],
                    "test": ["pytest", "timm>=1.0.3"]},
)
