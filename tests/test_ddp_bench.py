"""`python -m spatial_restore.bench ddp` end to end on CPU (2 gloo processes, tiny preset), and its log parsing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spatial_restore.bench import ddp, ddp_logs, ddp_step0

LOG = """\
2026-11-24 10:00:00,000 INFO: Start training from epoch: 0, iter: 998
    total_iter: 1200
2026-11-24 10:00:00,250 INFO: [ddp_s..][epoch:  0, iter:     999, lr:(2.000e-04,)] [eta: 0:00:01] l_pix: 1.0e-01
2026-11-24 10:00:00,500 INFO: [ddp_s..][epoch:  0, iter:   1,000, lr:(2.000e-04,)] [eta: 0:00:01] l_pix: 1.0e-01
2026-11-24 10:00:00,501 INFO: Saving models and training states.
2026-11-24 10:00:01,500 INFO: [ddp_s..][epoch:  0, iter:   1,001, lr:(1.990e-04,)] [eta: 0:00:01] l_pix: 1.0e-01
2026-11-24 10:00:02,000 INFO: [ddp_s..][epoch:  1, iter:   1,002, lr:(1.980e-04,)] [eta: 0:00:00] l_pix: 1.0e-01
2026-11-24 10:00:02,100 INFO: Validation photos_val_sigma25
\t # psnr: 27.1234\tBest: 27.1234 @ 1003 iter
"""


def test_log_parser_turns_timestamps_into_images_per_second():
    points = ddp_logs.iteration_times(LOG)
    assert [i for i, _ in points] == [999, 1000, 1001, 1002]  # thousands separators read, other lines ignored
    assert points[-1][1] - points[0][1] == pytest.approx(1.75)
    # warm-up 1 after 998: iterations 1000..1002 timed from the line of 999 (2 images each)
    whole = ddp_logs.steady_window(points, 998, 1002, 1, 2)
    assert (whole["from_iter"], whole["to_iter"], whole["images"]) == (999, 1002, 6)
    assert whole["images_per_s"] == pytest.approx(6 / 1.75)
    before_save = ddp_logs.steady_window(points, 998, 1000, 0, 2)  # lines of 999 and 1000: 2 images in 0.25 s
    after_save = ddp_logs.steady_window(points, 1000, 1002, 1, 2)  # lines of 1001 and 1002: 2 images in 0.5 s
    assert before_save["images_per_s"] == pytest.approx(8.0) and after_save["images_per_s"] == pytest.approx(4.0)
    assert ddp_logs.combined_rate([before_save, after_save]) == pytest.approx(4 / 0.75)
    with pytest.raises(ValueError, match="fewer than two log lines"):
        ddp_logs.steady_window(points, 998, 1002, 4, 2)
    assert ddp_logs.last_psnr(LOG) == 27.1234


def write_images(folder: Path, count: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def test_bench_on_two_cpu_processes(tmp_path, monkeypatch):
    # One thread per process: on a small shared CPU, OpenMP threads of tiny convolutions spin against each other.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    write_images(tmp_path / "train", 3, (40, 48), seed=0)
    write_images(tmp_path / "val", 2, (24, 28), seed=1)
    argv = ["--device", "cpu", "--gpus", "2", "--preset", "tiny", "--iters", "4", "--batch", "2", "--crop", "32",
            "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--workdir", str(tmp_path / "run")]
    ddp.main(argv)

    report = json.loads((tmp_path / "run" / "ddp_smoke.json").read_text())
    step0 = report["step0"]
    assert step0["loss_rel_diff"] <= ddp_step0.LOSS_RTOL and step0["grad_rel_diff"] <= ddp_step0.GRAD_RTOL
    assert report["resume"]["resumed_at"] == 2 and report["resume"]["final_iter"] == 4
    assert report["restore"]["diff_db"] < 0.01
    assert report["throughput"]["efficiency"] > 0
    assert [w["to_iter"] for w in report["throughput"]["n_devices"]["windows"]] == [2, 4]
    assert report["passed"]

    with pytest.raises(SystemExit, match="refusing to overwrite"):
        ddp.main(argv)
