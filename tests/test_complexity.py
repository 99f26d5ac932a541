"""FLOP and parameter counts reproduce the official fvcore numbers operator by operator."""

from __future__ import annotations

import json

import pytest

from spatial_restore.archs import spatial_mamba
from spatial_restore.complexity import count_flops, count_params


@pytest.mark.parametrize("variant", ["T", "S", "B"])
def test_flops_match_official_count_by_operator(ref, variant):
    official = json.loads((ref / "configs.json").read_text())[variant]["flops_224"]
    model = spatial_mamba(variant).to("meta")
    train = count_flops(model, (1, 3, 224, 224), train_mode=True)
    evalm = count_flops(model, (1, 3, 224, 224), train_mode=False)
    by_op = official["train"]["by_op"]
    # official train mode sees the fusion as three ordinary convs
    assert (train["conv"] + train["fusion"]) / 1e9 == pytest.approx(by_op["conv"], rel=1e-9)
    for ours, theirs in [("batch_norm", "batch_norm"), ("layer_norm", "layer_norm"), ("linear", "linear"),
                         ("matmul", "matmul"), ("scan", "PythonOp.SelectiveScanStateFn")]:
        assert train[ours] / 1e9 == pytest.approx(by_op[theirs], rel=1e-9), ours
    assert train["total"] / 1e9 == pytest.approx(official["train"]["total_GFLOPs"], rel=1e-9)
    # eval mode: BN costs 2/element and the fused-kernel fusion is invisible to fvcore
    assert (evalm["total"] - evalm["fusion"]) / 1e9 == pytest.approx(official["eval"]["total_GFLOPs"], rel=1e-9)


def test_param_count_helper():
    model = spatial_mamba("T")
    assert count_params(model) == 26_748_862
