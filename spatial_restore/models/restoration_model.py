"""RestorationModel: basicsr's SRModel with what image restoration training on current hardware needs.

Added over basicsr 1.4.2's SRModel: AdamW, bf16/fp16 autocast on CUDA (fp16 with a GradScaler),
gradient-norm clipping, an EMA whose decay ramps in (see ``ema_decay_at``) and updates as one
multi-tensor lerp, tiled validation for large images, DDP on CPU (gloo), weights_only loading, and
crash-safe checkpoints: every file is written to a temporary name and renamed into place, so a
run killed at any moment leaves only complete files; a ``.safetensors`` copy of the weights used for
testing (EMA when enabled) is written beside each ``.pth``. Schedules are basicsr's
(``CosineAnnealingRestartLR``, ``MultiStepRestartLR``), warm-up via ``train.warmup_iter``.
"""

from __future__ import annotations

import collections
import os
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from .._basicsr import import_basicsr
from ..checkpoint import load_state_dict_file, save_safetensors
from ..tiling import tiled_forward

import_basicsr()
from basicsr.models.sr_model import SRModel  # noqa: E402
from basicsr.utils import get_root_logger  # noqa: E402
from basicsr.utils.dist_util import master_only  # noqa: E402

OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# MultiStepRestartLR keeps its milestones in a Counter; allow it through weights_only loading.
STATE_SAFE_GLOBALS = [collections.Counter]


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: readers never see a half-written file."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_training_state(path: str | Path) -> dict:
    """A basicsr training state (.state) loaded with weights_only=True onto the CPU."""
    with torch.serialization.safe_globals(STATE_SAFE_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay at optimiser step ``step`` (0-based): ``(1 + step) / (10 + step)``, capped at ``decay``.

    basicsr applies ``decay`` from the first step, so the average of a short run or a resumed chunk is
    mostly its initial weights (0.999 keeps 0.999^600 = 55 % of them after 600 steps) and validation
    measures the start, not the training. The ramp lets the average follow early training, then settle.
    """
    return min(decay, (1 + step) / (10 + step))


class RestorationModel(SRModel):
    """Single-image restoration (denoising, deblurring): ``lq -> net_g -> output`` against ``gt``.

    Extra ``train`` options: ``amp`` (null | bf16 | fp16; CUDA only, ignored on CPU), ``grad_clip``
    (max gradient norm; null for none). Extra ``val`` options: ``tile`` and ``tile_overlap`` (pixels).
    """

    def init_training_settings(self) -> None:
        train_opt = self.opt["train"]
        if train_opt.get("perceptual_opt"):
            raise ValueError("RestorationModel trains with pixel_opt only; remove perceptual_opt")
        amp = train_opt.get("amp")
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f"train.amp must be null or one of {sorted(AMP_DTYPES)}, got {amp!r}")
        self.amp_dtype = AMP_DTYPES[amp] if amp is not None and self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.grad_clip = train_opt.get("grad_clip")
        super().init_training_settings()

    def model_to_device(self, net: nn.Module) -> nn.Module:
        """basicsr's wrapping, except that DDP also runs on CPU (gloo), where it takes no device ids."""
        net = net.to(self.device)
        if self.opt["dist"]:
            device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
            return DistributedDataParallel(net, device_ids=device_ids,
                                           find_unused_parameters=self.opt.get("find_unused_parameters", False))
        if self.opt["num_gpu"] > 1:
            return DataParallel(net)
        return net

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
        if optim_type not in OPTIMIZERS:
            raise ValueError(f"optimizer {optim_type!r} unsupported; choose one of {sorted(OPTIMIZERS)}")
        return OPTIMIZERS[optim_type](params, lr, **kwargs)

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            self.output = self.net_g(self.lq)
        l_pix = self.cri_pix(self.output.float(), self.gt)
        self.scaler.scale(l_pix).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer_g)
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), float(self.grad_clip))
        self.scaler.step(self.optimizer_g)
        self.scaler.update()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_pix=l_pix.detach()))
        if self.ema_decay > 0:
            self.model_ema(decay=ema_decay_at(current_iter - 1, self.ema_decay))

    @torch.no_grad()
    def model_ema(self, decay: float = 0.999) -> None:
        """ema += (1 - decay) * (weights - ema) for every parameter at once (one multi-tensor lerp): basicsr's
        loop launches two kernels per parameter tensor, about a thousand per step for the U-Net."""
        live = dict(self.get_bare_model(self.net_g).named_parameters())
        ema = list(self.net_g_ema.named_parameters())
        torch._foreach_lerp_([p for _, p in ema], [live[name] for name, _ in ema], 1.0 - decay)

    def test(self) -> None:
        """Inference with the EMA weights when present; whole image, or tiles above ``val.tile``."""
        net = self.net_g_ema if hasattr(self, "net_g_ema") else self.get_bare_model(self.net_g)
        was_training = net.training
        net.eval()
        tile = (self.opt.get("val") or {}).get("tile")
        with torch.no_grad():
            if tile and max(self.lq.shape[-2:]) > tile:
                overlap = int(self.opt["val"].get("tile_overlap", 32))
                self.output = tiled_forward(net, self.lq.cpu(), int(tile), overlap, self.lq.device).to(self.lq.device)
            else:
                self.output = net(self.lq)
        net.train(was_training)

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True, param_key: str | None = "params") -> None:
        """Load .pth (weights_only) or .safetensors weights; a .pth without ``param_key`` falls back to 'params'."""
        net = self.get_bare_model(net)
        if Path(load_path).suffix == ".safetensors":
            state = load_state_dict_file(load_path)
        else:
            raw = torch.load(load_path, map_location="cpu", weights_only=True)
            key = param_key if param_key in raw else "params"
            state = {k.removeprefix("module."): v for k, v in raw[key].items()}
        get_root_logger().info(f"Loading {type(net).__name__} from {load_path} [{param_key}]")
        self._print_different_keys_loading(net, state, strict)
        net.load_state_dict(state, strict=strict)

    @master_only
    def save(self, epoch: int, current_iter: int) -> None:
        """basicsr's files (``models/net_g_<iter>.pth``, ``training_states/<iter>.state``), written atomically,
        weights before state (resuming trusts a state only when its weights exist), plus a safetensors copy."""
        label = "latest" if current_iter == -1 else str(current_iter)
        models = Path(self.opt["path"]["models"])
        nets = {"params": self.get_bare_model(self.net_g)}
        if hasattr(self, "net_g_ema"):
            nets["params_ema"] = self.net_g_ema
        atomic_torch_save({k: {n: t.cpu() for n, t in v.state_dict().items()} for k, v in nets.items()},
                          models / f"net_g_{label}.pth")
        tmp = save_safetensors(nets.get("params_ema", nets["params"]), models / f"net_g_{label}.safetensors.tmp")
        os.replace(tmp, models / f"net_g_{label}.safetensors")
        if current_iter != -1:
            state = {"epoch": epoch, "iter": current_iter,
                     "optimizers": [o.state_dict() for o in self.optimizers],
                     "schedulers": [s.state_dict() for s in self.schedulers],
                     "scaler": self.scaler.state_dict()}
            atomic_torch_save(state, Path(self.opt["path"]["training_states"]) / f"{current_iter}.state")

    def resume_training(self, resume_state: dict) -> None:
        super().resume_training(resume_state)
        if resume_state.get("scaler"):
            self.scaler.load_state_dict(resume_state["scaler"])
