"""CUDA-graph inference (``Restorer(cuda_graph=True)``, ``inference.py --cuda-graph``): refused off CUDA, and
on a GPU the replayed graphs give the eager network's outputs; the bench's graphed training step gives the
eager step's gradients.

The GPU cases are marked ``gpu``: run them on a CUDA machine with ``pytest -m gpu tests/test_cuda_graph.py``
(conftest then compiles the Triton kernels instead of interpreting them); elsewhere they are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from spatial_restore.bench.restoration import graphed_for_training
from spatial_restore.bench.restoration import main as bench_restoration
from spatial_restore.inference.cli import main
from spatial_restore.inference.cuda_graph import GraphedForward
from spatial_restore.inference.restorer import Restorer
from spatial_restore.tiling import tile_length, tile_starts, tiled_forward

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_restorer_refuses_cuda_graphs_on_the_cpu():
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device, got cpu"):
        Restorer(nn.Identity(), torch.device("cpu"), cuda_graph=True)


def test_restorer_refuses_cuda_graphs_with_compile():
    with pytest.raises(ValueError, match="cuda_graph and compile exclude each other"):
        Restorer(nn.Identity(), torch.device("cpu"), compile=True, cuda_graph=True)


def test_graphed_forward_refuses_cpu_tensors_and_bad_settings():
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        GraphedForward(lambda x: x)(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="max_graphs >= 1"):
        GraphedForward(lambda x: x, max_graphs=0)


def test_cli_cuda_graph_on_the_cpu_is_one_line_before_anything_runs(tmp_path, model, capsys):
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "a.png")
    code = main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", model, "--device", "cpu",
                 "--cuda-graph"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("error: --cuda-graph is for CUDA devices")
    assert not (tmp_path / "out").exists()


def test_cli_refuses_compile_with_cuda_graph(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--compile", "--cuda-graph"])
    assert exit_info.value.code == 2 and "--compile and --cuda-graph exclude each other" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [(["--compile"], "exclude each other"), (["--warmup", "0"], "--warmup >= 1")])
def test_bench_restoration_checks_cuda_graph_options_first(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        bench_restoration(["--cuda-graph", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bench_restoration_refuses_train_cuda_graph_with_compile(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_restoration(["--train-cuda-graph", "--compile"])
    assert exit_info.value.code == 2 and "--train-cuda-graph and --compile exclude each other" in capsys.readouterr().err


def tiny_unet() -> nn.Module:
    from spatial_restore.archs import SpatialMambaUNet

    torch.manual_seed(0)
    return SpatialMambaUNet.from_preset("tiny").cuda().eval()


@pytest.mark.parametrize("precision", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("max_graphs", [4, 1], ids=["cached", "evicting"])
@pytest.mark.gpu
@needs_cuda
def test_graphed_forward_equals_the_eager_network(precision, max_graphs):
    """Replays run the eager network's own kernels: bit-equal outputs, for each new input and each shape."""
    net = tiny_unet()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=precision or torch.float32, enabled=precision is not None):
            return net(x).float()

    graphed = GraphedForward(forward, max_graphs=max_graphs)
    g = torch.Generator(device="cuda").manual_seed(0)
    first: torch.Tensor | None = None
    with torch.inference_mode():
        for shape in [(1, 3, 96, 128), (1, 3, 128, 96), (1, 3, 96, 128)]:  # two tile shapes, then the first again
            for _ in range(2):  # a new input of the same shape: the replay reads the copied input
                x = torch.rand(shape, device="cuda", generator=g)
                got = graphed(x)
                assert torch.equal(got, forward(x)), shape
                if first is None:
                    first, first_value = got, got.clone()
        assert torch.equal(first, first_value)  # outputs are clones: later replays leave them alone
    assert len(graphed) == min(2, max_graphs)
    assert graphed.captures == (2 if max_graphs > 1 else 3)  # one graph kept: the first shape is captured again


@pytest.mark.parametrize("views", [1, 4])
@pytest.mark.gpu
@needs_cuda
def test_restorer_with_cuda_graphs_equals_without_tiled(views):
    """Tiled (tiles of 128x100, the edge tile as large as the others) and whole images, with and without the
    quarter-turn ensemble (which adds the transposed shapes): the graphed Restorer gives the eager result."""
    net = tiny_unet()
    device = torch.device("cuda")
    eager = Restorer(net, device, tile=128, tile_overlap=32, self_ensemble=views)
    graphed = Restorer(net, device, tile=128, tile_overlap=32, self_ensemble=views, cuda_graph=True)
    rng = np.random.default_rng(0)
    for height, width in [(200, 100), (72, 80)]:  # tiled (2 tiles of 128x100), then whole
        image = rng.random((height, width, 3), dtype=np.float32)
        expected = eager(image)
        np.testing.assert_allclose(graphed(image), expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(graphed(image), expected, rtol=0, atol=1e-5)  # replayed, not captured again
    assert graphed._graphed is not None
    assert graphed._graphed.captures == len(graphed._graphed) == (2 if views == 1 else 4)


@pytest.mark.gpu
@needs_cuda
def test_tiled_forward_on_cuda_gives_the_cpu_tiles():
    """The asynchronous CUDA path (pinned buffers, tile k added on the host while the GPU runs tile k + 1)
    gives the synchronous CPU path's output, for a network cheap enough that the host is the slower side."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="replicate"), nn.GELU(), nn.Conv2d(8, 3, 1))
    image = torch.rand(1, 3, 700, 900)
    with torch.inference_mode():
        expected = tiled_forward(net, image, 128, 32, torch.device("cpu"))
        got = tiled_forward(net.cuda(), image, 128, 32, torch.device("cuda"))
    assert got.device.type == "cpu" and len(tile_starts(700, tile_length(700, 128, 32), 32)) > 2
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_graphed_training_step_gives_the_eager_gradients(monkeypatch):
    """Forward and backward replayed from graphs captured on one batch: for two new batches of that shape
    the output and every parameter gradient equal the eager network's (fp32 without TF32; the graphs run
    the same kernels, so only the order of gradient accumulation may differ)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    eager = tiny_unet().train()
    g = torch.Generator(device="cuda").manual_seed(0)
    graphed = graphed_for_training(eager, torch.rand(2, 3, 64, 48, device="cuda", generator=g), None)
    for _ in range(2):
        x = torch.rand(2, 3, 64, 48, device="cuda", generator=g)
        results = []
        for net in (eager, graphed):
            net.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=False, cache_enabled=False):
                y = net(x)
            y.square().mean().backward()
            results.append((y.detach().clone(), {k: p.grad.clone() for k, p in net.named_parameters()}))
        (y0, grads0), (y1, grads1) = results
        torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
        assert grads1.keys() == grads0.keys()
        for k in grads0:
            torch.testing.assert_close(grads1[k], grads0[k], rtol=1e-4, atol=1e-6, msg=k)
