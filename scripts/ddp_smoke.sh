#!/usr/bin/env bash
# Multi-GPU DDP smoke benchmark on the lent GPU machine (issue #6; python -m spatial_restore.bench ddp):
# step-0 agreement 1 vs N GPUs, scaling efficiency, --auto_resume under DDP, DDP weights tested on one GPU.
#   bash scripts/ddp_smoke.sh [N] [extra bench options, e.g. --iters 100 --strict]
# Expects the photos in .carry/photos and wheels in .whl (carried). The JSON and the small text logs go to
# $OUT; each call runs in a fresh /tmp/ddp_smoke/<time>, as the bench never overwrites an earlier run.
set -uo pipefail
gpus=2
if [[ ${1:-} =~ ^[0-9]+$ ]]; then gpus=$1; shift; fi
out=${OUT:-/tmp/out}; mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import basicsr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
nvidia-smi --query-gpu=name --format=csv,noheader
work=/tmp/ddp_smoke/$(date +%Y%m%d_%H%M%S)
python3 -m spatial_restore.bench ddp --gpus "$gpus" --train .carry/photos/train --val .carry/photos/val \
  --workdir "$work" --json "$out/ddp_smoke.json" "$@"
status=$?
mkdir -p "$out/ddp_logs"
cp "$work"/logs/*.txt "$work"/*.yml "$work"/experiments/*/train_*.log "$work"/results/*/test_*.log \
  "$out/ddp_logs/" 2>/dev/null
echo "bench exit: $status; logs in $out/ddp_logs"
exit $status
