#!/usr/bin/env bash
# Crash-resume benchmark on real MNIST with the default preset and interval:
#   - checkpoint size and write time, and checkpointing overhead over a run
#   - resume latency: process start -> first step after the resumed one
# Usage: bench/resume.sh   (DATA=../shared/data/mnist THREADS=2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null 2>&1
cargo build --release --quiet
DATA=${DATA:-../shared/data/mnist}
THREADS=${THREADS:-2}
bin=target/release/trainerd
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
state="$out/state"

# 1. A full default run: save times and overhead (debug logs carry each save's duration).
RUST_LOG=trainerd=debug,info "$bin" train --data-dir "$DATA" --state-dir "$state" --threads "$THREADS" \
    --log-format json 2>"$out/run.log" >/dev/null || true
python3 - "$out/run.log" "$state" <<'PY'
import json, sys, os, glob
saves, overhead = [], []
for line in open(sys.argv[1]):
    try: v = json.loads(line)
    except ValueError: continue
    if v.get("message") == "checkpoint saved": saves.append(v["ms"])
    if v.get("message") == "checkpointing cost in this run": overhead.append(float(v["overhead_percent"]))
ckpts = glob.glob(os.path.join(sys.argv[2], "trials", "*", "checkpoints", "ckpt-*"))
size = max((os.path.getsize(p) for p in ckpts), default=0)
print(f"checkpoints written: {len(saves)}; write time median {sorted(saves)[len(saves)//2] if saves else 'n/a'} ms, max {max(saves) if saves else 'n/a'} ms")
print(f"checkpoint size: {size/1024:.0f} KiB")
print(f"checkpointing overhead at the default interval: {overhead[-1] if overhead else 'n/a'} % of training time")
PY

# 2. Resume latency: kill -9 mid-epoch, restart, time to the first new step.
rm -rf "$state"
TRAINERD_HEARTBEAT_MS=10 "$bin" train --data-dir "$DATA" --state-dir "$state" --threads "$THREADS" \
    --checkpoint-every 100 --log-format json 2>/dev/null >/dev/null &
pid=$!
until ls "$state"/trials/*/checkpoints/ckpt-* >/dev/null 2>&1; do sleep 0.05; done
sleep 1
kill -9 $pid; wait $pid 2>/dev/null || true
start=$(date +%s%N)
TRAINERD_HEARTBEAT_MS=5 "$bin" train --data-dir "$DATA" --state-dir "$state" --threads "$THREADS" \
    --log-format json 2>"$out/resume.log" >/dev/null &
pid=$!
resumed=""
while kill -0 $pid 2>/dev/null; do
    resumed=$(python3 -c "
import json,sys
for l in open('$out/resume.log'):
    try: v=json.loads(l)
    except ValueError: continue
    if v.get('message')=='resumed from checkpoint': print(v['step']); break" 2>/dev/null || true)
    if [ -n "$resumed" ]; then
        step=$(python3 -c "import json; print(json.load(open('$state/heartbeat.json'))['step'])" 2>/dev/null || echo 0)
        if [ "$step" -gt "$resumed" ]; then break; fi
    fi
    sleep 0.005
done
end=$(date +%s%N)
kill -9 $pid 2>/dev/null || true
echo "resume latency (process start -> first step after step $resumed): $(( (end - start) / 1000000 )) ms"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), threads=$THREADS, load $(cut -d' ' -f1-3 /proc/loadavg)"
