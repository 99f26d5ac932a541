"""The demo: clear failure without the default weights; with a (tiny stand-in) default, its three pictures."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from spatial_restore import demo
from spatial_restore.archs import SpatialMambaUNet
from spatial_restore.checkpoint import save_safetensors
from spatial_restore.weights import SHIPPED


def test_demo_without_default_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("spatial_restore.weights.WEIGHTS_DIR", tmp_path)
    with pytest.raises(SystemExit, match="demo: shipped model 'default' is not installed"):
        demo.main(["--out", str(tmp_path / "out")])


def test_demo_writes_pictures_and_psnr(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    stem = SHIPPED["default"]
    save_safetensors(SpatialMambaUNet.from_preset("tiny"), tmp_path / f"{stem}.safetensors")
    (tmp_path / f"{stem}.json").write_text(json.dumps({"arch": "SpatialMambaUNet", "preset": "tiny", "task": "denoise"}))
    monkeypatch.setattr("spatial_restore.weights.WEIGHTS_DIR", tmp_path)
    demo.main(["--out", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "noisy.png").size == (256, 256)
    assert Image.open(tmp_path / "out" / "denoised.png").size == (256, 256)
    assert Image.open(tmp_path / "out" / "comparison.png").size == (3 * 256 + 16, 256)
    out = capsys.readouterr().out
    assert "PSNR noisy     20." in out and "PSNR denoised" in out
