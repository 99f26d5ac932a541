"""Run basicsr's train/test pipelines on our registries, with what basicsr 1.4.2 gets wrong fixed here.

basicsr's ``parse_options`` and ``load_resume_state`` are replaced (in basicsr's pipeline modules, at
run time; site-packages stay untouched) by versions that:
- read YAML with ``yaml.safe_load``, apply ``--force_yml a:b=value`` by parsing the value as YAML
  (basicsr builds and ``exec``s Python source from it), and check the result against what the
  registered classes accept (``spatial_restore.options``): a bad option ends in one line, exit 2;
- accept ``--local_rank`` and ``--local-rank`` (torch.distributed.launch spells it either way);
- start ``--launcher pytorch`` on NCCL with one GPU per process, or on gloo without CUDA / with
  ``num_gpu: 0`` (basicsr always picks NCCL and divides by the GPU count);
- resume on CPU (basicsr calls ``torch.cuda.current_device()``), find the experiment under the root
  path (basicsr looks in the current directory), load states with ``weights_only=True``, and skip a
  state that does not load instead of crashing on it.
Experiments and results go under the root path, which is the current directory.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from . import archs, data, losses, metrics, models  # noqa: F401  (registration on import)
from ._basicsr import import_basicsr
from .models.restoration_model import load_training_state
from .options import ConfigError, check, load_yaml, set_option

import_basicsr()
from basicsr.utils import check_resume, get_root_logger, set_random_seed  # noqa: E402

DATAROOT_KEYS = ("dataroot", "dataroot_gt", "dataroot_lq")
USAGE_ERROR = 2  # exit status of a command that started nothing: bad options (as argparse exits)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train or test a restoration model from a YAML option file.")
    parser.add_argument("-opt", required=True, help="path to the option YAML file")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' under torchrun (one process per GPU, or per CPU worker with gloo)")
    parser.add_argument("--auto_resume", action="store_true", help="resume from the newest complete training state")
    parser.add_argument("--debug", action="store_true", help="prefix the name with debug_ (frequent logs/saves)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, dest="local_rank")
    parser.add_argument("--force_yml", nargs="+", default=None, metavar="KEY:KEY=VALUE",
                        help="override options, e.g. datasets:train:dataroot_gt=/data/train train:total_iter=1000")
    return parser


def init_distributed(opt: dict, local_rank: int) -> None:
    """One process per GPU on NCCL; gloo when there is no CUDA or the options ask for CPU (num_gpu: 0)."""
    use_cuda = torch.cuda.is_available() and opt.get("num_gpu", "auto") != 0
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", local_rank)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def parse_options(root_path: str, is_train: bool = True, argv: list[str] | None = None,
                  opt: dict | None = None) -> tuple[dict, argparse.Namespace]:
    """basicsr's option dict from a YAML file and the command line (same keys and paths as basicsr);
    ``opt``: the file's options as ``read_options`` already returned them."""
    args = build_parser().parse_args(argv)
    opt = read_options(args.opt, args.force_yml or [], is_train) if opt is None else opt

    opt["dist"] = args.launcher == "pytorch"
    if opt["dist"]:
        init_distributed(opt, args.local_rank)
    opt["rank"], opt["world_size"] = (dist.get_rank(), dist.get_world_size()) if opt["dist"] else (0, 1)
    if opt.get("manual_seed") is None:
        opt["manual_seed"] = random.randint(1, 10000)
    set_random_seed(opt["manual_seed"] + opt["rank"])

    opt["auto_resume"], opt["is_train"] = args.auto_resume, is_train
    if args.debug and not opt["name"].startswith("debug"):
        opt["name"] = "debug_" + opt["name"]
    if opt.get("num_gpu", "auto") == "auto":
        opt["num_gpu"] = torch.cuda.device_count()
    if opt["num_gpu"] and not torch.cuda.is_available():
        raise RuntimeError(f"num_gpu is {opt['num_gpu']} but CUDA is unavailable: set num_gpu: 0 (or auto) for CPU")

    for phase, dataset in opt["datasets"].items():
        dataset["phase"] = phase.split("_")[0]
        dataset.setdefault("name", phase)
        for key in DATAROOT_KEYS:
            if dataset.get(key) is not None:
                dataset[key] = os.path.expanduser(dataset[key])

    paths = opt.setdefault("path", {})
    for key, value in paths.items():
        if value is not None and ("resume_state" in key or "pretrain_network" in key):
            paths[key] = os.path.expanduser(value)
    if is_train:
        root = Path(root_path, "experiments", opt["name"])
        paths.update(experiments_root=str(root), models=str(root / "models"), log=str(root),
                     training_states=str(root / "training_states"), visualization=str(root / "visualization"))
        if "debug" in opt["name"]:
            if "val" in opt:
                opt["val"]["val_freq"] = 8
            opt["logger"]["print_freq"] = 1
            opt["logger"]["save_checkpoint_freq"] = 8
    else:
        root = Path(root_path, "results", opt["name"])
        paths.update(results_root=str(root), log=str(root), visualization=str(root / "visualization"))
    return opt, args


def read_options(path: str, overrides: list[str], is_train: bool) -> dict:
    """The file's options with the --force_yml overrides applied, checked (options.check) before anything starts."""
    opt = load_yaml(path)
    overridden = {set_option(opt, entry) for entry in overrides}

    def source(where: str) -> str:
        parts = where.split(":")
        hit = any(":".join(parts[:i]) in overridden for i in range(1, len(parts) + 1))
        return "--force_yml" if hit else str(path)

    check(opt, is_train, source)
    return opt


def load_resume_state(opt: dict) -> dict | None:
    """The training state to resume from (CPU tensors), or None; points pretrain_network_g at its weights."""
    path = None
    if opt["auto_resume"]:
        states_dir = Path(opt["path"]["training_states"])
        candidates = sorted(states_dir.glob("*.state"), key=lambda p: int(p.stem), reverse=True) if states_dir.is_dir() else []
        for candidate in candidates:
            try:
                state = load_training_state(candidate)
            except Exception as err:  # an unreadable state is skipped, the next older one is tried
                print(f"skipping unreadable training state {candidate}: {err}", flush=True)
                continue
            path = candidate
            break
    elif opt["path"].get("resume_state"):
        path = Path(opt["path"]["resume_state"])
        state = load_training_state(path)
    if path is None:
        return None
    opt["path"]["resume_state"] = str(path)
    check_resume(opt, state["iter"])
    return state


def run(pipeline: str, argv: list[str] | None = None) -> None:
    """Run basicsr's ``train`` or ``test`` pipeline with our option parsing and resume."""
    if pipeline == "train":
        import basicsr.train as module

        module.load_resume_state = load_resume_state
        entry = module.train_pipeline
    else:
        import basicsr.test as module

        entry = module.test_pipeline
    # Options are read and checked here, before basicsr creates any folder or log.
    args = build_parser().parse_args(argv)
    try:
        opt = read_options(args.opt, args.force_yml or [], pipeline == "train")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    module.parse_options = partial(parse_options, argv=argv, opt=opt)
    try:
        entry(str(Path.cwd()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    get_root_logger().info(f"{pipeline} finished")
