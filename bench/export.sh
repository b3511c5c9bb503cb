#!/usr/bin/env bash
# Export benchmark: for each preset, one short trial on tiny generated data,
# then `trainerd export --format all`; prints the export's wall time and the
# size of each file, then onnxruntime vs libtorch latency (bench/export_latency.py).
#   bench/export.sh [PRESET...]     default: linear mlp fast bn3 deep reference
#   THREADS=2   cores for the latency runs (taskset) and libtorch
#   LATENCY=0   skip the latency runs
# Timings mean something only on a quiet machine (check `uptime` first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null 2>&1
scripts/setup-interop.sh >/dev/null 2>&1
cargo build --release --quiet
THREADS=${THREADS:-2}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(linear mlp fast bn3 deep reference)
bin=$PWD/target/release/trainerd
py=$PWD/.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/tiny-mnist.py "$work/data" 1000 200 1 >/dev/null
cores=$(seq -s, 0 $((THREADS - 1)))
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; latency on cores $cores"
printf '%-10s %9s %12s %12s %12s %14s\n' preset export_s safetensors model.onnx model.pt config.pbtxt
for p in "${presets[@]}"; do
    state="$work/$p/state" out="$work/$p/export"
    TRAINERD_LOG_FORMAT=json "$bin" train --data-dir "$work/data" --state-dir "$state" --preset "$p" \
        --epochs 1 --val-size 100 --max-trials 1 --target-accuracy 0.01 --threads "$THREADS" >/dev/null 2>&1
    start=$(date +%s.%N)
    "$bin" export --state-dir "$state" --out "$out" >/dev/null 2>&1
    end=$(date +%s.%N)
    size() { stat -c %s "$out/$1"; }
    printf '%-10s %9.2f %12s %12s %12s %14s\n' "$p" "$(echo "$end - $start" | bc)" \
        "$(size model.safetensors)" "$(size model.onnx)" "$(size model.pt)" \
        "$(size repository/trainerd/config.pbtxt)"
done
[ "${LATENCY:-1}" = 1 ] || exit 0
for p in "${presets[@]}"; do
    taskset -c "$cores" "$py" bench/export_latency.py "$p" "$work/$p/export" "$THREADS"
done
