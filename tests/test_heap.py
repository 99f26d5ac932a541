"""keep_freed_memory: large blocks stay in the heap (no page faults on reuse), only where asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from spatial_restore.inference import cli, heap

# Allocate and fill blocks of 4, 16 and 64 MB, once to warm up, then four more times each; count the
# page faults of those rounds. Without the setting glibc unmaps each freed block, so every round faults
# pages in again (here ~500 faults per block and round: the kernel backs them with huge pages where it
# can); with it the heap keeps the pages and reuse costs no fault.
ROUNDS = """
import json, resource
import torch
from spatial_restore.inference.heap import keep_freed_memory
took = keep_freed_memory()
faults = 0
for megabytes in (4, 16, 64):
    n = megabytes * 2**20 // 8
    a = torch.ones(n, dtype=torch.float64); del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        a = torch.ones(n, dtype=torch.float64); del a
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"took": took, "faults": faults}))
"""


def rounds(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != heap.ENV_VAR}
    if setting is not None:
        env[heap.ENV_VAR] = setting
    out = subprocess.run([sys.executable, "-c", ROUNDS], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_large_blocks_are_reused_without_page_faults_unless_turned_off():
    on, off = rounds(None), rounds("0")
    assert on["took"] is True and off["took"] is False
    assert off["faults"] >= 12 * 100  # every block faulted in again in each of its 4 rounds
    assert on["faults"] <= 64  # the heap kept them (a few for the interpreter's own small objects)


def test_the_cli_keeps_freed_memory_before_it_loads_anything(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    code = cli.main([str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "none")])
    assert code == 2 and calls == [True]
