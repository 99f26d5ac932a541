"""keep_freed_memory: large blocks stay in the heap (no page faults on reuse), only where asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from spatial_restore.inference import cli, heap

# Allocate, fill and free blocks of 4, 16 and 64 MB, once to warm up, then four more times each.
# Report how much memory stays resident once all are freed (the heap keeps its 64 MB peak, or glibc
# unmapped every block) and the page faults of the four later rounds. Without the setting every round
# faults its pages in again (here ~500 faults per block and round: the kernel backs them with large
# pages where it can); with it reuse costs no fault here, but CI once counted 515 (cause not pinned
# down: a small allocation that splits a freed block, as reading /proc between rounds does here, or
# the kernel's own hinting faults), so the fault check is a ratio, and the resident memory is the
# exact evidence that the heap kept the blocks.
ROUNDS = """
import json, os, resource
import torch
from spatial_restore.inference.heap import keep_freed_memory

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

took = keep_freed_memory()
faults, start = 0, resident()
for megabytes in (4, 16, 64):
    n = megabytes * 2**20 // 8
    a = torch.ones(n, dtype=torch.float64); del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        a = torch.ones(n, dtype=torch.float64); del a
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
kept = resident() - start
print(json.dumps({"took": took, "faults": faults, "kept_mb": kept / 2**20}))
"""


def rounds(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != heap.ENV_VAR}
    if setting is not None:
        env[heap.ENV_VAR] = setting
    out = subprocess.run([sys.executable, "-c", ROUNDS], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_large_blocks_stay_in_the_heap_and_are_reused_unless_turned_off():
    on, off = rounds(None), rounds("0")
    assert on["took"] is True and off["took"] is False
    assert on["kept_mb"] >= 60 and off["kept_mb"] <= 8  # the freed blocks: kept vs unmapped
    assert off["faults"] >= 12 * 100  # every block faulted in again in each of its 4 rounds
    assert on["faults"] * 2 <= off["faults"]  # reuse from the heap: at least half the faults gone


def test_the_cli_keeps_freed_memory_before_it_loads_anything(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    code = cli.main([str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "none")])
    assert code == 2 and calls == [True]
