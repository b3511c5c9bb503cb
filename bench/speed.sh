#!/usr/bin/env bash
# Side-by-side speed benchmark: trainerd vs the PyTorch reference
# (bench/pytorch_ref.py) with the same preset, recipe, threads and data.
#   bench/speed.sh [PRESET...]        default: fast reference
#   THREADS=2 EPOCHS=1 DATA=../shared/data/mnist
# Prints one table row per preset: samples/s each, the ratio, test accuracy,
# wall time from process start, and peak resident memory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null 2>&1
cargo build --release --quiet
THREADS=${THREADS:-2}
DATA=${DATA:-../shared/data/mnist}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(fast reference)
bin=target/release/trainerd
py=.venv/bin/python

rss_mb() { awk '/Maximum resident set size/ {printf "%.0f", $NF/1024}' "$1"; }

printf '%-10s %6s %12s %12s %7s %9s %9s %9s %9s %8s %8s\n' preset epochs trainerd/s pytorch/s ratio td_test py_test td_wall py_wall td_MB py_MB
for p in "${presets[@]}"; do
    "$bin" presets --json | "$py" -c "import json,sys; [json.dump(s, open('$out/spec.json','w')) for s in json.load(sys.stdin) if s['preset']=='$p']"
    epochs=${EPOCHS:-$("$py" -c "import json; print(json.load(open('$out/spec.json'))['recipe']['epochs'])")}
    state="$out/state-$p"
    start=$(date +%s.%N)
    /usr/bin/time -v "$bin" train --data-dir "$DATA" --state-dir "$state" --preset "$p" --epochs "$epochs" \
        --threads "$THREADS" --log-format json 2>"$out/td.err" >/dev/null || true
    td_wall=$(echo "$(date +%s.%N) - $start" | bc)
    read -r td_rate td_test < <("$py" - "$state/best/model.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
n = 60000 - 5000
print(n * c["epochs_trained"] / c["train_seconds"], c["test_accuracy"])
PY
)
    /usr/bin/time -v "$py" bench/pytorch_ref.py --spec "$out/spec.json" --data-dir "$DATA" --threads "$THREADS" \
        --epochs "$epochs" >"$out/py.json" 2>"$out/py.err"
    read -r py_rate py_test py_wall < <("$py" -c "import json; d=json.load(open('$out/py.json')); print(d['samples_per_sec'], d['test_accuracy'], d['wall_seconds'])")
    printf '%-10s %6s %12.0f %12.0f %7.2f %9.4f %9.4f %9.1f %9.1f %8s %8s\n' "$p" "$epochs" "$td_rate" "$py_rate" \
        "$(echo "$td_rate / $py_rate" | bc -l)" "$td_test" "$py_test" "$td_wall" "$py_wall" "$(rss_mb "$out/td.err")" "$(rss_mb "$out/py.err")"
done
echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | xargs), threads=$THREADS"
