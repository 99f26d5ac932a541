"""Compile the SASF and depthwise-conv Triton kernels for a GPU architecture without a GPU and count their machine code.

    python scripts/kernel_sass.py [--arch 90] [--dump DIR]

For each kernel at the network's channels-last tiles (bf16 activations, 32-bit offsets) it prints the
registers per thread, spill stores, the kernel's instruction count, and that of every loop body in the
SASS (the per-tile work the stencil and scan kernels repeat). These are static counts, not timings: they show
what a change does to the code on a machine without a GPU, and only the GPU bench says what it is worth.
Uses Triton's bundled ptxas, cuobjdump and nvdisasm; --dump keeps the cubin and SASS of each kernel.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import tempfile
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget

from spatial_restore.kernels import triton_dwconv as dw
from spatial_restore.kernels import triton_sasf as ts

TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
F32, BF16, I32 = "*fp32", "*bf16", "i32"
# the shipped tiles and warps, at the shape of a `small` GDFN layer in training (C = 96, 256 x 256)
CFG = ts.CHANNELS_LAST_CONFIG
SCAN_META = dict(BD=CFG.scan_rows, BL=CFG.scan_block, SUMMARY=False, HAS_CARRY=True, CL=True, SCAN=0, I64=False)
FUSE_META = dict(BDF=CFG.fuse_rows, TH=CFG.fuse_block // CFG.fuse_width, TW=CFG.fuse_width, CL=True, I64=False)
BORDER_BD, BORDER_BLOCK = ts._border_tile(96, 256, 256, True)
DW_BH, DW_BW, DW_BC, DW_ROWS = dw._tiles(96, 256, 256)
DWB_BH, DWB_BW, DWB_BC, DWB_ROWS, DWB_WARPS = dw._backward_tiles(DW_BH, DW_BW, DW_BC, DW_ROWS)


@triton.jit
def _dwconv_one_path(x_ptr, w_ptr, bias_ptr, g_ptr, y_ptr, H, W, C, N, SX, BH: tl.constexpr, BW: tl.constexpr,
                     BC: tl.constexpr, EPILOGUE: tl.constexpr, I64: tl.constexpr, MASK: tl.constexpr):
    """_dwconv_kernel with its inside-the-image branch fixed (MASK False: the inside path), so that each
    path's code is counted alone (the kernel has no loop to tell them apart by)."""
    hh, ww, c, cm, m, _ = dw._tile(tl.program_id(0) // tl.cdiv(W, BW), C, H, W, BH, BW, BC)
    dw._dwconv_tile(x_ptr, w_ptr, bias_ptr, g_ptr, y_ptr, tl.program_id(1), hh, ww, c, cm, m, H, W, C, N, SX,
                    BH * BW, BC, EPILOGUE, MASK, I64)


@triton.jit
def _dwconv_bwd_one_path(gc_ptr, x_ptr, w_ptr, dx_ptr, part_ptr, H, W, N, SX, BH: tl.constexpr, BW: tl.constexpr,
                         BC: tl.constexpr, ROWS: tl.constexpr, IDENTITY: tl.constexpr, I64: tl.constexpr,
                         MASK: tl.constexpr):
    """_dwconv_bwd_kernel's row-tile loop with its branch fixed (the loop body then holds one path)."""
    s = tl.zeros((BH * BW, BC), dtype=tl.float32)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = s, s, s, s, s, s, s, s, s, s
    for r in range(ROWS):
        hh, ww, c, cm, m, _ = dw._tile((tl.program_id(0) // tl.cdiv(W, BW)) * ROWS + r, N, H, W, BH, BW, BC)
        s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = dw._bwd_tile(
            gc_ptr, x_ptr, w_ptr, dx_ptr, tl.program_id(1), hh, ww, c, cm, m, H, W, N, SX, s0, s1, s2, s3, s4, s5,
            s6, s7, s8, s9, BH * BW, BC, IDENTITY, MASK, I64)
    c = tl.program_id(2) * BC + tl.arange(0, BC)
    tl.store(part_ptr + c, tl.sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9, axis=0))


DW_TYPES = dict(x_ptr=BF16, w_ptr=F32, bias_ptr=F32, g_ptr=BF16, y_ptr=BF16, H=I32, W=I32, C=I32, N=I32, SX=I32)
DW_META = dict(BH=DW_BH, BW=DW_BW, BC=DW_BC, I64=False)
DWB_TYPES = dict(gc_ptr=BF16, x_ptr=BF16, w_ptr=F32, dx_ptr=BF16, part_ptr=F32, H=I32, W=I32, N=I32, SX=I32)
DWB_META = dict(BH=DWB_BH, BW=DWB_BW, BC=DWB_BC, ROWS=DWB_ROWS, IDENTITY=False, I64=False)
# kernel -> (argument types; arguments not named are constexprs), compile-time constants, warps[, options]
KERNELS = {
    "fwd_scan": (ts._fwd_scan_kernel, dict(u_ptr=BF16, dl_ptr=BF16, B_ptr=BF16, A_ptr=F32, bias_ptr=F32, h_ptr=F32,
                                           carry_ptr=F32, summ_ptr=F32, D=I32, L=I32, H=I32, W=I32, n_chunks=I32,
                                           blocks_per_chunk=I32), SCAN_META, CFG.num_warps),
    "fwd_fuse": (ts._fwd_fuse_kernel, dict(h_ptr=F32, u_ptr=BF16, C_ptr=BF16, Ds_ptr=F32, Wt_ptr=F32, y_ptr=F32,
                                           D=I32, H=I32, W=I32), FUSE_META, CFG.num_warps),
    "bwd_border": (ts._bwd_border_kernel, dict(dy_ptr=F32, C_ptr=BF16, Wt_ptr=F32, border_ptr=F32, D=I32, H=I32,
                                               W=I32), dict(BD=BORDER_BD, BLOCK=BORDER_BLOCK, CL=True, I64=False),
                   ts._warps(BORDER_BD * BORDER_BLOCK, ts.DEFAULT_CONFIG)),
    "bwd_fuse": (ts._bwd_fuse_kernel, dict(h_ptr=F32, dy_ptr=F32, C_ptr=BF16, Wt_ptr=F32, border_ptr=F32, dh_ptr=F32,
                                           dC_ptr=F32, S_ptr=F32, D=I32, H=I32, W=I32, tiles_per_group=I32,
                                           n_groups=I32), FUSE_META, CFG.num_warps),
    "bwd_scan": (ts._bwd_scan_kernel, dict(u_ptr=BF16, dl_ptr=BF16, B_ptr=BF16, A_ptr=F32, bias_ptr=F32, Ds_ptr=F32,
                                           h_ptr=F32, dh_ptr=F32, dy_ptr=F32, du_ptr=BF16, ddl_ptr=BF16, dB_ptr=F32,
                                           red_ptr=F32, carry_ptr=F32, summ_ptr=F32, D=I32, L=I32, H=I32, W=I32,
                                           n_chunks=I32, blocks_per_chunk=I32), SCAN_META, CFG.num_warps,
                 dict(maxnreg=ts.BWD_SCAN_REGISTERS)),
    # the GDFN's gate, the widest epilogue
    "dwconv_gate": (dw._dwconv_kernel, DW_TYPES, dict(DW_META, EPILOGUE=dw.GATE.value),
                    dw._warps(DW_BH * DW_BW * DW_BC, convs=2)),
    # each epilogue's two paths alone: tiles on the border (masked) and inside the image
    **{f"dwconv_{name} {where}": (_dwconv_one_path, DW_TYPES, dict(DW_META, EPILOGUE=code, MASK=where == "border"),
                                  dw._warps(DW_BH * DW_BW * DW_BC, convs=2 if name == "gate" else 1))
       for name, code in dw.EPILOGUES.items() for where in ("border", "inside")},
    "dwconv_bwd": (dw._dwconv_bwd_kernel, DWB_TYPES, DWB_META, DWB_WARPS),
    **{f"dwconv_bwd {where}": (_dwconv_bwd_one_path, DWB_TYPES, dict(DWB_META, MASK=where == "border"), DWB_WARPS)
       for where in ("border", "inside")},
}
# loop counts and grid sizes vary at run time; sizes and pointers are specialised as at a real launch
UNALIGNED = {"n_chunks", "blocks_per_chunk", "tiles_per_group", "n_groups"}
INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)(\S*)\s*([^;]*);")
LABEL = re.compile(r"^\s*(\.L\w+):")
BRANCH = re.compile(r"(\.L\w+)")


def compile_kernel(fn, types: dict[str, str], constants: dict, warps: int, arch: int, options: dict | None = None):
    signature = {name: types.get(name, "constexpr") for name in fn.arg_names}
    aligned = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in types if n not in UNALIGNED}
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=aligned)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=warps, **(options or {})))


def loop_bodies(sass: str) -> list[tuple[int, collections.Counter]]:
    """(instructions, opcode counts) of each loop: the code between a label and a branch back to it."""
    labels: dict[str, int] = {}
    ops: list[str] = []
    bodies = []
    for line in sass.splitlines():
        if m := LABEL.match(line):
            labels[m.group(1)] = len(ops)
        elif m := INSTRUCTION.search(line):
            ops.append(m.group(1))
            target = BRANCH.search(m.group(3)) if m.group(1) == "BRA" else None
            if target and labels.get(target.group(1), len(ops)) < len(ops) - 1:
                body = ops[labels[target.group(1)]:]
                bodies.append((len(body), collections.Counter(body)))
    return bodies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100/H200)")
    p.add_argument("--dump", type=Path, help="keep each kernel's cubin and SASS here")
    args = p.parse_args()
    out = args.dump or Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    print(f"| kernel (sm_{args.arch}, triton {triton.__version__}) | warps | registers | spill stores | instructions "
          "| loop bodies (instructions: most frequent) |\n|---|---:|---:|---:|---:|---|")
    for name, (fn, types, constants, warps, *options) in KERNELS.items():
        cubin = out / f"{name.replace(' ', '_')}.cubin"
        cubin.write_bytes(compile_kernel(fn, types, constants, warps, args.arch, *options).asm["cubin"])
        sass = subprocess.run([TOOLS / "nvdisasm", "-c", cubin], capture_output=True, text=True, check=True).stdout
        (out / f"{name.replace(' ', '_')}.sass").write_text(sass)
        usage = subprocess.run([TOOLS / "cuobjdump", "-res-usage", cubin], capture_output=True, text=True,
                               check=True).stdout
        registers = re.search(r"REG:(\d+)", usage).group(1)
        spills = sum(1 for line in sass.splitlines() if re.search(r"\bSTL\b", line))
        total = sum(1 for line in sass.splitlines() if INSTRUCTION.search(line))
        loops = "; ".join(f"{n}: " + ", ".join(f"{op} {c}" for op, c in ops.most_common(4))
                          for n, ops in loop_bodies(sass))
        print(f"| {name} | {warps} | {registers} | {spills} | {total} | {loops} |")


if __name__ == "__main__":
    main()
