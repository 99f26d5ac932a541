"""`python -m spatial_restore.bench ddp`: multi-GPU (DDP) smoke benchmark of the real training pipeline.

A U-Net preset goes through ``spatial_restore.train`` on one device and, under torchrun, on N devices
(same iterations, same global batch), and the bench checks what a multi-GPU run must get right:
1. step 0: one fixed global batch gives the same loss and gradient split over N processes as in one
   (DDP averages the shards' gradients), in fp32 with TF32 off;
2. throughput: steady-state images/s from the timestamps of basicsr's log lines, and the scaling
   efficiency images/s(N) / (N * images/s(1));
3. --auto_resume under DDP: the N-device run is two invocations, the second resuming at half-way;
4. the DDP run's final EMA weights, tested on one device by ``spatial_restore.test``, reproduce the
   validation PSNR that the run itself logged.
Checks 1, 3 and 4 set the exit status; the efficiency depends on the machine, so only with --strict.
The torchrun worker of check 1 is ``ddp_step0``; the basicsr logs are read by ``ddp_logs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import yaml

from ..archs import UNET_PRESETS
from ..paths import REPO, shared_dir
from .ddp_logs import RESUME_LINE, combined_rate, iteration_times, last_psnr, steady_window
from .ddp_step0 import GRAD_RTOL, LOSS_RTOL, NOISE_SIGMA, SEED, compare_step0

SIGMA_RANGE = [0, 50]  # training is blind over it; step 0 and validation use NOISE_SIGMA
RESTORE_TOL_DB = 0.01  # same weights, images and noise: only kernel-choice rounding may differ
# Forced (not defaulted) in every child: an inherited setting must never turn NVLink multicast on.
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


# --- options and subprocesses -------------------------------------------------------------------------

def train_options(name: str, args: argparse.Namespace, per_device: int, num_gpu: int, enlarge: int) -> dict:
    """basicsr options: blind Gaussian denoising on the photos, validation at sigma 25 only after training."""
    cuda = args.device == "cuda"
    workers = 4 if cuda else 0
    return {
        "name": name, "model_type": "RestorationModel", "num_gpu": num_gpu, "manual_seed": SEED,
        "datasets": {
            "train": {"name": "photos_train", "type": "GaussianNoiseDataset", "dataroot_gt": str(args.train),
                      "sigma_range": SIGMA_RANGE, "channels": 3, "gt_size": args.crop, "use_hflip": True,
                      "use_rot": True, "cache": True, "num_worker_per_gpu": workers, "batch_size_per_gpu": per_device,
                      "dataset_enlarge_ratio": enlarge, "pin_memory": cuda, "persistent_workers": workers > 0},
            "val": val_dataset(args),
        },
        "network_g": network_options(args.preset),
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0.999, "amp": None if args.amp == "none" else args.amp, "grad_clip": 0.01,
            "optim_g": {"type": "AdamW", "lr": 2e-4, "weight_decay": 1e-4, "betas": [0.9, 0.999]},
            # The period stays at the full length in the half-length first invocation of the resumed run,
            # so the resumed schedule is the single run's.
            "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [args.iters], "restart_weights": [1],
                          "eta_min": 1e-6},
            "total_iter": args.iters, "warmup_iter": -1,
            "pixel_opt": {"type": "MSELoss", "loss_weight": 1.0, "reduction": "mean"},
        },
        # No validation inside the timed loop; basicsr validates once after the last iteration.
        "val": {"val_freq": args.iters + 1, "save_img": False, "metrics": psnr_metric()},
        # A line per iteration: each step already syncs on its loss, so the line costs only its text and
        # every iteration gets a timestamp. Half-way checkpoints are what the resumed run restarts from.
        "logger": {"print_freq": 1, "save_checkpoint_freq": args.iters // 2, "use_tb_logger": False},
    }


def test_options(name: str, args: argparse.Namespace, weights: Path) -> dict:
    """``spatial_restore.test`` on the validation set of the training run, with the given weights."""
    return {
        "name": name, "model_type": "RestorationModel", "num_gpu": 1 if args.device == "cuda" else 0,
        "manual_seed": SEED, "datasets": {"test_1": val_dataset(args)},
        "network_g": network_options(args.preset),
        "path": {"pretrain_network_g": str(weights), "param_key_g": "params_ema", "strict_load_g": True},
        "val": {"save_img": False, "suffix": None, "metrics": psnr_metric()},
    }


def network_options(preset: str) -> dict:
    """``network_g`` of the preset, with lists where the preset has tuples (plain YAML)."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_PRESETS[preset].items()}
    return {"type": "SpatialMambaUNet", "in_channels": 3, **values}


def val_dataset(args: argparse.Namespace) -> dict:
    return {"name": "photos_val_sigma25", "type": "GaussianNoiseDataset", "dataroot_gt": str(args.val),
            "sigma": NOISE_SIGMA, "channels": 3}


def psnr_metric() -> dict:
    return {"psnr": {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}}


def child_env() -> dict[str, str]:
    """The inherited environment, the repo importable, unbuffered output, NVLink multicast off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(MULTICAST_OFF)
    return env


def free_port() -> int:
    """A port nobody listens on now, so that concurrent torchrun launches never share a rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(nproc: int, module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", module, *args]


class Runner:
    """Runs each phase with cwd=workdir, its output in logs/<phase>.txt; records wall times and log paths."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = child_env()
        self.wall_s: dict[str, float] = {}
        self.outputs: dict[str, str] = {}

    def __call__(self, phase: str, cmd: list[str]) -> None:
        log = self.logs / f"{phase}.txt"
        print(f"[ddp] {phase}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        with open(log, "w") as out:
            rc = subprocess.run(cmd, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT).returncode
        self.wall_s[phase] = round(time.perf_counter() - start, 1)
        self.outputs[phase] = str(log)
        if rc:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise SystemExit(f"[ddp] {phase} failed (exit {rc}); its full output: {log}")
        print(f"[ddp] {phase}: done in {self.wall_s[phase]:.1f} s", flush=True)


def new_log(folder: Path, pattern: str, before: set[Path]) -> Path:
    """The log file a run just wrote (basicsr names it by the start time, and a resumed run adds one)."""
    fresh = sorted(set(folder.glob(pattern)) - before)
    if len(fresh) != 1:
        raise SystemExit(f"[ddp] expected one new {pattern} in {folder}, found {[p.name for p in fresh]}")
    return fresh[0]


def run_training(runner: Runner, phase: str, cmd: list[str], experiment: Path) -> str:
    """Run one training invocation; the text of the basicsr log it wrote."""
    before = set(experiment.glob("train_*.log"))
    runner(phase, cmd)
    log = new_log(experiment, "train_*.log", before)
    runner.outputs[f"{phase}_basicsr_log"] = str(log)
    return log.read_text()


# --- the bench ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spatial_restore.bench ddp", description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", type=int, default=max(2, torch.cuda.device_count()),
                        help="N, the devices of the DDP run (default: all GPUs, at least 2)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu: N gloo processes on the CPU (tests); default: %(default)s")
    parser.add_argument("--preset", default="small", choices=sorted(UNET_PRESETS), help="default: %(default)s")
    parser.add_argument("--iters", type=int, default=300, help="training iterations, even (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="global batch, a multiple of N (default: %(default)s)")
    parser.add_argument("--crop", type=int, default=256, help="training crop size (default: %(default)s)")
    parser.add_argument("--warmup", type=int, help="iterations left out of the timing at the start of each half "
                        "of each run (the N-device run restarts at half-way; default: 20%% of --iters, at least 1)")
    parser.add_argument("--amp", choices=["bf16", "none"], help="training autocast (default: bf16 on cuda, "
                        "none on cpu); the step-0 check is always fp32")
    parser.add_argument("--train", type=Path, default=shared_dir() / "data" / "photos" / "train",
                        help="default: %(default)s")
    parser.add_argument("--val", type=Path, default=shared_dir() / "data" / "photos" / "val",
                        help="default: %(default)s")
    parser.add_argument("--workdir", type=Path, help="runs execute here (experiments/, results/, logs/); "
                        "default: a fresh ./ddp_smoke_runs/<time>")
    parser.add_argument("--json", type=Path, metavar="FILE", help="default: <workdir>/ddp_smoke.json")
    parser.add_argument("--min-efficiency", type=float, default=0.85, help="default: %(default)s")
    parser.add_argument("--strict", action="store_true",
                        help="an efficiency below --min-efficiency fails the exit status too")
    args = parser.parse_args(argv)

    args.amp = args.amp or ("bf16" if args.device == "cuda" else "none")
    args.warmup = max(1, args.iters // 5) if args.warmup is None else args.warmup
    if args.gpus < 2:
        parser.error("--gpus must be at least 2 (the comparison is 1 device against N)")
    if args.iters < 4 or args.iters % 2:
        parser.error("--iters must be even and at least 4 (the resumed run restarts at iters/2)")
    if args.batch % args.gpus:
        parser.error(f"--batch {args.batch} is not a multiple of --gpus {args.gpus}: the global batch must split")
    if not 0 <= args.warmup < args.iters // 2:
        parser.error(f"--warmup must be in [0, iters/2): each invocation needs timed iterations, got {args.warmup}")
    if args.device == "cuda" and torch.cuda.device_count() < args.gpus:
        parser.error(f"--gpus {args.gpus} but {torch.cuda.device_count()} CUDA device(s) visible (or use --device cpu)")
    args.train, args.val = args.train.resolve(), args.val.resolve()
    args.workdir = (args.workdir or Path("ddp_smoke_runs") / datetime.now().strftime("%Y%m%d_%H%M%S")).resolve()
    args.json = args.json or args.workdir / "ddp_smoke.json"
    return args


def device_label(args: argparse.Namespace) -> str:
    if args.device == "cpu":
        return f"{args.gpus} x CPU process (gloo)"
    return f"{args.gpus} x {torch.cuda.get_device_name(0)}"


def table(report: dict, n: int) -> str:
    """Markdown: one row per check, the 1-device and N-device values side by side."""
    s0, tp, rs, rst, psnr = (report[k] for k in ("step0", "throughput", "resume", "restore", "val_psnr"))
    verdict = {True: "PASS", False: "FAIL"}
    rows = [
        ("step-0 loss (fp32)", f"{s0['loss_1']:.8g}", f"{s0['loss_n']:.8g}",
         f"rel diff {s0['loss_rel_diff']:.1e} (tol {LOSS_RTOL:.0e})"),
        ("step-0 gradient (fp32)", "", "",
         f"rel diff {s0['grad_rel_diff']:.1e} (tol {GRAD_RTOL:.0e}): {verdict[s0['passed']]}"),
        ("train images/s (steady state)", f"{tp['one_device']['images_per_s']:.2f}",
         f"{tp['n_devices']['images_per_s']:.2f}",
         f"efficiency {tp['efficiency']:.1%} (min {tp['min_efficiency']:.0%}): {verdict[tp['passed']]}"),
        ("final validation PSNR (dB)", f"{psnr['one_device']:.4f}", f"{psnr['n_devices']:.4f}", "informative"),
        ("--auto_resume under DDP", "", f"iter {rs['resumed_at']} -> {rs['final_iter']}",
         f"expected {rs['expected_resume']} -> {rs['expected_final']}: {verdict[rs['passed']]}"),
        ("DDP weights tested on 1 device (dB)", f"{rst['one_device_test_psnr']:.4f}", f"{rst['ddp_val_psnr']:.4f}",
         f"diff {rst['diff_db']:.4f} dB (tol {RESTORE_TOL_DB}): {verdict[rst['passed']]}"),
    ]
    lines = [f"| check | 1 device | {n} devices | result |", "|---|---:|---:|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_step0(runner: Runner, args: argparse.Namespace) -> dict:
    """Check 1: the step-0 worker under torchrun with 1 and with N processes, compared."""
    saved = {}
    for k in (1, args.gpus):
        out = args.workdir / f"step0_{k}x.pt"
        runner(f"step0_{k}x", torchrun(k, "spatial_restore.bench.ddp_step0", "--out", str(out), "--preset", args.preset,
                                       "--batch", str(args.batch), "--crop", str(args.crop), "--train", str(args.train),
                                       "--device", args.device))
        saved[k] = torch.load(out, map_location="cpu", weights_only=True)
    return compare_step0(saved[1], saved[args.gpus])


def run_trainings(runner: Runner, args: argparse.Namespace, n_train: int, exp_1: Path, exp_n: Path) -> dict:
    """Checks 2-3: 1 device in one invocation; N devices in two, the second resumed at half-way."""
    n, half, cuda = args.gpus, args.iters // 2, args.device == "cuda"
    enlarge = math.ceil((args.iters + 1) * args.batch / n_train)  # one epoch covers the run: no mid-run restart
    opt_1, opt_n = args.workdir / f"{exp_1.name}.yml", args.workdir / f"{exp_n.name}.yml"
    opt_1.write_text(yaml.safe_dump(train_options(exp_1.name, args, args.batch, 1 if cuda else 0, enlarge),
                                    sort_keys=False))
    opt_n.write_text(yaml.safe_dump(train_options(exp_n.name, args, args.batch // n, n if cuda else 0, enlarge),
                                    sort_keys=False))
    log_1 = run_training(runner, "train_1x", [sys.executable, "-m", "spatial_restore.train", "-opt", str(opt_1)], exp_1)
    ddp = ["-opt", str(opt_n), "--launcher", "pytorch"]
    log_n1 = run_training(runner, f"train_{n}x_first_half",
                          torchrun(n, "spatial_restore.train", *ddp, "--force_yml", f"train:total_iter={half}"), exp_n)
    log_n2 = run_training(runner, f"train_{n}x_resumed", torchrun(n, "spatial_restore.train", *ddp, "--auto_resume"),
                          exp_n)

    resumed = RESUME_LINE.findall(log_n2)
    resumed_at = int(resumed[-1]) if resumed else None
    final_iter = max((i for i, _ in iteration_times(log_n2)), default=None)

    # Both runs are timed over the same iterations, each half after its own warm-up: the N-device run
    # restarts at half-way, and the 1-device run's half-way checkpoint save stays out of its timing too.
    def windows(first_half: str, second_half: str) -> list[dict]:
        return [steady_window(iteration_times(first_half), 0, half, args.warmup, args.batch),
                steady_window(iteration_times(second_half), half, args.iters, args.warmup, args.batch)]

    windows_1, windows_n = windows(log_1, log_1), windows(log_n1, log_n2)
    rate_1, rate_n = combined_rate(windows_1), combined_rate(windows_n)
    efficiency = rate_n / (n * rate_1)
    return {
        "throughput": {"one_device": {"images_per_s": rate_1, "windows": windows_1},
                       "n_devices": {"images_per_s": rate_n, "windows": windows_n},
                       "efficiency": efficiency, "min_efficiency": args.min_efficiency,
                       "passed": efficiency >= args.min_efficiency},
        "resume": {"resumed_at": resumed_at, "final_iter": final_iter, "expected_resume": half,
                   "expected_final": args.iters, "passed": resumed_at == half and final_iter == args.iters},
        "val_psnr": {"one_device": last_psnr(log_1), "n_devices": last_psnr(log_n2)},
    }


def run_restore(runner: Runner, args: argparse.Namespace, exp_n: Path, results: Path, ddp_psnr: float) -> dict:
    """Check 4: ``spatial_restore.test`` on one device with the DDP run's final EMA weights."""
    opt_test = args.workdir / f"{results.name}.yml"
    opt_test.write_text(yaml.safe_dump(test_options(results.name, args, exp_n / "models" / "net_g_latest.safetensors"),
                                       sort_keys=False))
    runner("test_on_1_device", [sys.executable, "-m", "spatial_restore.test", "-opt", str(opt_test)])
    log = new_log(results, "test_*.log", set())
    runner.outputs["test_on_1_device_basicsr_log"] = str(log)
    test_psnr = last_psnr(log.read_text())
    diff = abs(ddp_psnr - test_psnr)
    return {"ddp_val_psnr": ddp_psnr, "one_device_test_psnr": test_psnr, "diff_db": diff,
            "tolerance_db": RESTORE_TOL_DB, "passed": diff < RESTORE_TOL_DB}


def main(argv: list[str] | None = None) -> None:
    from ..data import list_images

    args = parse_args(argv)
    n = args.gpus
    try:
        n_train = len(list_images(args.train))
        list_images(args.val)
    except FileNotFoundError as err:
        raise SystemExit(f"[ddp] {err} (set --train / --val)") from err
    exp_1 = args.workdir / "experiments" / f"ddp_smoke_{args.preset}_1x"
    exp_n = args.workdir / "experiments" / f"ddp_smoke_{args.preset}_{n}x"
    results = args.workdir / "results" / f"{exp_n.name}_on_1_device"
    existing = [str(p) for p in (exp_1, exp_n, results) if p.exists()]
    if existing:
        raise SystemExit(f"[ddp] refusing to overwrite earlier runs: {existing}; choose another --workdir")
    runner = Runner(args.workdir)
    print(f"[ddp] {device_label(args)}, preset {args.preset}, {args.iters} iterations, global batch {args.batch} "
          f"of {args.crop}^2 crops, workdir {args.workdir}", flush=True)

    report = {
        "device": device_label(args),
        "config": {"preset": args.preset, "gpus": n, "device": args.device, "iters": args.iters,
                   "global_batch": args.batch, "per_device_batch": args.batch // n, "crop": args.crop, "amp": args.amp,
                   "warmup": args.warmup, "train": str(args.train), "val": str(args.val), "workdir": str(args.workdir),
                   "torch": torch.__version__, "date": datetime.now().isoformat(timespec="seconds")},
        "step0": run_step0(runner, args),
        **run_trainings(runner, args, n_train, exp_1, exp_n),
    }
    report["restore"] = run_restore(runner, args, exp_n, results, report["val_psnr"]["n_devices"])
    report["wall_s"], report["logs"] = runner.wall_s, runner.outputs
    throughput = report["throughput"]
    failed = [k for k in ("step0", "resume", "restore") if not report[k]["passed"]]
    if args.strict and not throughput["passed"]:
        failed.append("throughput")
    report["passed"] = not failed
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nDDP smoke: {report['device']}, preset {args.preset}, {args.iters} iterations, global batch {args.batch} "
          f"({args.batch // n} per device) of {args.crop}^2 crops, amp {args.amp}\n")
    print(table(report, n))
    verdict = "PASS" if throughput["passed"] else "FAIL" + ("" if args.strict else " (reported; --strict enforces it)")
    print(f"\nscaling efficiency {throughput['efficiency']:.1%}, --min-efficiency {args.min_efficiency:.0%}: {verdict}")
    print(f"JSON: {args.json}")
    if failed:
        raise SystemExit(f"[ddp] FAILED: {', '.join(failed)}")
    print("[ddp] all checks passed")
