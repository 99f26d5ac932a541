"""Restoration datasets, PSNR loss, option parsing, and every shipped option file building its parts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from spatial_restore._pipeline import parse_options, set_option
from spatial_restore.archs import UNET_PRESETS
from spatial_restore.data import GaussianNoiseDataset, PairedFolderDataset
from spatial_restore.data.synthetic import _grating, synthetic_image
from spatial_restore.losses import PSNRLoss

REPO = Path(__file__).resolve().parents[1]
OPTION_FILES = sorted((REPO / "options").glob("*/*.yml"))


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (40, 36), seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def noise_opt(root: Path, **kw) -> dict:
    return {"name": "t", "dataroot_gt": str(root), "phase": "val", "sigma": 25, **kw}


def test_validation_noise_is_deterministic_per_image_and_has_the_right_level(tmp_path):
    write_images(tmp_path, ["a.png", "b.png"], size=(64, 64))
    one, two = GaussianNoiseDataset(noise_opt(tmp_path)), GaussianNoiseDataset(noise_opt(tmp_path))
    a1, a2, b = one[0], two[0], one[1]
    torch.testing.assert_close(a1["lq"], a2["lq"], rtol=0, atol=0)
    noise_a, noise_b = a1["lq"] - a1["gt"], b["lq"] - b["gt"]
    assert not torch.allclose(noise_a, noise_b)
    assert abs(noise_a.std().item() - 25 / 255) < 0.1 * 25 / 255
    assert a1["lq"].shape == (3, 64, 64) and a1["lq_path"].endswith("a.png")


def test_training_crops_and_blind_sigma_range(tmp_path):
    write_images(tmp_path, ["a.png"], size=(48, 50))
    ds = GaussianNoiseDataset(noise_opt(tmp_path, phase="train", sigma=None, sigma_range=[0, 50], gt_size=16))
    stds = [(s["lq"] - s["gt"]).std().item() * 255 for s in (ds[0] for _ in range(12))]
    assert ds[0]["gt"].shape == (3, 16, 16)
    assert max(stds) - min(stds) > 10 and max(stds) < 60
    with pytest.raises(ValueError, match="smaller than the training crop"):
        GaussianNoiseDataset(noise_opt(tmp_path, phase="train", gt_size=64))[0]
    with pytest.raises(ValueError, match="set 'sigma'"):
        GaussianNoiseDataset(noise_opt(tmp_path, sigma=None))


def test_grey_prob_desaturates_clean_crops_but_not_the_noise(tmp_path):
    write_images(tmp_path, ["a.png"], size=(48, 50))
    opt = noise_opt(tmp_path, phase="train", gt_size=16)
    samples = [GaussianNoiseDataset({**opt, "grey_prob": 1.0})[0] for _ in range(4)]
    for s in samples:
        gt, noise = s["gt"], s["lq"] - s["gt"]
        torch.testing.assert_close(gt[0], gt[1], rtol=0, atol=0)
        torch.testing.assert_close(gt[0], gt[2], rtol=0, atol=0)
        assert (noise[0] - noise[1]).abs().mean() > 0.05  # independent noise per channel stays
    colour = [GaussianNoiseDataset(opt)[0]["gt"] for _ in range(4)]
    assert all((g[0] - g[1]).abs().max() > 0.1 for g in colour)
    mixed = [GaussianNoiseDataset({**opt, "grey_prob": 0.5})[0]["gt"] for _ in range(40)]
    n_grey = sum(bool(torch.equal(g[0], g[1])) for g in mixed)
    assert 8 <= n_grey <= 32  # binomial(40, 0.5): outside this range has probability < 1e-4
    for bad in ({"grey_prob": 1.5}, {"grey_prob": 0.3, "channels": 1}):
        with pytest.raises(ValueError, match="grey_prob"):
            GaussianNoiseDataset({**opt, **bad})


def test_grey_noise_prob_shares_one_noise_field_over_the_channels_of_grey_crops(tmp_path):
    write_images(tmp_path, ["a.png"], size=(48, 50))
    opt = {**noise_opt(tmp_path, phase="train", gt_size=16), "grey_prob": 1.0}
    for s in (GaussianNoiseDataset({**opt, "grey_noise_prob": 1.0})[0] for _ in range(4)):
        noise = s["lq"] - s["gt"]
        torch.testing.assert_close(noise[0], noise[1], rtol=0, atol=0)
        torch.testing.assert_close(noise[0], noise[2], rtol=0, atol=0)
        assert torch.equal(s["gt"][0], s["gt"][1])
    shared = [GaussianNoiseDataset({**opt, "grey_noise_prob": 0.5})[0] for _ in range(40)]
    n_shared = sum(bool(torch.equal(*(s["lq"] - s["gt"])[:2])) for s in shared)
    assert 8 <= n_shared <= 32  # binomial(40, 0.5): outside this range has probability < 1e-4
    for s in (GaussianNoiseDataset({**opt, "grey_prob": 0.5, "grey_noise_prob": 1.0})[0] for _ in range(12)):
        is_grey, noise = bool(torch.equal(s["gt"][0], s["gt"][1])), s["lq"] - s["gt"]
        assert torch.equal(noise[0], noise[1]) == is_grey  # colour crops keep independent noise
    for bad in ({"grey_noise_prob": 1.5}, {"grey_noise_prob": 0.5, "grey_prob": 0.0}):
        with pytest.raises(ValueError, match="grey_noise_prob"):
            GaussianNoiseDataset({**opt, **bad})


def test_grey_validation_is_desaturated_with_shared_noise_and_the_same_every_time(tmp_path):
    write_images(tmp_path, ["a.png", "b.png"], size=(24, 40))
    opt = {**noise_opt(tmp_path, sigma=14.43), "grey_prob": 1.0, "grey_noise_prob": 1.0}
    first, again = GaussianNoiseDataset(opt)[1], GaussianNoiseDataset(opt)[1]
    torch.testing.assert_close(first["lq"], again["lq"], rtol=0, atol=0)
    noise = first["lq"] - first["gt"]
    torch.testing.assert_close(noise[0], noise[2], rtol=0, atol=0)
    assert abs(float(noise.std()) - 14.43 / 255) < 0.15 * 14.43 / 255  # 960 samples: s.e. of the std ~2.3%
    plain = GaussianNoiseDataset(noise_opt(tmp_path, sigma=14.43))[1]
    assert (plain["gt"][0] - plain["gt"][1]).abs().max() > 0.1  # validation without grey_prob stays colour


def test_scale_range_crops_a_larger_region_and_area_downscales_it(tmp_path):
    # 8-px stripes: a crop at scale s shows stripes 8*s px wide, so the count of stripe edges in a
    # 32-px crop tells the scale that was used.
    stripes = np.repeat((np.arange(160) // 8 % 2 * 255).astype(np.uint8), 3).reshape(1, 160, 3)
    cv2.imwrite(str(tmp_path / "s.png"), np.repeat(stripes, 160, axis=0))
    opt = noise_opt(tmp_path, phase="train", gt_size=32, use_rot=False, use_hflip=False)

    def edges(sample: dict) -> int:
        bright = sample["gt"][0, 0].numpy() >= 0.5  # a blended edge pixel falls on one side
        return int((bright[1:] != bright[:-1]).sum())

    assert {edges(GaussianNoiseDataset(opt)[0]) for _ in range(6)} <= {3, 4}  # 32 px / 8 px stripes
    halved = [GaussianNoiseDataset({**opt, "scale_range": [0.5, 0.5]})[0] for _ in range(6)]
    assert all(s["gt"].shape == (3, 32, 32) for s in halved)
    assert {edges(s) for s in halved} <= {7, 8}  # 64 px of stripes in 32 px
    assert all(0 <= float(s["gt"].min()) and float(s["gt"].max()) <= 1 for s in halved)
    grey = GaussianNoiseDataset({**opt, "channels": 1, "scale_range": [0.5, 0.5]})[0]
    assert grey["gt"].shape == (1, 32, 32)
    for bad in ([0, 1], [0.8, 0.5], [0.5, 1.5], [0.5]):
        with pytest.raises(ValueError, match="scale_range"):
            GaussianNoiseDataset({**opt, "scale_range": bad})


def test_synthetic_scenes_are_seeded_bounded_and_full_of_sharp_edges():
    scenes = [synthetic_image(64, np.random.default_rng(seed)) for seed in (0, 0, 1)]
    assert scenes[0].shape == (64, 64, 3) and scenes[0].dtype == np.float32
    np.testing.assert_array_equal(scenes[0], scenes[1])
    assert np.abs(scenes[0] - scenes[2]).mean() > 0.05
    rng = np.random.default_rng(2)
    for img in (synthetic_image(64, rng) for _ in range(10)):
        assert 0.0 <= img.min() and img.max() <= 1.0
        step = np.maximum(np.abs(np.diff(img, axis=0))[:, :-1], np.abs(np.diff(img, axis=1))[:-1]).max(axis=2)
        assert (step > 0.2).mean() > 0.01  # occlusion edges: a jump of 0.2 between neighbours somewhere


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_gratings_are_periodic(seed):
    # One grating over a flat canvas: its power sits in a few harmonics (a white-noise image of this
    # size puts about 4 / 16384 of its power in its 4 strongest bins; we ask for 5%).
    img = np.full((128, 128, 3), 0.5, np.float32)
    _grating(img, np.random.default_rng(seed))
    grey = img.mean(axis=2) - img.mean()
    power = np.abs(np.fft.fft2(grey)) ** 2
    assert np.sort(power.ravel())[-4:].sum() > 0.05 * power.sum() > 0


def test_synthetic_prob_replaces_photo_crops_by_scenes(tmp_path):
    cv2.imwrite(str(tmp_path / "flat.png"), np.full((48, 48, 3), 128, np.uint8))
    opt = noise_opt(tmp_path, phase="train", gt_size=32)
    photo = GaussianNoiseDataset(opt)[0]["gt"]
    assert float(photo.max() - photo.min()) == 0.0
    scenes = [GaussianNoiseDataset({**opt, "synthetic_prob": 1.0})[0] for _ in range(3)]
    assert all(s["gt"].shape == (3, 32, 32) and float(s["gt"].std()) > 0.02 for s in scenes)
    assert all(abs(float((s["lq"] - s["gt"]).std()) - 25 / 255) < 0.2 * 25 / 255 for s in scenes)
    grey = GaussianNoiseDataset({**opt, "synthetic_prob": 1.0, "channels": 1})[0]["gt"]
    assert grey.shape == (1, 32, 32) and float(grey.std()) > 0.02
    desaturated = GaussianNoiseDataset({**opt, "synthetic_prob": 1.0, "grey_prob": 1.0})[0]["gt"]
    torch.testing.assert_close(desaturated[0], desaturated[2], rtol=0, atol=0)
    mixed = [GaussianNoiseDataset({**opt, "synthetic_prob": 0.5})[0]["gt"] for _ in range(40)]
    n_scenes = sum(float(g.std()) > 0 for g in mixed)
    assert 8 <= n_scenes <= 32  # binomial(40, 0.5): outside this range has probability < 1e-4
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="synthetic_prob"):
            GaussianNoiseDataset({**opt, "synthetic_prob": bad})


def test_grey_dataset_has_one_channel(tmp_path):
    write_images(tmp_path, ["a.png"])
    sample = GaussianNoiseDataset(noise_opt(tmp_path, channels=1))[0]
    assert sample["lq"].shape == sample["gt"].shape == (1, 40, 36)


def test_paired_folders_gopro_layout_with_aligned_crops(tmp_path):
    for scene, seed in (("scene_a", 0), ("scene_b", 1)):
        write_images(tmp_path / scene / "blur", ["000001.png", "000002.png"], seed=seed)
        write_images(tmp_path / scene / "sharp", ["000001.png", "000002.png"], seed=seed)  # lq == gt
    opt = {"dataroot": str(tmp_path), "lq_folder": "blur", "gt_folder": "sharp", "phase": "train", "gt_size": 16}
    ds = PairedFolderDataset(opt)
    assert len(ds) == 4
    sample = ds[3]
    assert "scene_b" in sample["lq_path"] and sample["gt_path"].endswith("sharp/000002.png")
    torch.testing.assert_close(sample["lq"], sample["gt"])  # same crop, flip and rotation on both
    (tmp_path / "scene_a" / "sharp" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="differ in file names"):
        PairedFolderDataset(opt)


def test_psnr_loss_is_negative_psnr():
    gt = torch.zeros(2, 3, 8, 8)
    pred = gt + 0.1  # MSE 0.01 -> PSNR 20 dB
    assert PSNRLoss()(pred, gt).item() == pytest.approx(-20.0, abs=1e-3)


def test_psnr_loss_weights_each_image_by_its_error_up_to_eps():
    """d loss / d MSE_b is proportional to 1 / (MSE_b + eps): a crop with 100x less error gets ~100x the
    weight, until its error reaches eps."""
    gt = torch.zeros(2, 1, 4, 4)
    for eps, ratio in ((1e-8, 100.0), (1e-4, (1e-2 + 1e-4) / (1e-4 + 1e-4))):
        pred = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.01)]).requires_grad_()
        PSNRLoss(eps=eps)(pred, gt).backward()
        per_pixel = pred.grad.flatten(1)[:, 0]  # d/dpred = 2 pred / (n (MSE + eps)) per image
        weight = (per_pixel / pred.detach().flatten(1)[:, 0]).tolist()
        assert weight[1] / weight[0] == pytest.approx(ratio, rel=1e-3)
    with pytest.raises(ValueError, match="eps"):
        PSNRLoss(eps=0)


def test_force_yml_parses_values_as_yaml_and_refuses_unknown_sections():
    opt = {"train": {"total_iter": 10}}
    set_option(opt, "train:total_iter=20")
    set_option(opt, "train:scheduler_periods=[1, 2]")
    set_option(opt, "train:ema_decay=~")
    set_option(opt, "train:lr=1e-4")  # YAML 1.1 alone would read this as the string '1e-4'
    set_option(opt, "train:name=small_run")
    assert opt["train"] == {"total_iter": 20, "scheduler_periods": [1, 2], "ema_decay": None, "lr": 1e-4,
                            "name": "small_run"}
    with pytest.raises(ValueError, match="nosuch"):
        set_option(opt, "nosuch:key=1")


def preset_of(network_opt: dict) -> str | None:
    """The preset whose values ``network_opt`` (a YAML network_g) repeats, if any."""
    for name, preset in UNET_PRESETS.items():
        if all(network_opt.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in preset.items()):
            return name
    return None


def make_data_for(dataset_opt: dict, root: Path) -> list[str]:
    """Tiny data in the layout ``dataset_opt`` expects; returns the --force_yml entries pointing at it."""
    size = (int(dataset_opt.get("gt_size", 16)) + 4 + max(dataset_opt.get("kernel_size", [0])),) * 2  # blur: crop + k - 1
    if "lq_folder" not in dataset_opt:  # clean images only (noise or blur added on the fly)
        names = [f"{i:02d}.png" for i in range(11 if "holdout" in dataset_opt else 2)]  # one held out of 11
        for folder in dataset_opt.get("folders", ["."]):
            write_images(root / folder, names, size=size)
        return [f"dataroot_gt={root}"]
    for sub in (dataset_opt["lq_folder"], dataset_opt["gt_folder"]):
        write_images(root / "scene" / sub, ["a.png"], size=size)
    return [f"dataroot={root}"]


@pytest.mark.parametrize("option_file", OPTION_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_option_file_builds_its_model_and_datasets(option_file, tmp_path, monkeypatch):
    from basicsr.archs import build_network
    from basicsr.data import build_dataset
    from basicsr.models import build_model

    from spatial_restore.checkpoint import save_safetensors

    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(option_file.read_text())
    # Every shipped network is a preset (the presets are built in test_restoration_unet); build the
    # model around the tiny one so this stays fast (channels and data stay the file's).
    assert preset_of(raw["network_g"]) in UNET_PRESETS
    tiny = {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_PRESETS["tiny"].items()}
    force = [f"network_g:{k}={v}" for k, v in tiny.items()]
    raw["network_g"].update(tiny)
    for phase, dataset_opt in raw["datasets"].items():
        force += [f"datasets:{phase}:{entry}" for entry in make_data_for(dataset_opt, tmp_path / phase)]
    is_train = option_file.parent.name == "train"
    if not is_train or raw.get("path", {}).get("pretrain_network_g"):  # test and fine-tune files: loading is exercised too
        weights = save_safetensors(build_network(dict(raw["network_g"])), tmp_path / "w.safetensors")
        force.append(f"path:pretrain_network_g={weights}")
    opt, _ = parse_options(str(tmp_path), is_train, ["-opt", str(option_file), "--force_yml", *force])
    assert opt["num_gpu"] == torch.cuda.device_count() and not opt["dist"]
    for dataset_opt in opt["datasets"].values():
        sample = build_dataset(dataset_opt)[0]
        assert sample["lq"].shape == sample["gt"].shape
        assert sample["lq"].shape[0] == opt["network_g"]["in_channels"]
    model = build_model(opt)
    assert type(model).__name__ == "RestorationModel"
    if is_train:
        assert type(model.optimizer_g).__name__ == "AdamW" and model.schedulers


def test_default_denoiser_is_the_small_preset():
    for folder in ("train", "test"):
        net = yaml.safe_load((REPO / "options" / folder / "default_denoiser.yml").read_text())["network_g"]
        assert preset_of(net) == "small"


def test_both_local_rank_spellings_are_accepted(tmp_path):
    option_file = str(REPO / "options/train/quickstart.yml")
    for spelling in ("--local_rank", "--local-rank"):
        _, args = parse_options(str(tmp_path), True, ["-opt", option_file, spelling, "1"])
        assert args.local_rank == 1
