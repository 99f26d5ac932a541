"""Shared test fixtures: the official-model conformance data (``reference/`` of spatial_restore.paths.shared_dir)."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest
import torch

from spatial_restore.paths import SHARED_ENV, shared_dir

REPO = Path(__file__).resolve().parents[1]
REFERENCE_ENV = "SPATIAL_RESTORE_REFERENCE"


def reference_dir() -> Path:
    """reference/ in the shared folder, or $SPATIAL_RESTORE_REFERENCE; absent is an error, not a skip."""
    path = Path(os.environ.get(REFERENCE_ENV) or shared_dir() / "reference")
    if not (path / "MANIFEST.sha256").is_file():
        pytest.fail(f"conformance fixtures not found at {path}: put ../shared beside the repo or set {SHARED_ENV} "
                    f"(or {REFERENCE_ENV})")
    return path


def pytest_configure(config: pytest.Config) -> None:
    """The ``gpu`` marker; and Triton interpreted on the CPU unless the run selects the GPU tests.

    Triton reads TRITON_INTERPRET when a kernel is decorated, so it is set here, before any test module
    imports the kernels (export it to choose yourself).
    """
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; run with `pytest -m gpu tests` on a GPU machine")
    os.environ.setdefault("TRITON_INTERPRET", "0" if config.option.markexpr == "gpu" else "1")


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> str:
    """A tiny SpatialMambaUNet with its card, as a user's own model would be."""
    # imported here, not at the top: the network's modules import timm, which imports Triton, and
    # Triton must first see pytest_configure's TRITON_INTERPRET
    from spatial_restore.archs import SpatialMambaUNet
    from spatial_restore.checkpoint import save_safetensors

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    save_safetensors(SpatialMambaUNet.from_preset("tiny"), folder / "tiny.safetensors")
    (folder / "tiny.json").write_text(json.dumps({"arch": "SpatialMambaUNet", "preset": "tiny", "task": "denoise"}))
    return str(folder / "tiny.safetensors")


@pytest.fixture(scope="session")
def ref() -> Path:
    return reference_dir()


@pytest.fixture(scope="session")
def load_ref(ref):
    cache: dict[str, dict] = {}

    def load(name: str) -> dict:
        if name not in cache:
            cache[name] = torch.load(ref / name, map_location="cpu", weights_only=True)
        return cache[name]

    return load


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (0/0 counts as 0)."""
    denom = expected.abs().max().item()
    diff = (actual.to(expected.dtype) - expected).abs().max().item()
    return diff / denom if denom > 0 else diff


def case_seed() -> int:
    """A seed of the running test case's own (from its id): each case draws other random inputs than
    its neighbours, and the same ones on every run, so a failure always reproduces."""
    return zlib.crc32(os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].encode()) & 0x7FFFFFFF
