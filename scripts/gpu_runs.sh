#!/usr/bin/env bash
# Several gpu_train.sh runs side by side on one lent GPU, as setsid daemons, watched, stopped and collected.
# The machine goes back 30 s after a call, taking the daemons with it, and may go back between any two
# calls: end every call with collect, so the newest weights and log come back each time. A chunk:
# (start ...; watch S; collect ...), (watch S; collect ...)..., (stop ...; collect ...), with the photos in
# .carry and the wheel in .whl; start takes about 40 s, so S <= 500 in its call.
#   start TAG OPT [overrides...] | watch SECONDS | stop TAG... | collect TAG... | logs TAG... | status
set -uo pipefail
runs=/tmp/runs; mkdir -p $runs
cmd=$1; shift
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
exp_of() { cat $runs/$1/name; }
log_of() { ls -t experiments/$(exp_of $1)/train_*.log 2>/dev/null | head -1; }
alive() { [ -f $runs/$1/pid ] && kill -0 $(cat $runs/$1/pid) 2>/dev/null; }  # the driver (gpu_train.sh)
report() {
  for d in $runs/*/; do [ -d $d ] || continue; t=$(basename $d); l=$(log_of $t)
    printf '%s %s %s\n' "$t" "$(alive $t && echo run || echo DEAD)" \
      "$( [ -n "$l" ] && grep -o 'iter: *[0-9,]*' $l | tail -1)"
  done
}
case $cmd in
  start)
    tag=$1; opt=$2; shift 2; mkdir -p $runs/$tag
    python3 -c "import basicsr" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    name=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$opt")
    for a in "$@"; do case $a in name=*) name=${a#name=};; esac; done
    echo $name > $runs/$tag/name
    OUT=$runs/$tag/out setsid nohup bash scripts/gpu_train.sh "$opt" 3000 "$@" > $runs/$tag/driver.log 2>&1 < /dev/null &
    echo $! > $runs/$tag/pid; echo "started $tag ($name) pid $(cat $runs/$tag/pid)";;
  watch)
    end=$(( $(date +%s) + $1 ))
    while [ $(date +%s) -lt $end ]; do
      sleep 60; echo "== $(date +%T)"; report
      for d in $runs/*/; do [ -d $d ] || continue; t=$(basename $d); alive $t || [ -f $d/seen ] || {
        touch $d/seen; echo "-- $t ended:"; tail -5 $d/driver.log; tail -25 $d/out/train_stdout.log 2>/dev/null; }; done
      n=0; for d in $runs/*/; do alive $(basename $d) && n=$((n+1)); done; [ $n = 0 ] && break
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader;;
  stop)  # timeout(1) leads a process group of its own: signal it (it passes TERM to training), then the driver's
    for t in "$@"; do alive $t && { pkill -TERM -x timeout -P $(cat $runs/$t/pid); sleep 2; kill -TERM -- -$(cat $runs/$t/pid); }; done
    sleep 5; report;;
  collect)
    for t in "$@"; do e=experiments/$(exp_of $t)
      l=$(log_of $t); [ -n "$l" ] && { cp $l $OUT/$t.log; grep "# psnr" $l | tail -30; }
      m=$(ls -t $e/models/net_g_*.safetensors 2>/dev/null | head -1)
      if [ -n "$m" ]; then echo "$t weights: $m"; split -b 15M -d "$m" "$OUT/$t.$(basename $m)."; fi
    done;;
  logs)
    for t in "$@"; do l=$(log_of $t); [ -n "$l" ] && cp $l $OUT/$t.log; done;;
  status) report;;
esac
