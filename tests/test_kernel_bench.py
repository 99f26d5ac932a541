"""The SASF kernel bench's inputs, tile sweep and summary (the timing itself needs a GPU)."""

from __future__ import annotations

import torch

from spatial_restore.bench.kernels import best_rows, config_name, core_inputs, parse_config, sweep_configs
from spatial_restore.kernels.triton_sasf import CHANNELS_LAST_CONFIG


def test_channels_last_inputs_are_views_of_the_networks_memory():
    first = core_inputs(2, 6, 5, 7, torch.bfloat16, device="cpu")
    last = core_inputs(2, 6, 5, 7, torch.bfloat16, channels_last=True, device="cpu")
    for name in ("u", "delta"):
        assert first[name].shape == last[name].shape == (2, 6, 35)
        assert first[name].is_contiguous() and last[name].transpose(1, 2).is_contiguous()
        assert last[name].dtype == torch.bfloat16
    assert last["A"].dtype == torch.float32
    again = core_inputs(2, 6, 5, 7, torch.bfloat16, channels_last=True, device="cpu")
    assert all(torch.equal(again[k], v) for k, v in last.items())


def test_sweep_varies_one_setting_at_a_time_and_names_rebuild_the_config():
    configs = sweep_configs(CHANNELS_LAST_CONFIG)
    assert configs and CHANNELS_LAST_CONFIG not in configs and len(set(configs)) == len(configs)
    base = CHANNELS_LAST_CONFIG
    for c in configs:
        scan_changed = (c.scan_rows, c.scan_block) != (base.scan_rows, base.scan_block)
        fuse_changed = (c.fuse_rows, c.fuse_block, c.fuse_width) != (base.fuse_rows, base.fuse_block, base.fuse_width)
        assert scan_changed + fuse_changed + (c.num_warps != base.num_warps) == 1
        assert parse_config(config_name(c)) == c


def test_best_rows_picks_the_fastest_config_per_shape_and_phase():
    def row(impl, fwd, both, shape=(1, 8, 4, 4)):
        return {"shape": list(shape), "dtype": "bfloat16", "impl": impl,
                "fwd": {"ms": fwd}, "fwd+bwd": None if both is None else {"ms": both}}

    rows = [row("triton[default]", 2.0, 6.0), row("triton[a]", 1.0, 7.0), row("triton[b]", 3.0, None),
            row("reference", 0.5, 0.5), row("triton[default]", 1.0, 1.0, shape=(2, 8, 4, 4))]
    best = best_rows(rows)
    assert [b["shape"] for b in best] == [[1, 8, 4, 4], [2, 8, 4, 4]]
    assert best[0]["fwd"] == {"impl": "triton[a]", "ms": 1.0, "default_ms": 2.0, "speedup": 2.0}
    assert best[0]["fwd+bwd"]["impl"] == "triton[default]" and best[0]["fwd+bwd"]["speedup"] == 1.0
    assert best[1]["fwd"]["impl"] == "triton[default]"
