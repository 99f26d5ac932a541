"""Analysis tools: the closed-form SASF matrix against autograd, its (non-)causal structure, ERFs and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from conftest import REPO
from spatial_restore import weights
from spatial_restore.analysis import (
    autograd_matrix,
    classifier_stages,
    core_inputs,
    core_output,
    effective_receptive_field,
    layer_input,
    mass_radius,
    random_layer,
    sasf_layers,
    sasf_matrix,
    stencil_matrix,
    stencil_sources,
    without_fusion,
)
from spatial_restore.analysis.__main__ import main
from spatial_restore.archs import SpatialMamba, SpatialMambaUNet, spatial_mamba_arch
from spatial_restore.kernels import state_fusion_ref

# (seed, batch, height, width, d_model): square, non-square, thin strips; every size has clamped taps
SHAPES = [(11, 1, 6, 6, 2), (12, 2, 5, 7, 1), (13, 1, 3, 11, 2), (14, 1, 1, 12, 1), (15, 1, 9, 4, 1)]


def random_inputs(seed: int, batch: int, height: int, width: int, d_model: int):
    layer = random_layer(d_model, seed)
    with torch.no_grad():  # random Δ too, so decays far from 1 are covered
        layer.dt_projs_bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed))
    x = torch.randn(batch, height, width, d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return core_inputs(layer, x)


def block_diagonal(M: torch.Tensor) -> torch.Tensor:
    """(b, d, L, L) per-channel matrices as the full Jacobian (b, d, L, b, d, L) they imply."""
    b, d = M.shape[:2]
    eye_b = torch.eye(b, dtype=M.dtype)
    eye_d = torch.eye(d, dtype=M.dtype)
    return torch.einsum("bdts,bc,de->bdtces", M, eye_b, eye_d)


@pytest.mark.parametrize("fused", [True, False], ids=["sasf", "mamba"])
@pytest.mark.parametrize("seed,batch,height,width,d_model", SHAPES)
def test_closed_form_equals_full_autograd_jacobian(seed, batch, height, width, d_model, fused):
    inputs = random_inputs(seed, batch, height, width, d_model)
    inputs = inputs if fused else without_fusion(inputs)
    M = sasf_matrix(inputs)
    u = inputs.u.transpose(1, 2)  # the matrix view is per channel: (b, d, L)
    J = torch.autograd.functional.jacobian(lambda v: core_output(inputs, v, backend="reference"), u, vectorize=True)
    torch.testing.assert_close(J, block_diagonal(M), rtol=1e-10, atol=1e-12)  # no cross-channel/batch terms either
    torch.testing.assert_close(autograd_matrix(inputs, backend="reference"), M, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.einsum("bdts,bds->bdt", M, u), core_output(inputs, backend="reference"))


@pytest.mark.parametrize("height,width", [(6, 6), (5, 7), (1, 12), (11, 3)])
def test_stencil_matrix_is_the_state_fusion_with_clamped_borders(height, width):
    g = torch.Generator().manual_seed(height * 100 + width)
    kernels = torch.randn(3, 4, 3, 3, dtype=torch.float64, generator=g)
    alpha = torch.randn(3, dtype=torch.float64, generator=g)
    S = stencil_matrix(kernels, alpha, height, width)
    h = torch.randn(2, 4, height, width, dtype=torch.float64, generator=g)
    expected = state_fusion_ref(h, kernels, alpha).flatten(2)
    torch.testing.assert_close(torch.einsum("dts,bds->bdt", S, h.flatten(2)), expected)
    # clamping moves taps onto border pixels but never drops one: every row keeps the full weight
    total = (alpha[:, None] * kernels.flatten(2).sum(-1)).sum(0)
    torch.testing.assert_close(S.sum(-1), total[:, None].expand(4, height * width))
    corner_sources = stencil_sources(height, width)[:, :, 0].unique()
    assert corner_sources.min() == 0 and len(corner_sources) < 27  # the corner reads itself several times


@pytest.mark.parametrize("seed,batch,height,width,d_model", SHAPES)
def test_mamba_matrix_is_lower_triangular_and_sasf_reaches_exactly_where_the_stencil_does(
    seed, batch, height, width, d_model
):
    inputs = random_inputs(seed, batch, height, width, d_model)
    mamba = sasf_matrix(without_fusion(inputs))
    assert torch.equal(mamba, mamba.tril())
    fused = sasf_matrix(inputs)
    # pixel t reads state h_{t'} for the stencil's sources t'; h_{t'} holds u_s for every s <= t'
    length = height * width
    sources = stencil_sources(height, width).reshape(-1, length)  # (27, L)
    reach = sources.max(dim=0).values  # furthest source of each pixel in raster order
    t = torch.arange(length)[:, None]
    s = torch.arange(length)[None, :]
    ahead = (s > t) & (s <= reach[:, None])
    nonzero_above = (fused != 0) & (s > t)
    assert torch.equal(nonzero_above, ahead.expand_as(nonzero_above))
    assert bool(ahead.any()) == (length > 1)  # with fusion M is not lower-triangular


def test_core_inputs_are_what_the_layer_passes_to_the_core_op(monkeypatch):
    layer = random_layer(3, seed=5)
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    real = spatial_mamba_arch.sasf
    recorded = []

    def spy(inputs, **kwargs):
        recorded.append(inputs)
        return real(inputs, **kwargs)

    monkeypatch.setattr(spatial_mamba_arch, "sasf", spy)
    layer(x)
    inputs = core_inputs(layer, x)
    mine = inputs.channels_first()
    assert len(recorded) == 1 and recorded[0].scan == "row"
    theirs_all = recorded[0].channels_first()
    assert len(theirs_all) == len(mine)
    for theirs, ours in zip(theirs_all, mine):
        if isinstance(ours, torch.Tensor):
            assert torch.equal(theirs.detach(), ours)
        else:
            assert theirs == ours


def test_matrix_of_a_unet_layer_matches_autograd():
    torch.manual_seed(0)
    model = SpatialMambaUNet.from_preset("tiny").double().eval()
    layers = sasf_layers(model)
    assert layers
    name, layer = layers[0]
    x = layer_input(model, layer, torch.rand(1, 3, 8, 6, dtype=torch.float64))  # padded to 8x8 inside
    inputs = core_inputs(layer, x)
    assert inputs.u.shape[1] == inputs.height * inputs.width, name
    torch.testing.assert_close(autograd_matrix(inputs), sasf_matrix(inputs), rtol=1e-10, atol=1e-12)


def box_net() -> nn.Module:
    """Three 3x3 averaging convs: a conv net whose ERF is known (7x7 support, peak at the centre)."""
    net = nn.Sequential(*(nn.Conv2d(3, 3, 3, padding=1, bias=False) for _ in range(3))).double()
    for conv in net:
        nn.init.constant_(conv.weight, 1.0 / 27)
    return net


def test_erf_of_a_conv_net_is_finite_peaked_and_as_wide_as_its_receptive_field():
    net = box_net()
    images = torch.rand(5, 3, 15, 13, dtype=torch.float64)
    first, full = effective_receptive_field(lambda x: [net[0](x), net(x)], images, batch_size=2)
    for erf, radius in ((first, 1), (full, 3)):
        assert erf.shape == (15, 13) and bool(erf.isfinite().all())
        assert erf[7, 6] == erf.max()
        support = (erf > 0).nonzero()
        assert support.min(0).values.tolist() == [7 - radius, 6 - radius]
        assert support.max(0).values.tolist() == [7 + radius, 6 + radius]
        assert mass_radius(erf, 1.0) == radius and mass_radius(erf, 0.05) == 0  # centre: 1/9, (7/27)²


def test_erf_of_classifier_stages_and_unet_are_finite_maps_of_the_input():
    torch.manual_seed(0)
    classifier = SpatialMamba(depths=[1, 1], dims=8, num_classes=4).double().eval()
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    erfs = effective_receptive_field(classifier_stages(classifier, [0, 1]), images)
    unet = SpatialMambaUNet.from_preset("tiny").double().eval()
    erfs += effective_receptive_field(lambda x: [unet(x)], torch.rand(2, 3, 16, 16, dtype=torch.float64))
    for erf, size in zip(erfs, (32, 32, 16)):
        assert erf.shape == (size, size) and bool(erf.isfinite().all()) and float(erf.max()) > 0
    with pytest.raises(ValueError, match="stage"):
        classifier_stages(classifier, [2])


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_matrix_default_writes_a_png_and_reports_agreement_with_autograd(tmp_path):
    out = tmp_path / "m.png"
    proc = subprocess.run([sys.executable, "-m", "spatial_restore.analysis", "matrix", "-o", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert is_png(out)
    error = float(proc.stdout.split("max rel. error ")[1].split()[0])
    assert error < 1e-12


def test_cli_matrix_and_erf_on_models_write_pngs(tmp_path, capsys):
    assert main(["matrix", "--model", "denoiser", "--random-init", "--size", "8", "6", "--channel", "1",
                 "-o", str(tmp_path / "m.png")]) == 0  # fmt: skip
    assert main(["erf", "--model", "denoiser", "--random-init", "--size", "16", "--samples", "1",
                 "-o", str(tmp_path / "d.png")]) == 0  # fmt: skip
    assert main(["erf", "--model", "classifier", "--size", "32", "--samples", "1", "--stages", "0", "1",
                 "-o", str(tmp_path / "c.png")]) == 0  # fmt: skip
    assert all(is_png(tmp_path / name) for name in ("m.png", "d.png", "c.png"))
    assert "wrote" in capsys.readouterr().out


def test_cli_matrix_refuses_layers_of_other_scan_directions(tmp_path, capsys):
    # The shipped denoiser turns its scan a quarter per layer: its second layer scans column-major.
    out = tmp_path / "m.png"
    assert main(["matrix", "--model", "denoiser", "--layer", "encoder1.blocks.1.self_attention", "--size", "8", "6",
                 "-o", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "scans col" in err and "encoder1.blocks.0.self_attention" in err and not out.exists()


def test_cli_denoiser_without_weights_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(weights.SHIPPED, "default", "no_such_model_for_tests")
    assert main(["erf", "--model", "denoiser", "-o", str(tmp_path / "e.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot load denoiser 'default'" in err and "--random-init" in err
    assert not (tmp_path / "e.png").exists()
