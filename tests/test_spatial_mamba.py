"""Spatial-Mamba against the official model's fixtures: keys, parameter counts, eval/train numerics, layer internals."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import rel_err
from spatial_restore.archs import SpatialMamba, SpatialMambaBackbone, SpatialMambaBlock, spatial_mamba
from spatial_restore.archs import spatial_mamba_arch
from spatial_restore.kernels import selective_scan_ref, state_fusion_ref

EXACT_PARAMS = {"T": 26_748_862, "S": 43_074_280, "B": 95_745_592}


def tiny_model(load_ref, ref, dtype=torch.float64) -> SpatialMamba:
    cfg = json.loads((ref / "configs.json").read_text())["tiny"]["constructor_kwargs"]
    model = SpatialMamba(**cfg)
    model.load_state_dict(load_ref("tiny_model.pt")["state_dict"], strict=True)
    return model.to(dtype)


def key_lines(model: torch.nn.Module) -> list[str]:
    params = {n for n, _ in model.named_parameters()}
    return [f"{k} [{','.join(map(str, v.shape))}] {'param' if k in params else 'buffer'} {str(v.dtype).removeprefix('torch.')}"
            for k, v in model.state_dict().items()]


@pytest.mark.parametrize("variant", ["T", "S", "B"])
def test_official_variants_keys_and_exact_parameter_counts(ref, variant):
    model = spatial_mamba(variant)
    assert sum(p.numel() for p in model.parameters()) == EXACT_PARAMS[variant]
    assert all(p.requires_grad for p in model.parameters())
    assert key_lines(model) == (ref / f"keys_{variant}.txt").read_text().splitlines()


def test_configs_json_kwargs_build_unchanged(ref):
    configs = json.loads((ref / "configs.json").read_text())
    for variant in ("T", "S", "B"):
        model = SpatialMamba(**configs[variant]["build_model_kwargs"])
        assert sum(p.numel() for p in model.parameters()) == configs[variant]["params_total"]
        blocks = [b for layer in model.layers for b in layer.blocks]
        expected_dp = [dp for stage in configs[variant]["stages"] for dp in stage["drop_path"]]
        assert [b.drop_path.drop_prob for b in blocks] == pytest.approx(expected_dp, rel=1e-6)


def test_tiny_keys_match(load_ref, ref):
    assert key_lines(tiny_model(load_ref, ref)) == (ref / "keys_tiny.txt").read_text().splitlines()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_eval_logits_and_features(load_ref, ref, dtype):
    fx = load_ref("tiny_model.pt")
    suffix, tol = ("", 1e-10) if dtype == torch.float64 else ("_float32", 1e-5)  # README §6 thresholds
    model = tiny_model(load_ref, ref, dtype).eval()
    x = fx["input"].to(dtype)
    with torch.no_grad():
        stem = model.patch_embed(x)
        stages = model.forward_stages(x)
        pooled = model.forward_features(x)
        logits = model.head(pooled)
    feats = fx["features" + suffix]
    assert rel_err(stem, feats["stem"]) < tol
    for i, (blocks_out, out) in enumerate(stages):
        assert rel_err(blocks_out, feats[f"stage{i}_blocks_out"]) < tol, i
        assert rel_err(out, feats[f"stage{i}_out"]) < tol, i
    assert rel_err(pooled, feats["pooled"]) < tol
    assert rel_err(logits, fx["logits" + suffix]) < tol
    if dtype == torch.float32:  # the float32 model also lands within 1e-5 of the float64 truth
        assert (logits.double() - fx["logits"]).abs().max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_train_step_logits_loss_grads_and_bn_stats(load_ref, ref, dtype):
    fx = load_ref("tiny_train.pt")
    model = tiny_model(load_ref, ref, dtype).train()
    logits = model(load_ref("tiny_model.pt")["input"].to(dtype))
    loss = logits.pow(2).mean()
    loss.backward()
    if dtype == torch.float64:
        logits_ref, loss_ref, grads_ref, tol, gtol = fx["logits_train"], fx["loss"], fx["grads"], 1e-10, 1e-9
    else:  # README §6: float32 logits ~1e-5, gradients 1e-4 relative to each tensor's max
        logits_ref, loss_ref, grads_ref, tol, gtol = fx["logits_train_float32"], fx["loss_float32"], fx["grads_float32"], 1e-5, 1e-4
    assert rel_err(logits, logits_ref) < tol
    assert abs(loss.item() - loss_ref.item()) < tol * abs(loss_ref.item())
    zero_grad = set(json.loads((ref / "tolerances.json").read_text())["zero_grad_params"])
    named = dict(model.named_parameters())
    assert set(named) == set(grads_ref)
    for name, g_ref in grads_ref.items():
        g = named[name].grad
        if name in zero_grad:  # feeds a train-mode BN: mathematically zero, compare absolutely
            assert g.abs().max() < 1e-6, name
        else:
            assert rel_err(g, g_ref) < gtol, name
    state = model.state_dict()
    for name, buf in fx["buffers_after_train_forward"].items():
        if buf.is_floating_point():
            assert rel_err(state[name], buf) < tol, name
        else:
            assert torch.equal(state[name], buf), name


def build_block(load_ref) -> tuple[SpatialMambaBlock, dict]:
    fx = load_ref("layer_sasf.pt")
    block = SpatialMambaBlock(fx["d_model"]).double()
    block.load_state_dict(fx["layer_state_dict"], strict=True)
    return block, fx


@pytest.mark.parametrize("case", ["8x8", "6x10"])
def test_sasf_layer_every_intermediate(load_ref, monkeypatch, case):
    block, fx = build_block(load_ref)
    c = fx["cases"][case]
    sasf = block.self_attention.eval()
    seen: dict[str, torch.Tensor] = {}
    real_core = spatial_mamba_arch.sasf

    def recording_core(inputs, **kw):
        names = ("u", "delta", "A", "B", "C", "Dskip", "dt_bias", "kernels", "alpha")
        seen.update(zip(names, inputs.channels_first()))  # the official (b, d, L) layout
        seen["y"] = real_core(inputs, **kw).transpose(1, 2)
        return seen["y"].transpose(1, 2)

    monkeypatch.setattr(spatial_mamba_arch, "sasf", recording_core)
    # Copies: without autograd the layer overwrites these temporaries in place (SiLU, gating).
    hooks = [sasf.in_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("in_proj", o.clone())),
             sasf.conv2d.register_forward_hook(lambda m, i, o: seen.__setitem__("conv2d", o.clone())),
             sasf.out_norm.register_forward_hook(  # the norm alone (the module also applies the gate)
                 lambda m, i, o: seen.__setitem__("out_norm", torch.nn.functional.layer_norm(
                     i[0], m.normalized_shape, m.weight, m.bias, m.eps))),
             sasf.out_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("gated", i[0]))]
    with torch.no_grad():
        out = sasf(c["sasf_input"])
    for h in hooks:
        h.remove()
    H, W = c["H"], c["W"]
    hs = selective_scan_ref(seen["u"], seen["delta"], seen["A"], seen["B"], seen["dt_bias"])
    checks = {
        "in_proj_out": seen["in_proj"], "conv2d_out": seen["conv2d"], "scan_u": seen["u"],
        "conv_act_out": seen["u"].view(1, -1, H, W), "scan_delta": seen["delta"], "scan_A": seen["A"],
        "scan_B": seen["B"].view(1, 1, 1, -1), "scan_C": seen["C"], "D": seen["Dskip"], "scan_delta_bias": seen["dt_bias"],
        "dt_effective": torch.nn.functional.softplus(seen["delta"] + seen["dt_bias"][:, None]),
        "hidden_states": hs.unsqueeze(2), "fused_states": state_fusion_ref(hs.view(1, -1, H, W), seen["kernels"], seen["alpha"]),
        "ssm_y": seen["y"], "out_norm_out": seen["out_norm"], "gated": seen["gated"], "sasf_output": out,
    }
    for key, value in checks.items():
        assert rel_err(value, c[key]) < 1e-10, key
    dts_low = seen["delta"]  # dt_low is only observable through delta = dt_projs_weight @ dt_low
    assert rel_err(sasf.dt_projs_weight @ c["dts_low_rank"], dts_low) < 1e-10


@pytest.mark.parametrize("case", ["8x8", "6x10"])
def test_sasf_layer_train_mode_gradients_and_block_output(load_ref, case):
    block, fx = build_block(load_ref)
    c = fx["cases"][case]
    sasf = block.self_attention.train()
    x = c["sasf_input"].clone().requires_grad_()
    out = sasf(x)
    loss = out.pow(2).mean()
    loss.backward()
    assert rel_err(out, c["train_output"]) < 1e-10
    assert abs(loss.item() - c["train_loss"].item()) < 1e-10 * abs(c["train_loss"].item())
    assert rel_err(x.grad, c["train_grad_input"]) < 1e-9
    named = dict(sasf.named_parameters())
    assert set(named) == set(c["train_grads"])
    for name, g in c["train_grads"].items():
        assert rel_err(named[name].grad, g) < 1e-9, name
    with torch.no_grad():
        assert rel_err(block.eval()(c["block_input"]), c["block_output"]) < 1e-10


def test_no_stale_fusion_weights_between_eval_forwards(load_ref):
    """The official eval path caches a merged 11x11 kernel; ours must follow weight updates."""
    block, fx = build_block(load_ref)
    sasf = block.self_attention.eval()
    x = fx["cases"]["6x10"]["sasf_input"]
    with torch.no_grad():
        before = sasf(x)
        sasf.state_fusion.kernel_3_1.mul_(-2.0)
        sasf.state_fusion.alpha[2] += 0.5
        after = sasf(x)
    fresh = SpatialMambaBlock(fx["d_model"]).double().self_attention.eval()
    fresh.load_state_dict(sasf.state_dict())
    with torch.no_grad():
        expected = fresh(x)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_feature_backbone_strides_and_outnorms():
    model = spatial_mamba("T", backbone=True, drop_path_rate=0.0).eval()
    assert isinstance(model, SpatialMambaBackbone)
    keys = model.state_dict().keys()
    assert {f"outnorm{i}.weight" for i in range(4)} <= set(keys)
    assert not any(k.startswith(("head.", "norm.")) for k in keys)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 96, 160))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 24, 40), (1, 128, 12, 20), (1, 256, 6, 10), (1, 512, 3, 5)]
    # each output is a per-pixel LayerNorm of the stage: zero mean over channels at init (bias 0)
    assert all(f.mean(1).abs().max() < 1e-4 for f in feats)


def test_odd_input_sizes_run_and_downsample_with_ceil():
    model = SpatialMamba(depths=[1, 1, 1, 1], dims=16, num_classes=3).eval()
    with torch.no_grad():
        stages = model.forward_stages(torch.randn(2, 3, 37, 53))
        logits = model(torch.randn(2, 3, 37, 53))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert [tuple(s[0].shape[1:3]) for s in stages] == [(10, 14), (5, 7), (3, 4), (2, 2)]
