"""The real basicsr pipeline on CPU with the tiny preset: training, validation, testing, SIGKILL + resume, torchrun."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from spatial_restore.archs import UNET_PRESETS, SpatialMambaUNet
from spatial_restore.checkpoint import load_into, load_state_dict_file
from spatial_restore.tiling import tiled_forward
from spatial_restore.models.restoration_model import RestorationModel, ema_decay_at, load_training_state

TINY = {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_PRESETS["tiny"].items()}


def smooth_image(h: int, w: int, phase: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([np.sin(x / 5 + phase + c) * 60 + np.cos(y / 4 - c) * 50 + 128 for c in range(3)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A run directory with generated train/val photos; experiments/ and results/ are written here."""
    root = tmp_path_factory.mktemp("restoration_run")
    for folder, count, size in (("train", 3, (28, 30)), ("val", 2, (20, 23))):
        (root / folder).mkdir()
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{folder}{i}.png"), smooth_image(*size, phase=i))
    return root


def train_options(name: str, total_iter: int, save_freq: int, val_freq: int | None = None) -> dict:
    opt = {
        "name": name, "model_type": "RestorationModel", "num_gpu": 0, "manual_seed": 0,
        "datasets": {
            "train": {"name": "train", "type": "GaussianNoiseDataset", "dataroot_gt": "train", "sigma": 25,
                      "gt_size": 16, "num_worker_per_gpu": 0, "batch_size_per_gpu": 2, "dataset_enlarge_ratio": 20},
            "val": {"name": "val", "type": "GaussianNoiseDataset", "dataroot_gt": "val", "sigma": 25},
        },
        "network_g": {"type": "SpatialMambaUNet", **TINY},
        "path": {},
        "train": {
            "ema_decay": 0.9, "grad_clip": 0.01, "amp": "bf16",  # bf16 must be ignored on CPU
            "optim_g": {"type": "AdamW", "lr": 2e-3, "weight_decay": 1e-4, "betas": [0.9, 0.999]},
            "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [1000], "restart_weights": [1], "eta_min": 1e-6},
            "total_iter": total_iter, "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
        },
        "val": {"val_freq": val_freq or 10**6, "save_img": True, "tile": 16, "tile_overlap": 4,
                "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": save_freq, "use_tb_logger": False},
    }
    return opt


def write_yaml(path: Path, opt: dict) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def spatial_restore_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


# One thread per process: on a small shared CPU, OpenMP worker threads of tiny convolutions spin
# against each other and make every step 10x slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(cmd: list[str], cwd: Path, timeout: int = 240) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def log_text(experiment: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(experiment.glob("train_*.log")))


def losses(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"l_pix: ([0-9.e+-]+)", text)]


def assert_checkpoints_load(experiment: Path) -> list[int]:
    """Every finished file loads (weights_only); returns the iterations that have a training state."""
    net = SpatialMambaUNet(**TINY)
    for path in (experiment / "models").glob("*.pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_into(net, state["params"])
        load_into(net, state["params_ema"])
    for path in (experiment / "models").glob("*.safetensors"):
        load_into(net, load_state_dict_file(path))
    iters = []
    for path in (experiment / "training_states").glob("*.state"):
        state = load_training_state(path)
        assert state["iter"] == int(path.stem) and (experiment / "models" / f"net_g_{path.stem}.pth").is_file()
        iters.append(state["iter"])
    return sorted(iters)


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    opt = write_yaml(workdir / "train.yml", train_options("tiny_run", total_iter=12, save_freq=6, val_freq=12))
    run(spatial_restore_command("spatial_restore.train", "-opt", str(opt)), workdir)
    return workdir / "experiments" / "tiny_run"


def test_training_reduces_the_loss_and_saves_loadable_checkpoints(trained):
    values = losses(log_text(trained))
    assert len(values) == 12
    assert np.mean(values[-3:]) < 0.8 * np.mean(values[:3]), values
    assert assert_checkpoints_load(trained) == [6, 12]
    assert (trained / "models" / "net_g_latest.safetensors").is_file()


def test_validation_writes_images_and_psnr(trained):
    assert re.search(r"# psnr: \d+\.\d+", log_text(trained))
    images = {p.name for p in (trained / "visualization").rglob("*.png")}
    assert {"val0_12.png", "val1_12.png"} <= images  # (basicsr validates once more after the end, as iter 14)


def test_test_entry_point_restores_with_trained_weights(trained, workdir):
    opt = {
        "name": "tiny_test", "model_type": "RestorationModel", "num_gpu": 0,
        "datasets": {"test_1": {"name": "val_sigma25", "type": "GaussianNoiseDataset", "dataroot_gt": "val", "sigma": 25}},
        "network_g": {"type": "SpatialMambaUNet", **TINY},
        "path": {"pretrain_network_g": str(trained / "models" / "net_g_latest.pth"), "param_key_g": "params_ema"},
        "val": {"save_img": True, "suffix": None,
                "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}}},
    }
    run(spatial_restore_command("spatial_restore.test", "-opt", str(write_yaml(workdir / "test.yml", opt))), workdir)
    results = workdir / "results" / "tiny_test"
    assert len(list((results / "visualization" / "val_sigma25").glob("*.png"))) == 2
    assert re.search(r"# psnr: \d+\.\d+", "".join(p.read_text() for p in results.glob("test_*.log")))


def test_sigkill_mid_training_then_auto_resume(workdir):
    opt = write_yaml(workdir / "killed.yml", train_options("killed_run", total_iter=1000, save_freq=2))
    experiment = workdir / "experiments" / "killed_run"
    proc = subprocess.Popen(spatial_restore_command("spatial_restore.train", "-opt", str(opt)), cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 180
    while not (experiment / "training_states" / "4.state").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "training did not reach iteration 4"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = assert_checkpoints_load(experiment)
    last = saved[-1]
    assert last >= 4

    cmd = spatial_restore_command("spatial_restore.train", "-opt", str(opt), "--auto_resume",
                                  "--force_yml", f"train:total_iter={last + 2}")
    run(cmd, workdir)
    text = log_text(experiment)
    assert f"Resuming training from epoch: 0, iter: {last}." in text
    assert len(losses(text.split("Resuming training")[-1])) == 2  # iterations last+1 and last+2 only
    assert assert_checkpoints_load(experiment)[-1] == last + 2


def test_torchrun_two_processes_on_gloo(workdir):
    opt = write_yaml(workdir / "ddp.yml", train_options("ddp_run", total_iter=2, save_freq=2))
    cmd = spatial_restore_command("torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                  "-m", "spatial_restore.train", "-opt", str(opt), "--launcher", "pytorch")
    run(cmd, workdir)
    experiment = workdir / "experiments" / "ddp_run"
    assert "World size (gpu number): 2" in log_text(experiment)
    assert assert_checkpoints_load(experiment) == [2]


def test_tiled_forward_matches_whole_image_for_a_local_network():
    net = torch.nn.Conv2d(3, 3, 1)
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        torch.testing.assert_close(tiled_forward(net, x, 16, 5, torch.device("cpu")), net(x))


def test_ema_decay_ramps_in_so_a_short_run_is_not_its_initial_weights():
    decays = [ema_decay_at(t, 0.999) for t in range(20000)]
    assert decays[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(decays, decays[1:])) and max(decays) == 0.999
    assert ema_decay_at(100, 0.9) == 0.9  # the cap wins once the ramp passes it
    # a parameter that moved from 0 to 1 at the first step: the share of the start left in the average
    start_share = 1.0
    for d in decays[:600]:
        start_share *= d
    assert start_share < 0.02 < 0.999 ** 600 / 10


def test_ema_update_is_basicsrs_average_of_every_parameter():
    """The one-lerp EMA equals basicsr's per-tensor loop: ema * decay + weights * (1 - decay)."""
    from basicsr.models.base_model import BaseModel

    torch.manual_seed(0)
    model = object.__new__(RestorationModel)  # just the two networks: model_ema touches nothing else
    model.opt = {"dist": False}
    model.net_g, model.net_g_ema = SpatialMambaUNet.from_preset("tiny"), SpatialMambaUNet.from_preset("tiny")
    reference = object.__new__(RestorationModel)
    reference.opt = model.opt
    reference.net_g, reference.net_g_ema = model.net_g, copy.deepcopy(model.net_g_ema)
    RestorationModel.model_ema(model, 0.9)
    BaseModel.model_ema(reference, 0.9)
    for (name, p), q in zip(model.net_g_ema.named_parameters(), reference.net_g_ema.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    assert any(not torch.equal(p, q) for p, q in zip(model.net_g_ema.parameters(), model.net_g.parameters()))
