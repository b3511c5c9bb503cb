#!/usr/bin/env bash
# Side-by-side speed benchmark: trainerd vs the PyTorch reference
# (bench/pytorch_ref.py) with the same preset, recipe, threads and data.
#   bench/speed.sh [PRESET...]        default: fast reference
#   THREADS=2 EPOCHS=1 DATA=../shared/data/mnist
#   PY_MALLOC=tuned  runs PyTorch with the glibc malloc thresholds trainerd
#                    sets for itself (src/train/malloc.rs); default: as shipped
#   REPEAT=N         N rounds over the presets, each pair back to back, then
#                    the min / median / max of each ratio (the machine drifts)
#   TD_ENV="K=V ..." extra environment for trainerd only (to compare settings)
# A PRESET may also be a trial spec file (JSON, as `trainerd presets --json`
# prints one entry), to compare recipes.
# Prints one table row per preset and round (one trial each, `--max-trials 1`):
# samples/s each and the ratio, test accuracy, wall time from process start
# to the saved model and the ratio, and peak resident memory; then the time to
# 99.0% and 99.5% test accuracy (the fastest preset that got there).
#
# Two other modes (default preset: fast):
#   SEEDS=N          seed sweep: seeds 1..N, both tools with the same seed; one
#                    row per seed, then per tool the mean / min / standard error
#                    of test accuracy, how many seeds reached 99.0% and 99.5%,
#                    the mean gap (trainerd - pytorch) with its standard error,
#                    and the mean wall time to 99.0% / 99.5% over the seeds
#                    that reached it.
#   CONTENTION=1     a quiet run of both tools, then the same with HOGS (default
#                    1) competing CPU-bound processes started (and killed) by
#                    this script: wall time and samples/s each, and the ratio
#                    contended / quiet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null 2>&1
cargo build --release --quiet
THREADS=${THREADS:-2}
DATA=${DATA:-../shared/data/mnist}
out=$(mktemp -d)
hogs=()
cleanup() {
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$out"
}
trap cleanup EXIT
bin=target/release/trainerd
py=.venv/bin/python
py_env=()
if [ "${PY_MALLOC:-}" = tuned ]; then
    py_env=(GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864)
fi
read -r -a td_env <<<"${TD_ENV:-}"

rss_mb() { awk '/Maximum resident set size/ {printf "%.0f", $NF/1024}' "$1"; }

# spec_of PRESET: writes the preset's spec (or the trial spec file PRESET names)
# to $out/spec.json, prints its epochs.
spec_of() {
    if [ -f "$1" ]; then
        cp "$1" "$out/spec.json"
    else
        "$bin" presets --json | "$py" -c "import json,sys; [json.dump(s, open('$out/spec.json','w')) for s in json.load(sys.stdin) if s['preset']=='$1']"
    fi
    echo "${EPOCHS:-$("$py" -c "import json; print(json.load(open('$out/spec.json'))['recipe']['epochs'])")}"
}

# run_trainerd PRESET EPOCHS SEED TAG: prints "samples/s test_accuracy wall_s".
run_trainerd() {
    local state="$out/state-$4" start wall
    start=$(date +%s.%N)
    /usr/bin/time -v env "${td_env[@]}" "$bin" train --data-dir "$DATA" --state-dir "$state" \
        --preset "$1" --epochs "$2" --seed "$3" --threads "$THREADS" --max-trials 1 \
        --log-format json 2>"$out/td.err" >/dev/null || true
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    "$py" - "$state/best/model.json" "$wall" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
n = 60000 - 5000
print(n * c["epochs_trained"] / c["train_seconds"], c["test_accuracy"], sys.argv[2])
PY
}

# run_pytorch EPOCHS SEED: prints "samples/s test_accuracy wall_s" (spec.json).
run_pytorch() {
    /usr/bin/time -v env "${py_env[@]}" "$py" bench/pytorch_ref.py --spec "$out/spec.json" \
        --data-dir "$DATA" --threads "$THREADS" --epochs "$1" --seed "$2" >"$out/py.json" 2>"$out/py.err"
    "$py" -c "import json; d=json.load(open('$out/py.json')); print(d['samples_per_sec'], d['test_accuracy'], d['wall_seconds'])"
}

machine() {
    echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | xargs), threads=$THREADS"
}

# The default mode: rows per preset and round, ratios, time to an accuracy.
side_by_side() {
    local rows=$out/rows repeat=${REPEAT:-1} p epochs td_rate td_test td_wall py_rate py_test py_wall
    printf '%-10s %6s %11s %10s %6s %8s %8s %8s %8s %6s %6s %6s\n' preset epochs trainerd/s pytorch/s ratio td_test py_test td_wall py_wall ratio td_MB py_MB
    for round in $(seq "$repeat"); do
        for p in "$@"; do
            epochs=$(spec_of "$p")
            read -r td_rate td_test td_wall < <(run_trainerd "$p" "$epochs" 1 "${p##*/}-$round")
            read -r py_rate py_test py_wall < <(run_pytorch "$epochs" 1)
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
}

# SEEDS=N: one row per preset and seed, then the summary per preset.
seed_sweep() {
    local rows=$out/seeds p epochs s td_rate td_test td_wall py_rate py_test py_wall
    printf '%-10s %4s %8s %8s %8s %8s %8s\n' preset seed td_test py_test gap td_wall py_wall
    for p in "$@"; do
        epochs=$(spec_of "$p")
        for s in $(seq "$SEEDS"); do
            read -r td_rate td_test td_wall < <(run_trainerd "$p" "$epochs" "$s" "${p##*/}-seed$s")
            read -r py_rate py_test py_wall < <(run_pytorch "$epochs" "$s")
            printf '%-10s %4s %8.4f %8.4f %+8.4f %8.1f %8.1f\n' "${p##*/}" "$s" "$td_test" "$py_test" \
                "$(echo "$td_test - $py_test" | bc -l)" "$td_wall" "$py_wall"
            echo "${p##*/} $s $td_test $td_wall $py_test $py_wall" >>"$rows"
        done
    done
    "$py" - "$rows" <<'PY'
import statistics as st, sys
by = {}
for line in open(sys.argv[1]):
    f = line.split()
    by.setdefault(f[0], []).append([float(x) for x in f[2:]])
se = lambda v: st.stdev(v) / len(v) ** 0.5 if len(v) > 1 else float("nan")
for p, rows in by.items():
    print(f"\n{p}, {len(rows)} seeds (test accuracy in %)")
    print(f"{'tool':<9} {'mean':>7} {'min':>7} {'se':>6} {'>=99.0':>7} {'>=99.5':>7}"
          f"  time to 99.0% (n)   time to 99.5% (n)")
    for tool, (ai, wi) in (("trainerd", (0, 1)), ("pytorch", (2, 3))):
        acc = [100 * r[ai] for r in rows]
        line = (f"{tool:<9} {st.mean(acc):7.3f} {min(acc):7.3f} {se(acc):6.3f} "
                f"{sum(a >= 99.0 for a in acc):7d} {sum(a >= 99.5 for a in acc):7d}")
        for goal in (99.0, 99.5):
            hit = [r[wi] for r in rows if 100 * r[ai] >= goal]
            line += (f"  {st.mean(hit):8.1f} s ({len(hit):2d})" if hit
                     else f"  {'not reached':>11} ( 0)")
        print(line)
    gap = [100 * (r[0] - r[2]) for r in rows]
    print(f"gap trainerd - pytorch: mean {st.mean(gap):+.3f} points, standard error {se(gap):.3f}")
PY
}

# Starts one busy-looping process per HOGS, remembered for cleanup.
start_hogs() {
    for _ in $(seq "${HOGS:-1}"); do
        sh -c 'while :; do :; done' &
        hogs+=("$!")
    done
}

stop_hogs() {
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    hogs=()
}

# CONTENTION=1: per preset, quiet runs of both tools, then contended ones.
contention() {
    local p epochs tq tc pq pc
    printf '%-10s %-9s %8s %8s %6s %10s %10s %6s\n' preset tool quiet_s busy_s ratio quiet/s busy/s ratio
    for p in "$@"; do
        epochs=$(spec_of "$p")
        tq=$(run_trainerd "$p" "$epochs" 1 "${p##*/}-quiet")
        pq=$(run_pytorch "$epochs" 1)
        start_hogs
        tc=$(run_trainerd "$p" "$epochs" 1 "${p##*/}-busy")
        pc=$(run_pytorch "$epochs" 1)
        stop_hogs
        for row in "trainerd $tq $tc" "pytorch $pq $pc"; do
            # tool quiet(rate test wall) busy(rate test wall)
            echo "$p $row" | awk '{printf "%-10s %-9s %8.1f %8.1f %6.2f %10.0f %10.0f %6.2f\n",
                $1, $2, $5, $8, $8 / $5, $3, $6, $6 / $3}'
        done
    done
    echo "contention: ${HOGS:-1} competing busy-loop process(es) during the busy runs"
}

presets=("$@")
if [ -n "${SEEDS:-}" ]; then
    [ ${#presets[@]} -gt 0 ] || presets=(fast)
    seed_sweep "${presets[@]}"
elif [ -n "${CONTENTION:-}" ]; then
    [ ${#presets[@]} -gt 0 ] || presets=(fast)
    contention "${presets[@]}"
else
    [ ${#presets[@]} -gt 0 ] || presets=(fast reference)
    side_by_side "${presets[@]}"
fi
[ ${#td_env[@]} -eq 0 ] || echo "trainerd environment: ${td_env[*]}"
machine
