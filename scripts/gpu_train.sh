#!/usr/bin/env bash
# Train on the lent GPU machine (see docs/restoration.md): one bounded, resumable chunk of a BasicSR run.
#   bash scripts/gpu_train.sh OPTIONS_YML SECONDS [extra --force_yml entries...]
# Every dataset path under ../shared/data is read from .carry instead (../shared/data/photos/val ->
# .carry/photos/val; a root ../shared/data -> .carry), so the photo sets must have been carried there
# (.carry/photos, .carry/photos_extra: one per call, they stay on a warm machine), and wheels to .whl.
# Results (log, EMA weights split in <16 MB parts: the latest and the best-validated, training-state
# iteration) go to $OUT. Re-running on the same warm machine resumes.
set -uo pipefail
opt=$1; seconds=$2; shift 2
out=${OUT:-/tmp/out}; mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import basicsr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
name=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$opt")
for arg in "$@"; do case $arg in name=*) name=${arg#name=};; esac; done  # a --force_yml name override
# every dataset reads the carried copy of ../shared/data; stop before training if a folder was not carried
roots=$(python3 - "$opt" <<'EOF'
import os, sys, yaml
shared, missing = "../shared/data", []
for key, dataset in yaml.safe_load(open(sys.argv[1]))["datasets"].items():
    root = str(dataset.get("dataroot_gt", ""))
    if root == shared or root.startswith(shared + "/"):
        carried = ".carry" + root[len(shared):]
        print(f"datasets:{key}:dataroot_gt={carried}")
        missing += [os.path.normpath(f"{carried}/{f}") for f in dataset.get("folders") or ["."]
                    if not os.path.isdir(f"{carried}/{f}")]
if missing:
    sys.exit(f"not carried: {' '.join(sorted(set(missing)))} (docs/restoration.md: 'Training on the lent GPU')")
EOF
) || exit 2
force=($roots "$@")
timeout "$seconds" python3 -m spatial_restore.train -opt "$opt" --auto_resume ${force[@]:+--force_yml "${force[@]}"} \
  > "$out/train_stdout.log" 2>&1
echo "train exit: $? (124 = stopped by the time limit; resumable)"
grep -E "Validation|psnr|ssim|iter:.*(00|50)0,|End of training|Error|error" "$out/train_stdout.log" | tail -40
exp=experiments/$name
ls -la "$exp/models" "$exp/training_states" 2>/dev/null | tail -6
cp "$exp"/train_*.log "$out/" 2>/dev/null
# the latest EMA weights, and the best-validated ones if they differ
best=$(grep -h "# psnr:" "$exp"/train_*.log 2>/dev/null | grep -o "Best: [0-9.]* @ [0-9]* iter" | tail -1 | awk '{print $4}')
latest=$(ls -t "$exp"/models/net_g_*.safetensors 2>/dev/null | head -1)
for ckpt in "$latest" ${best:+"$exp/models/net_g_$best.safetensors"}; do
  [ -f "$ckpt" ] && [ ! -e "$out/$(basename "$ckpt").00" ] && split -b 15M -d "$ckpt" "$out/$(basename "$ckpt")."
done
true
