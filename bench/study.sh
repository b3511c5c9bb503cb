#!/usr/bin/env bash
# The job chain on real MNIST: starting from a linear model, the study must
# escalate by itself to >= 99.5% validation accuracy. Reports the wall time
# (target <= 5 min on 2 cores), the trials it ran, and the promoted model's
# test accuracy (reported, never used to decide).
#
# usage: bench/study.sh [DATA_DIR] [extra trainerd flags...]
#   DATA_DIR defaults to ../shared/data/mnist (relative to the repo root).
# Env: THREADS (default 2), TARGET (default 0.995), OUT (default bench/out/study).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/mnist}
shift || true
threads=${THREADS:-2}
target=${TARGET:-0.995}
out=${OUT:-bench/out/study}

cargo build --release --quiet --bin trainerd
bin=${CARGO_TARGET_DIR:-target}/release/trainerd
rm -rf "$out"
mkdir -p "$out"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"
start=$(date +%s.%N)
set +e
"$bin" train --data-dir "$data" --state-dir "$out/state" --preset linear \
    --target-accuracy "$target" --threads "$threads" --log-format json "$@" \
    2> "$out/log.jsonl"
code=$?
set -e
end=$(date +%s.%N)
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" "$code" "$start" "$end" "$target" <<'PY'
import json, sys
out, code, start, end, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
journal = [json.loads(l) for l in open(f"{out}/state/study/journal.jsonl") if l.strip()]
started = {r["trial"]: r for r in journal if r["type"] == "trial_started"}
print(f"{'trial':>5} {'move':<9} {'preset':<14} {'epochs':>6} {'val':>7} {'seconds':>8}  note")
for r in journal:
    if r["type"] != "trial_finished":
        continue
    s = started[r["trial"]]
    note = "pruned" if r["pruned"] else ("promoted" if r["promoted"] else "")
    print(f"{r['trial']:>5} {s['move']:<9} {s['spec']['preset']:<14} {s['spec']['recipe']['epochs']:>6} "
          f"{r['val_accuracy']:>7.4f} {r['train_seconds']:>8.1f}  {note}")
card = json.load(open(f"{out}/state/best/model.json"))
wall = end - start
print(f"exit code        {code} ({'target reached' if code == 0 else 'below target' if code == 2 else 'error'})")
print(f"wall time        {wall:.0f} s ({wall/60:.1f} min; target <= 5 min)")
print(f"champion         trial {card['trial']} {card['preset']}: val {card['val_accuracy']:.4f}, test {card['test_accuracy']:.4f}")
ok = code == 0 and card["val_accuracy"] >= target
print("RESULT", "pass" if ok else "miss", f"val>={target}")
PY
