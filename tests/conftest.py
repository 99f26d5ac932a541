"""Shared test fixtures: the official-model conformance data in ../shared/reference."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

# Triton reads this when a kernel is decorated, and any test module may import the kernels first:
# set it before anything imports them. The suite runs Triton on the CPU interpreter; GPU checks live
# in scripts/gpu_check_kernels.py (export TRITON_INTERPRET=0 to run these tests compiled on a GPU).
os.environ.setdefault("TRITON_INTERPRET", "1")
# The entry points under test (inference.py, the demo, the bench) would switch glibc to keeping freed
# memory for the rest of this process (spatial_restore/inference/heap.py); tests/test_heap.py checks
# that switch in subprocesses of its own, so the suite's memory behaves as any process's.
os.environ.setdefault("SPATIAL_RESTORE_KEEP_FREED_MEMORY", "0")

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE_ENV = "SPATIAL_RESTORE_REFERENCE"


def reference_dir() -> Path:
    """../shared/reference beside the repo, or $SPATIAL_RESTORE_REFERENCE; absent is an error, not a skip."""
    path = Path(os.environ.get(REFERENCE_ENV, REPO.parent / "shared" / "reference"))
    if not (path / "MANIFEST.sha256").is_file():
        pytest.fail(f"conformance fixtures not found at {path}: put ../shared beside the repo or set {REFERENCE_ENV}")
    return path


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
