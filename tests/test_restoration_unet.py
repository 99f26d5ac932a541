"""SpatialMambaUNet: presets, any input size, grey images, gradients, basicsr registration."""

from __future__ import annotations

import pytest
import torch

from spatial_restore.archs import UNET_PRESETS, SpatialMambaUNet
from spatial_restore._basicsr import import_basicsr


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_presets_build_at_their_documented_sizes():
    sizes = {name: n_params(SpatialMambaUNet.from_preset(name)) for name in UNET_PRESETS}
    assert sizes["tiny"] < 500_000
    assert 4e6 <= sizes["small"] <= 6e6 and sizes["small"] * 4 <= 25e6  # fp32 safetensors <= 25 MB
    assert 25e6 <= sizes["base"] <= 30e6  # Restormer scale (26.1 M)
    base = SpatialMambaUNet.from_preset("base")
    assert [len(s.blocks) for s in (base.encoder1, base.encoder2, base.encoder3, base.latent)] == [4, 6, 6, 8]
    assert len(base.refinement.blocks) == 4 and base.embed.out_channels == 48


def test_from_preset_overrides_and_rejects_unknown_names():
    model = SpatialMambaUNet.from_preset("tiny", ffn="mlp", mlp_ratio=4.0, in_channels=1)
    assert model.in_channels == model.out_channels == 1
    assert type(model.encoder1.blocks[0].mlp).__name__ == "MLP"
    with pytest.raises(ValueError, match="unknown SpatialMambaUNet preset"):
        SpatialMambaUNet.from_preset("huge")
    with pytest.raises(ValueError, match="double the width"):
        SpatialMambaUNet(widths=(8, 16, 24, 48))


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 3, 9, 20), (1, 3, 1, 1), (1, 3, 3, 13), (1, 3, 16, 16)])
def test_any_size_gives_same_shaped_output(shape):
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny").eval()
    with torch.no_grad():
        out = model(torch.rand(shape))
    assert out.shape == shape and torch.isfinite(out).all()


def test_batch_items_are_restored_independently():
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny").eval()
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        both, first = model(x), model(x[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-5)


def test_grey_model_and_global_residual():
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny", in_channels=1).eval()
    torch.nn.init.zeros_(model.output.weight)  # residual branch off: the network is the identity
    x = torch.rand(1, 1, 11, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny")
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    (model(x) - x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    assert torch.isfinite(x.grad).all()


def test_registered_in_basicsr_arch_registry():
    import_basicsr()
    from basicsr.archs import build_network

    net = build_network({"type": "SpatialMambaUNet", **UNET_PRESETS["tiny"]})
    assert isinstance(net, SpatialMambaUNet)


def _saved_bytes_and_grads(use_checkpoint) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes autograd keeps for backward in one training forward, and the parameter gradients."""
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny", use_checkpoint=use_checkpoint).train()
    x = torch.rand(2, 3, 24, 17, generator=torch.Generator().manual_seed(1))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        y = model(x)
    (y - x).square().mean().backward()
    return sum(saved), {n: p.grad for n, p in model.named_parameters()}


def test_checkpointing_named_stages_saves_less_and_keeps_the_gradients():
    plain, g_plain = _saved_bytes_and_grads(False)
    some, g_some = _saved_bytes_and_grads(["decoder1", "refinement"])
    every, g_every = _saved_bytes_and_grads(True)
    assert every < some < plain
    for grads in (g_some, g_every):
        assert grads.keys() == g_plain.keys()
        for n, g in grads.items():
            torch.testing.assert_close(g, g_plain[n], rtol=1e-5, atol=1e-7, msg=n)


@pytest.mark.parametrize("bad", ["decoder1", ["decoder1", "decoder4"]])
def test_checkpointing_rejects_unknown_stages(bad):
    with pytest.raises(ValueError, match="use_checkpoint"):
        SpatialMambaUNet.from_preset("tiny", use_checkpoint=bad)
