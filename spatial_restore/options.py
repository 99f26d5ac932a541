"""Read and check basicsr option files before anything starts: one line per problem, naming file and key.

The schema comes from what the code accepts, so a new registered class needs no entry here:
- a section with ``type:`` (``network_g``, ``datasets:<phase>``, ``train:optim_g``, ``train:scheduler``,
  ``train:<x>_opt``, ``val:metrics:<m>``) must name a class or function of its basicsr registry (or
  of ``torch.optim``, basicsr's schedulers); its other keys must be keyword parameters of that callable
  (any key where it takes ``**kwargs``). A dataset takes its options as one dict, so its keys are those
  its class (and its bases) read as ``opt[...]`` / ``opt.get(...)`` in its source, plus the
  dataloader's keys (``LOADER_KEYS``);
- basicsr's fixed sections (top level, ``path``, ``train``, ``val``, ``logger``) accept the keys basicsr
  1.4.2 and ``RestorationModel`` read (the ``*_KEYS`` sets below).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import textwrap
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

TOP_KEYS = {"name", "model_type", "scale", "num_gpu", "manual_seed", "datasets", "network_g", "network_d", "path",
            "train", "val", "logger", "dist_params", "find_unused_parameters"}
REQUIRED = ("name", "model_type", "datasets", "network_g")
PATH_KEYS = {"pretrain_network_g", "param_key_g", "strict_load_g", "pretrain_network_d", "param_key_d",
             "strict_load_d", "resume_state", "ignore_resume_networks", "experiments_root", "models", "log",
             "training_states", "visualization", "results_root"}
TRAIN_KEYS = {"ema_decay", "amp", "grad_clip", "optim_g", "optim_d", "scheduler", "total_iter", "warmup_iter",
              "net_d_iters", "net_d_init_iters"}  # plus any loss section "<x>_opt"
VAL_KEYS = {"val_freq", "save_img", "suffix", "tile", "tile_overlap", "metrics", "pbar"}
LOGGER_KEYS = {"print_freq", "save_checkpoint_freq", "use_tb_logger", "wandb"}
LOADER_KEYS = {"name", "type", "phase", "num_worker_per_gpu", "batch_size_per_gpu", "dataset_enlarge_ratio",
               "pin_memory", "persistent_workers", "prefetch_mode", "num_prefetch_queue", "use_shuffle"}
DATAROOT_KEYS = ("dataroot", "dataroot_gt", "dataroot_lq")


class ConfigError(ValueError):
    """An option file or override that cannot run; the message is one line: where, which key, what is expected."""


def load_yaml(path: str | Path) -> dict:
    """The option mapping of ``path`` (plain YAML, ``yaml.safe_load``); ConfigError for anything else."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read option file ({getattr(err, 'strerror', None) or err})") from err
    try:
        opt = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        raise ConfigError(f"{path}: line {mark.line + 1 if mark else '?'}: {err.problem} (options are plain YAML, "
                          "read with yaml.safe_load: no !!python tags)") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(f"{path}: line {mark.line + 1 if mark else '?'}: not valid YAML "
                          f"({getattr(err, 'problem', None) or err})") from err
    if opt is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping of options (name, model_type, ...)")
    if not isinstance(opt, dict):
        raise ConfigError(f"{path}: the top level is a {type(opt).__name__}; expected a mapping of options "
                          "(name: ..., model_type: ...)")
    return opt


def set_option(opt: dict, entry: str) -> str:
    """Apply one ``--force_yml a:b:c=value`` (value parsed as YAML); returns the key path ``a:b:c``.

    Every key before the last must exist; the last may be new (the schema check then decides on it).
    """
    if "=" not in entry:
        raise ConfigError(f"--force_yml {entry!r}: expected KEY:KEY=VALUE")
    keys, value = entry.split("=", 1)
    *parents, leaf = [k.strip() for k in keys.split(":")]
    node, where = opt, []
    for key in parents:
        where.append(key)
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"--force_yml {keys}: {':'.join(where)} is not an option mapping in the file"
                              + _suggest(key, node))
        node = node[key]
    node[leaf] = _parse_value(value.strip())
    return ":".join([*parents, leaf])


def _parse_value(text: str) -> Any:
    """YAML scalar/list; '1e-4' too (YAML 1.1 reads exponents without a dot as strings)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--force_yml value {text!r} is not valid YAML") from err
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    """Walks an option dict; ``source(path)`` names where a key came from (the file or --force_yml)."""

    def __init__(self, source: Callable[[str], str]):
        self.source = source

    def fail(self, where: str, message: str) -> None:
        raise ConfigError(f"{self.source(where)}: {where}: {message}")

    def keys(self, node: Any, where: str, allowed: set[str] | None, extra: Callable[[str], bool] = lambda k: False):
        if not isinstance(node, dict):
            self.fail(where, f"expected a mapping, got {type(node).__name__} {node!r}")
        if allowed is None:
            return
        for key in node:
            if key not in allowed and not extra(str(key)):
                self.fail(f"{where}:{key}" if where else str(key),
                          f"unknown option{_suggest(str(key), allowed)}; accepted here: {', '.join(sorted(allowed))}")

    def typed(self, node: Any, where: str, registry: dict[str, Callable], what: str,
              accepted: Callable[[Callable], set[str] | None]) -> None:
        """A ``type:`` section: a known name, and only keys its callable accepts (None: any)."""
        self.keys(node, where, None)
        name = node.get("type")
        if name not in registry:
            self.fail(f"{where}:type", f"unknown {what} {name!r}{_suggest(str(name), registry)}; "
                      f"known: {', '.join(sorted(registry))}")
        allowed = accepted(registry[name])
        self.keys(node, where, None if allowed is None else allowed | {"type"})


def parameters(fn: Callable, skip: int = 0) -> set[str] | None:
    """Keyword parameter names of ``fn`` (a class: its __init__), the first ``skip`` left out; None with **kwargs."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


@lru_cache(maxsize=None)
def dataset_keys(cls: type) -> frozenset[str]:
    """Option keys a dataset class (and its bases) reads: ``opt["k"]``, ``opt.get("k")``, ``self.opt[...]``
    in its source, plus its ``OPTIONS`` (the keys it reads through helpers, such as ``image_sets``'s)."""
    keys: set[str] = set(getattr(cls, "OPTIONS", ()))
    for klass in cls.__mro__:
        if klass.__module__.startswith(("torch", "builtins")):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Subscript):
                target, key = node.value, node.slice
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
                target, key = node.func.value, node.args[0]
            if target is not None and _is_opt(target) and isinstance(key, ast.Constant) and isinstance(key.value, str):
                keys.add(key.value)
    return frozenset(keys)


def _is_opt(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "opt") or (
        isinstance(node, ast.Attribute) and node.attr == "opt" and isinstance(node.value, ast.Name))


def registry(name: str) -> dict[str, Callable]:
    module = importlib.import_module("basicsr.utils.registry")
    return dict(getattr(module, name)._obj_map)


def check(opt: dict, is_train: bool, source: Callable[[str], str]) -> None:
    """Raise ConfigError for the first key, name or value that cannot run (see the module docstring)."""
    from . import archs, data, losses, metrics, models  # noqa: F401  (registration on import)

    c = Checker(source)
    c.keys(opt, "", TOP_KEYS)
    for key in REQUIRED + (("train",) if is_train else ()):
        if key not in opt:
            c.fail(key, "required option missing")
    if opt["model_type"] not in registry("MODEL_REGISTRY"):
        c.fail("model_type", f"unknown model {opt['model_type']!r}{_suggest(str(opt['model_type']), registry('MODEL_REGISTRY'))}")
    for net in ("network_g", "network_d"):
        if net in opt:
            c.typed(opt[net], net, registry("ARCH_REGISTRY"), "network", parameters)
    c.keys(opt.get("path") or {}, "path", PATH_KEYS)

    c.keys(opt["datasets"], "datasets", None)
    datasets = registry("DATASET_REGISTRY")
    for phase, dataset in opt["datasets"].items():
        where = f"datasets:{phase}"
        c.typed(dataset, where, datasets, "dataset", lambda cls: set(dataset_keys(cls)) | LOADER_KEYS)
        for key in DATAROOT_KEYS:
            if dataset.get(key) is not None and not Path(str(dataset[key])).expanduser().exists():
                c.fail(f"{where}:{key}", f"{dataset[key]} does not exist (relative paths are from the current folder)")
        if phase.startswith("train"):
            for key in ("batch_size_per_gpu", "num_worker_per_gpu"):
                value = dataset.get(key)
                if not isinstance(value, int) or isinstance(value, bool) or value < (key == "batch_size_per_gpu"):
                    c.fail(f"{where}:{key}", f"expected an integer >= {int(key == 'batch_size_per_gpu')}, got {value!r}")
            if dataset["num_worker_per_gpu"] == 0:
                dataset["persistent_workers"] = False  # no workers to keep: DataLoader refuses the flag then

    if "train" in opt:
        train = opt["train"]
        c.keys(train, "train", TRAIN_KEYS, extra=lambda k: k.endswith("_opt"))
        from .models.restoration_model import OPTIMIZERS as optimizers

        for key in ("optim_g", "optim_d"):
            if key in train:
                c.typed(train[key], f"train:{key}", optimizers, "optimizer", lambda cls: parameters(cls, skip=1))
        if "scheduler" in train:
            from basicsr.models import lr_scheduler

            schedulers = {n: getattr(lr_scheduler, n) for n in ("CosineAnnealingRestartLR", "MultiStepRestartLR")}
            c.typed(train["scheduler"], "train:scheduler", schedulers, "scheduler", lambda cls: parameters(cls, skip=1))
        for key, value in train.items():
            if key.endswith("_opt") and value is not None:
                c.typed(value, f"train:{key}", registry("LOSS_REGISTRY"), "loss", parameters)
        if is_train and (not isinstance(train.get("total_iter"), int) or train["total_iter"] < 1):
            c.fail("train:total_iter", f"expected an integer >= 1, got {train.get('total_iter')!r}")

    if opt.get("val") is not None:
        c.keys(opt["val"], "val", VAL_KEYS)
        for name, metric in (opt["val"].get("metrics") or {}).items():
            where = f"val:metrics:{name}"
            c.typed(metric, where, registry("METRIC_REGISTRY"), "metric", lambda fn: parameters(fn, skip=2))
            if metric["type"] == "calculate_lpips" and not metric.get("random_backbone"):
                reason = metrics.lpips_unavailable()
                if reason:
                    c.fail(where, f"cannot be computed here: {reason}")
    if opt.get("logger") is not None:
        c.keys(opt["logger"], "logger", LOGGER_KEYS)
