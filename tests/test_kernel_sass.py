"""Every Triton kernel compiles to sm_90 machine code on a machine without a GPU (scripts/kernel_sass.py).

The interpreter tests run the kernels' Python, never their compilation, so without this a GPU session
would be the first to find a kernel that does not compile. The script runs in a process of its own:
kernels decorated under TRITON_INTERPRET=1 (set by other test modules) cannot be compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"fwd_scan", "fwd_fuse", "bwd_border", "bwd_fuse", "bwd_scan", "dwconv_gate", "dwconv_bwd"}


def test_every_kernel_compiles_for_sm90_within_the_register_file():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "kernel_sass.py")], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {}
    for line in run.stdout.splitlines()[2:]:  # after the table's header and rule
        name, warps, registers, spills, instructions, _ = (cell.strip() for cell in line.strip("|").split("|"))
        rows[name] = int(registers), int(instructions)
    assert SHIPPED <= set(rows), sorted(rows)
    assert {name.split()[1] for name in rows if " " in name} == {"border", "inside"}  # both paths, counted alone
    for name, (registers, instructions) in rows.items():
        assert 0 < registers <= 255 and instructions > 0, name
