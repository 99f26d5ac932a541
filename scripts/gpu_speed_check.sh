#!/usr/bin/env bash
# Issue #17's GPU measurements on a lent machine, each step under its own time limit, results in $OUT
# (JSON and full text; only short tails are printed, as a call returns the last 12,000 characters).
#   bash scripts/gpu_speed_check.sh [STEP...]     steps: kernels compile bench compiled checkpoint
#                                                 compiled_checkpoint train_graph tiled sweep (default: all)
#                                                 and baseline (only when named)
# kernels: every GPU test of the Triton kernels against their references and of the CUDA tiling and graphs
# (run it first after a kernel change; the compile test is its own step).
# baseline: the 1024^2 and 256^2x8 training rows of an earlier tree, then of this one, in one call, so their
# ratio comes from one machine. Make the earlier tree here first (git-ignored; carry .carry/baseline):
#   mkdir -p .carry/baseline && git archive REV spatial_restore ':!spatial_restore/weights/*.safetensors' \
#     | tar -x -C .carry/baseline && echo REV > .carry/baseline/REV
# All steps together can pass a call's 600 s: split them over two calls on the warm machine if needed.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
bench="python3 -m spatial_restore.bench"
recompute="use_checkpoint=['decoder1','refinement']"  # the stages the checkpoint steps recompute
step() {  # NAME SECONDS COMMAND...: run it, keep its output in $out/NAME.txt, print its tail
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "exit $?"
  tail -n 8 "$out/$name.txt"
}
nvidia-smi --query-gpu=name --format=csv,noheader
for s in ${@:-kernels compile bench compiled checkpoint compiled_checkpoint train_graph tiled sweep}; do case $s in
  kernels) step kernels 300 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu_kernels.py \
             tests/test_cuda_graph.py -k "not compiles_without_graph_break";;
  compile) step compile 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu_kernels.py \
             -k compiles_without_graph_break;;
  bench) step bench 200 $bench restoration --presets small base --sizes 256 1024 --train-crops 128 256 \
           --json "$out/restoration.json";;
  compiled) step compiled 200 $bench restoration --presets small --sizes 1024 --train-crops 256 --compile \
              --json "$out/restoration_compiled.json";;
  compiled_checkpoint) step compiled_checkpoint 200 $bench restoration --presets small base --sizes \
                         --train-crops 256 --compile --set "$recompute" \
                         --json "$out/restoration_compiled_checkpoint.json";;
  checkpoint) step checkpoint 90 $bench restoration --presets small base --sizes --train-crops 256 \
                --set "$recompute" --json "$out/restoration_checkpoint.json";;
  train_graph) step train_graph_test 120 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_cuda_graph.py \
                 -k graphed_training
               for mode in eager graph; do  # the same rows eager, then replayed as CUDA graphs, in one call
                 step train_$mode 150 $bench restoration --presets small base --sizes --train-crops 128 256 \
                   $([ $mode = graph ] && echo --train-cuda-graph) --json "$out/restoration_train_$mode.json"
               done;;
  baseline) [ -d .carry/baseline/spatial_restore ] || { echo "no .carry/baseline/spatial_restore (see the top)"; exit 2; }
            echo "baseline tree: $(cat .carry/baseline/REV 2>/dev/null || echo 'unnamed')"
            for tree in baseline head; do  # run inside the tree: python -m imports from the working directory first
              (dir=$PWD; [ $tree = baseline ] && dir=$PWD/.carry/baseline; cd "$dir"; export PYTHONPATH=$dir
               step bench_$tree 150 $bench restoration --presets small base --sizes 1024 --train-crops 256 \
                 --json "$out/restoration_$tree.json")
            done;;
  tiled) step tiled 90 python3 scripts/gpu_bench_inference.py default --cuda-graph --repeats 3;;
  sweep) step sweep 200 $bench kernels --layout channels-last --sweep --no-reference --dtypes bfloat16 \
           --shapes 1,96,1024,1024 1,192,1024,1024 1,384,256,256 --json "$out/kernels_sweep.json";;
  *) echo "unknown step $s (kernels compile bench compiled checkpoint compiled_checkpoint train_graph tiled sweep baseline)"
     exit 2;;
esac; done
