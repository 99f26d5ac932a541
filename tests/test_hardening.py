"""Issue #21: paths, options and configs are checked before any work; outputs keep the umask; nothing fails late."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from spatial_restore import _pipeline
from spatial_restore.image_io import read_image, write_png
from spatial_restore.inference.cli import build_parser, main
from spatial_restore.inference.restorer import AUTO_TILE, CPU_TILE_MAX, CPU_TILE_MIN, CPU_WHOLE_PIXELS, default_tile
from spatial_restore.metrics import BACKBONE_FILE, lpips_unavailable
from spatial_restore.options import ConfigError

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "options" / "train" / "quickstart.yml"


def photo(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    _, err = capsys.readouterr()
    return code, err


# --- the results file ---------------------------------------------------------------------------------

def test_json_naming_an_input_is_refused_before_any_work(tmp_path, model, capsys):
    (tmp_path / "in").mkdir()
    source = photo(tmp_path / "in" / "img1.png")
    before = source.read_bytes()
    code, err = cli(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--json", source, "--overwrite")
    assert code == 2 and err.strip().splitlines() == [f"error: --json {source} is an input image: name a separate results file"]
    assert source.read_bytes() == before and not (tmp_path / "out" / "img1.png").exists()


def test_json_naming_an_output_is_refused(tmp_path, model, capsys):
    source = photo(tmp_path / "a.png")
    code, err = cli(capsys, source, "-o", tmp_path / "o", "--model", model, "--json", tmp_path / "o" / "a.png")
    assert code == 2 and "is where" in err and "restored image goes" in err
    assert not (tmp_path / "o" / "a.png").exists()


def test_json_naming_a_folder_is_a_usage_error(tmp_path, model, capsys):
    source = photo(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_:
        main([str(source), "-o", str(tmp_path / "o"), "--model", model, "--json", str(tmp_path)])
    assert exit_.value.code == 2 and "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- LPIPS --------------------------------------------------------------------------------------------

def test_an_unusable_lpips_file_is_reported_once_and_the_run_goes_on(tmp_path, model, capsys, monkeypatch):
    bad = tmp_path / "bad.pth"
    bad.write_text("x\n")
    monkeypatch.setenv("SPATIAL_RESTORE_LPIPS_BACKBONE", str(bad))
    reason = lpips_unavailable()
    assert reason is not None and str(bad) in reason and BACKBONE_FILE in reason and "\n" not in reason
    sources = [photo(tmp_path / f"p{i}.png", i) for i in range(2)]
    code, err = cli(capsys, *sources, "-o", tmp_path / "out", "--model", model, "--add-noise", "25")
    assert code == 0 and err.count("LPIPS skipped") == 1 and str(bad) in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]


def quickstart(tmp_path: Path, **changes) -> Path:
    """quickstart.yml with its data in tmp_path and ``changes`` ({"a:b": value}) applied."""
    opt = yaml.safe_load(QUICKSTART.read_text())
    for phase in ("train", "val"):
        (tmp_path / phase).mkdir(exist_ok=True)
        opt["datasets"][phase]["dataroot_gt"] = str(tmp_path / phase)
    for keys, value in changes.items():
        *parents, leaf = keys.split(":")
        node = opt
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "opt.yml"
    path.write_text(yaml.safe_dump(opt))
    return path


def test_training_refuses_at_start_a_validation_metric_it_cannot_compute(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIAL_RESTORE_LPIPS_BACKBONE", str(tmp_path / "absent.pth"))
    path = quickstart(tmp_path, **{"val:metrics:lpips": {"type": "calculate_lpips"}})
    with pytest.raises(ConfigError, match=r"opt\.yml: val:metrics:lpips: cannot be computed here: LPIPS needs"):
        _pipeline.read_options(str(path), [], True)


# --- config errors: one line naming file, key path and what is expected, exit 2 -------------------------

@pytest.mark.parametrize("overrides, message", [
    (["train:total_itr=4"], r"--force_yml: train:total_itr: unknown option \(did you mean 'total_iter'\?\)"),
    (["datasets:train:sigmaa=25"], r"--force_yml: datasets:train:sigmaa: unknown option \(did you mean 'sigma'\?\)"),
    (["trian:total_iter=4"], r"--force_yml trian:total_iter: trian is not an option mapping in the file \(did you mean 'train'\?\)"),
    (["network_g:type=SpatialMambaUNett"], r"network_g:type: unknown network 'SpatialMambaUNett' \(did you mean 'SpatialMambaUNet'\?\)"),
    (["datasets:train:type=NoSuchDataset"], r"datasets:train:type: unknown dataset 'NoSuchDataset'"),
    (["train:pixel_opt:type=L2Loss"], r"train:pixel_opt:type: unknown loss 'L2Loss'"),
    (["train:optim_g:type=SGD"], r"train:optim_g:type: unknown optimizer 'SGD'"),
    (["network_g:widthz=[8]"], r"network_g:widthz: unknown option \(did you mean 'widths'\?\)"),
    (["train:total_iter=0"], r"train:total_iter: expected an integer >= 1, got 0"),
    (["datasets:train:batch_size_per_gpu=0"], r"batch_size_per_gpu: expected an integer >= 1, got 0"),
    (["datasets:train:dataroot_gt=/no/such/folder"], r"datasets:train:dataroot_gt: /no/such/folder does not exist"),
])
def test_bad_overrides_end_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        _pipeline.read_options(str(quickstart(tmp_path)), overrides, True)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", r"the top level is a list; expected a mapping of options"),
    ("", r"the file is empty"),
    ("name: !!python/object/apply:os.system ['true']\n", r"line 1: .*no !!python tags"),
    ("name: [unclosed\n", r"line 2: not valid YAML \(expected "),
    ("name: x\nmodel_type: RestorationModel\nnetwork_g: {type: SpatialMambaUNet}\n", r"datasets: required option missing"),
])
def test_bad_files_end_in_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"bad\.yml: {message}"):
        _pipeline.read_options(str(path), [], True)


def test_unknown_key_in_the_file_names_the_file(tmp_path):
    path = quickstart(tmp_path, **{"train:totl_iter": 5})
    with pytest.raises(ConfigError, match=r"opt\.yml: train:totl_iter: unknown option \(did you mean 'total_iter'\?\)"):
        _pipeline.read_options(str(path), [], True)


def test_the_command_exits_2_with_one_line_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        _pipeline.run("train", ["-opt", str(quickstart(tmp_path)), "--force_yml", "train:total_itr=4"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "experiments").exists()


def test_no_workers_drops_persistent_workers(tmp_path):
    opt = _pipeline.read_options(str(quickstart(tmp_path)), ["datasets:train:num_worker_per_gpu=0"], True)
    assert opt["datasets"]["train"]["persistent_workers"] is False


def test_every_shipped_option_file_passes_the_schema(monkeypatch):
    monkeypatch.setattr("spatial_restore.options.DATAROOT_KEYS", ())  # the data sets are not on this machine
    for path in sorted((REPO / "options").glob("*/*.yml")):
        _pipeline.read_options(str(path), [], path.parent.name == "train")


def test_documented_variants_are_accepted(monkeypatch):
    monkeypatch.setattr("spatial_restore.options.DATAROOT_KEYS", ())
    grey = ["name=gaussian_gray_denoising_sigma25_base", "datasets:train:sigma_range=~", "datasets:train:sigma=25",
            "datasets:train:channels=1", "datasets:val:channels=1", "datasets:val:dataroot_gt=datasets/BSD68",
            "datasets:val:name=BSD68_sigma25", "network_g:in_channels=1"]
    opt = _pipeline.read_options(str(REPO / "options/train/gaussian_denoising.yml"), grey, True)
    assert opt["network_g"]["in_channels"] == 1 and opt["datasets"]["train"]["sigma_range"] is None


# --- outputs ------------------------------------------------------------------------------------------

def test_written_files_follow_the_umask_and_leave_no_partial_file(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
        os.umask(0o027)
        write_png(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.png").stat().st_mode) == 0o640
    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("spatial_restore.image_io.os.replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_png(tmp_path / "c.png", np.zeros((4, 4, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_fp16_on_the_cpu_is_refused_with_the_reason(tmp_path, model, capsys):
    code, err = cli(capsys, photo(tmp_path / "a.png"), "-o", tmp_path / "o", "--model", model, "--device", "cpu",
                    "--precision", "fp16")
    assert code == 2 and "--precision fp16 on the CPU" in err and "slower" in err and not (tmp_path / "o").exists()


def test_animated_gif_restores_its_first_frame_and_says_so(tmp_path, model, capsys):
    frames = [Image.fromarray(np.full((24, 32, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    picture = read_image(tmp_path / "anim.gif")
    assert picture.notes[0] == "animated (2 frames): only the first frame is restored"
    assert abs(float(picture.rgb.mean()) - 40 / 255) < 0.02
    code, err = cli(capsys, tmp_path, "-o", tmp_path / "o", "--model", model)  # a folder's .gif is an input
    assert code == 0 and "only the first frame is restored" in err and (tmp_path / "o" / "anim.png").is_file()


def test_an_input_starting_with_a_dash_goes_after_double_dash(tmp_path, model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "-x.png")
    assert "after '--'" in build_parser().format_help()
    code, _ = cli(capsys, "-o", "o", "--model", model, "--", "-x.png")
    assert code == 0 and (tmp_path / "o" / "-x.png").is_file()


def test_cpu_tile_follows_the_memory_available():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    four_k = 3840 * 2160
    assert default_tile(gpu, four_k, 1 << 30) == AUTO_TILE  # GPU default unchanged
    assert default_tile(cpu, CPU_WHOLE_PIXELS, 1 << 30) is None  # a 512x512 photo runs whole
    assert default_tile(cpu, four_k, 64 << 30) == CPU_TILE_MAX
    assert default_tile(cpu, four_k, 8 << 30) == CPU_TILE_MAX  # an 8 GB machine with room left
    assert default_tile(cpu, four_k, 2 << 30) == CPU_TILE_MIN  # little free memory: smaller tiles
    assert default_tile(cpu, four_k, 64 << 20) == CPU_TILE_MIN  # never below the floor
