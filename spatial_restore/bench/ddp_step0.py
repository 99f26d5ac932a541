"""The torchrun worker of the ddp bench's step-0 check, and the comparison of its results.

``python -m spatial_restore.bench.ddp_step0`` runs one DDP step on this rank's shard of a fixed batch;
the bench launches it with 1 and with N processes and compares loss and gradient.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ..noise import add_gaussian_noise

NOISE_SIGMA = 25.0  # step-0 batch and validation (0-255 scale)
SEED = 10
# Step-0 tolerances. fp32 with TF32 off rounds at ~6e-8; K=1 and K=N differ only in summation order
# (the loss mean over the batch, the batch sums inside weight gradients, the all-reduce), which stays
# around 1e-7 for the loss and 1e-6 for a gradient after ~50 layers of backward (measured on CPU: 7e-8
# and 7e-7). A sharding bug (wrong shard, a missing or doubled average, unsynchronised weights) is an
# O(1) error: a gradient off by a factor N alone differs by at least 0.5. The tolerances leave ~100x
# headroom over rounding.
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4


def fixed_batch(folder: Path, size: int, crop: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) NCHW float32, identical in every process: seeded crops of the photos + N(0, 25/255)."""
    from ..data import list_images, read_image
    from ..data.restoration_dataset import random_crop_augment

    paths = list_images(folder)
    rng = np.random.default_rng(seed)
    images: dict[int, np.ndarray] = {}
    crops = []
    for _ in range(size):
        i = int(rng.integers(len(paths)))
        if i not in images:
            images[i] = read_image(paths[i], 3)
        crops += random_crop_augment([images[i]], crop, False, False, rng, str(paths[i]))
    clean = np.stack(crops)
    noisy = add_gaussian_noise(clean, NOISE_SIGMA, rng)

    def nchw(batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))

    return nchw(noisy), nchw(clean)


def step0_worker(argv: list[str] | None = None) -> None:
    """One DDP step on this rank's shard (rank::world) of the fixed batch; rank 0 saves the mean loss and
    the flattened gradient, which DDP has already averaged over the ranks."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from ..archs import SpatialMambaUNet

    parser = argparse.ArgumentParser(prog="python -m spatial_restore.bench.ddp_step0",
                                     description="torchrun worker of the step-0 check of the ddp bench")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--batch", type=int, required=True, help="global batch (split over the ranks)")
    parser.add_argument("--crop", type=int, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--device", choices=["cuda", "cpu"], required=True)
    args = parser.parse_args(argv)

    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        if args.batch % world:
            raise ValueError(f"batch {args.batch} does not split over {world} processes")
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        torch.manual_seed(SEED)
        # Activation checkpointing: the same arithmetic (blocks recomputed, not changed), and the one-process
        # step fits one GPU in fp32 (small, 16 x 256^2, reference op: 4 GiB of saved activations, not 124).
        net = SpatialMambaUNet.from_preset(args.preset, use_checkpoint=True).to(device)
        model = DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
        noisy, clean = fixed_batch(args.train, args.batch, args.crop, SEED)
        shard = slice(rank, None, world)
        loss = F.mse_loss(model(noisy[shard].to(device)), clean[shard].to(device))
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        if rank == 0:
            grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).cpu()
            torch.save({"loss": (mean_loss / world).cpu(), "grad": grad}, args.out)
    finally:
        dist.destroy_process_group()


def compare_step0(one: dict, many: dict) -> dict:
    """Relative loss difference and ||g_N - g_1|| / ||g_1|| (float64), against the tolerances."""
    loss_1, loss_n = float(one["loss"]), float(many["loss"])
    g1, gn = one["grad"].double(), many["grad"].double()
    loss_rel = abs(loss_n - loss_1) / abs(loss_1)
    grad_rel = float((gn - g1).norm() / g1.norm())
    return {"loss_1": loss_1, "loss_n": loss_n, "loss_rel_diff": loss_rel, "grad_rel_diff": grad_rel,
            "loss_rtol": LOSS_RTOL, "grad_rtol": GRAD_RTOL, "passed": loss_rel <= LOSS_RTOL and grad_rel <= GRAD_RTOL}




if __name__ == "__main__":
    step0_worker()
