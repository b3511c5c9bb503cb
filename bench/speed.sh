#!/usr/bin/env bash
# Side-by-side speed benchmark: trainerd vs the PyTorch reference
# (bench/pytorch_ref.py) with the same preset, recipe, threads and data.
#   bench/speed.sh [PRESET...]        default: fast reference
#   THREADS=2 EPOCHS=1 DATA=../shared/data/mnist
#   PY_MALLOC=tuned  runs PyTorch with the glibc malloc thresholds trainerd
#                    sets for itself (src/train/malloc.rs); default: as shipped
#   REPEAT=N         N rounds over the presets, each pair back to back, then
#                    the min / median / max of each ratio (the machine drifts)
# Prints one table row per preset and round (one trial each, `--max-trials 1`):
# samples/s each and the ratio, test accuracy, wall time from process start
# to the saved model and the ratio, and peak resident memory; then the time to
# 99.0% and 99.5% test accuracy (the fastest preset that got there).
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
py_env=()
if [ "${PY_MALLOC:-}" = tuned ]; then
    py_env=(GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864)
fi

rss_mb() { awk '/Maximum resident set size/ {printf "%.0f", $NF/1024}' "$1"; }

printf '%-10s %6s %11s %10s %6s %8s %8s %8s %8s %6s %6s %6s\n' preset epochs trainerd/s pytorch/s ratio td_test py_test td_wall py_wall ratio td_MB py_MB
rows=$out/rows
repeat=${REPEAT:-1}
for round in $(seq "$repeat"); do
for p in "${presets[@]}"; do
    "$bin" presets --json | "$py" -c "import json,sys; [json.dump(s, open('$out/spec.json','w')) for s in json.load(sys.stdin) if s['preset']=='$p']"
    epochs=${EPOCHS:-$("$py" -c "import json; print(json.load(open('$out/spec.json'))['recipe']['epochs'])")}
    state="$out/state-$p-$round"
    start=$(date +%s.%N)
    /usr/bin/time -v "$bin" train --data-dir "$DATA" --state-dir "$state" --preset "$p" --epochs "$epochs" \
        --threads "$THREADS" --max-trials 1 --log-format json 2>"$out/td.err" >/dev/null || true
    td_wall=$(echo "$(date +%s.%N) - $start" | bc)
    read -r td_rate td_test < <("$py" - "$state/best/model.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
n = 60000 - 5000
print(n * c["epochs_trained"] / c["train_seconds"], c["test_accuracy"])
PY
)
    /usr/bin/time -v env "${py_env[@]}" "$py" bench/pytorch_ref.py --spec "$out/spec.json" --data-dir "$DATA" --threads "$THREADS" \
        --epochs "$epochs" >"$out/py.json" 2>"$out/py.err"
    read -r py_rate py_test py_wall < <("$py" -c "import json; d=json.load(open('$out/py.json')); print(d['samples_per_sec'], d['test_accuracy'], d['wall_seconds'])")
    speedup=$(echo "$py_wall / $td_wall" | bc -l)
    rate_ratio=$(echo "$td_rate / $py_rate" | bc -l)
    printf '%-10s %6s %11.0f %10.0f %6.2f %8.4f %8.4f %8.1f %8.1f %6.2f %6s %6s\n' "$p" "$epochs" "$td_rate" "$py_rate" \
        "$rate_ratio" "$td_test" "$py_test" "$td_wall" "$py_wall" "$speedup" \
        "$(rss_mb "$out/td.err")" "$(rss_mb "$out/py.err")"
    echo "$p $td_test $td_wall $py_test $py_wall $rate_ratio $speedup" >>"$rows"
done
done
if [ "$repeat" -gt 1 ]; then
    "$py" - "$rows" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    f = line.split()
    by.setdefault(f[0], []).append((float(f[5]), float(f[6])))
print(f"{'preset':<10} {'runs':>4}  samples/s ratio min/median/max   wall ratio min/median/max")
for p, v in by.items():
    r, w = [x[0] for x in v], [x[1] for x in v]
    print(f"{p:<10} {len(v):>4}  {min(r):.2f} / {statistics.median(r):.2f} / {max(r):.2f}"
          f"{'':>14}{min(w):.2f} / {statistics.median(w):.2f} / {max(w):.2f}")
PY
fi
# Time to an accuracy: the shortest wall time among the presets whose saved
# model reached it (each tool judged on its own runs).
for goal in 0.990 0.995; do
    awk -v g="$goal" '
        $2 >= g && (td == "" || $3 < td) { td = $3; tp = $1 }
        $4 >= g && (py == "" || $5 < py) { py = $5; pp = $1 }
        END {
            printf "time to %.1f%% test: trainerd %s, pytorch %s", g * 100,
                td == "" ? "not reached" : sprintf("%.1f s (%s)", td, tp),
                py == "" ? "not reached" : sprintf("%.1f s (%s)", py, pp)
            if (td != "" && py != "") printf ", ratio %.2f", py / td
            printf "\n"
        }' "$rows"
done
echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | xargs), threads=$THREADS"
