#!/usr/bin/env bash
# Does "target reached" hold on unseen data? Runs the default study with
# target 0.92 on Fashion-MNIST (Debian's dataset-fashion-mnist, IDX) and
# 0.99 on MNIST, SEEDS seeds each, and prints per run: seed, trials, stop
# reason, validation accuracy with its 95% interval, test accuracy with its
# interval, wall seconds; then "test >= target in X of N".
#
# usage: bench/trust.sh
# Env: SEEDS (default 5), LIMIT (images per split, default all: a smoke run
#      is LIMIT=600), STUDY_FLAGS (extra flags, e.g. "--max-trials 1 --epochs 1"),
#      FASHION (default /usr/share/datasets/fashion-mnist), MNIST (default
#      ../shared/data/mnist), OUT (default bench/out/trust), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-5}
limit=${LIMIT:-0}
out=${OUT:-bench/out/trust}
fashion=${FASHION:-/usr/share/datasets/fashion-mnist}
mnist=${MNIST:-../shared/data/mnist}
threads=${THREADS:-2}
for d in "$fashion" "$mnist"; do
    if [ ! -f "$d/train-images-idx3-ubyte.gz" ]; then
        echo "no IDX data in $d (Fashion-MNIST: apt-get install dataset-fashion-mnist)" >&2
        exit 1
    fi
done
cargo build --release --quiet --bin trainerd
bin=${CARGO_TARGET_DIR:-target}/release/trainerd
rm -rf "$out"
mkdir -p "$out"

# Copies the four IDX files of $1 into $2, the first LIMIT records of each split.
cut_idx() {
    python3 - "$1" "$2" "$limit" <<'PY'
import gzip, os, struct, sys
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
    with gzip.open(os.path.join(src, name + ".gz")) as f:
        data = f.read()
    rank = data[3]
    dims = list(struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank]))
    body = data[4 + 4 * rank:]
    if limit > 0 and dims[0] > limit:
        per = len(body) // dims[0]
        dims[0], body = limit, body[:limit * per]
    with open(os.path.join(dst, name), "wb") as f:
        f.write(data[:4] + struct.pack(">" + "I" * rank, *dims) + body)
PY
}

hits=0
runs=0
printf '%-8s %-5s %-6s %-17s %-26s %-26s %s\n' set seed trials stop val test wall_s
for set in fashion:0.92 mnist:0.99; do
    name=${set%%:*}
    target=${set##*:}
    src=$fashion
    [ "$name" = mnist ] && src=$mnist
    cut_idx "$src" "$out/$name-data"
    for seed in $(seq 1 "$seeds"); do
        state="$out/$name-$seed"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$bin" train --data-dir "$out/$name-data" --state-dir "$state" --seed "$seed" \
            --target-accuracy "$target" --threads "$threads" ${STUDY_FLAGS:-} \
            >"$state.log" 2>&1 || true
        wall=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
            "$start" "$(date +%s.%N)")
        row=$(python3 - "$state" "$target" <<'PY'
import json, os, sys
state, target = sys.argv[1], float(sys.argv[2])
card = json.load(open(os.path.join(state, "best", "model.json")))
trials, stop = 0, "?"
for line in open(os.path.join(state, "events.jsonl")):
    e = json.loads(line)
    trials += e.get("kind") == "trial_finished"
    if e.get("kind") in ("target_reached", "budget_exhausted"):
        stop = e["kind"]
def shown(acc, i):
    return f"{acc:.4f} [{i[0]:.4f},{i[1]:.4f}]" if i else f"{acc:.4f}"
val = shown(card["val_accuracy"], card.get("val_interval"))
test = shown(card["test_accuracy"], card.get("test_interval"))
print(trials, stop, val, test, int(card["test_accuracy"] >= target), sep="|")
PY
        ) || row="0|failed|-|-|0"
        IFS='|' read -r trials stop val test hit <<<"$row"
        printf '%-8s %-5s %-6s %-17s %-26s %-26s %s\n' "$name" "$seed" "$trials" "$stop" "$val" "$test" "$wall"
        hits=$((hits + hit))
        runs=$((runs + 1))
    done
done
echo "test >= target in $hits of $runs"
