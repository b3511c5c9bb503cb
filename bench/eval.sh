#!/usr/bin/env bash
# Training's evaluation passes, side by side: the validation pass at each
# epoch's end with `--engine libtorch` (trainerd's libtorch path), with
# onnxruntime (the default on the CPU, `train::eval::ort`), and PyTorch's
# (bench/pytorch_ref.py, same preset, threads, data and batch of 512).
#   bench/eval.sh [PRESET...]      default: fast bn3
#   THREADS=2 EPOCHS=1 DATA=../shared/data/mnist
# One row per preset: validation seconds per epoch (5,000 records) each, the
# ratio libtorch / onnxruntime, and the test accuracy each trainerd run
# reached (the same seed: the passes must not change what is learnt beyond
# float rounding). Time it on a quiet machine only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null 2>&1
cargo build --release --quiet
THREADS=${THREADS:-2}
DATA=${DATA:-../shared/data/mnist}
EPOCHS=${EPOCHS:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bin=target/release/trainerd
py=.venv/bin/python

# eval_of LOG: mean eval_ms of the log's epoch lines, in seconds.
eval_of() {
    "$py" - "$1" <<'PY'
import json, sys
ms = []
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    f = r.get("fields", r)
    if f.get("message") == "epoch finished" and "eval_ms" in f:
        ms.append(float(f["eval_ms"]))
print(f"{sum(ms) / len(ms) / 1e3:.3f}" if ms else "nan")
PY
}

# run_trainerd PRESET ENGINE: prints "eval_s test_accuracy".
run_trainerd() {
    local state="$out/state-$1-$2"
    "$bin" train --data-dir "$DATA" --state-dir "$state" --preset "$1" --epochs "$EPOCHS" \
        --threads "$THREADS" --max-trials 1 --engine "$2" --log-format json \
        >"$out/$1-$2.log" 2>&1 || true
    echo "$(eval_of "$out/$1-$2.log") $("$py" -c "import json; print(json.load(open('$state/best/model.json'))['test_accuracy'])" 2>/dev/null || echo nan)"
}

echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p'), threads $THREADS, epochs $EPOCHS, $(date -u +%F)"
printf '%-8s %12s %12s %12s %9s %10s %10s\n' preset libtorch_s ort_s pytorch_s lt/ort acc_lt acc_ort
for preset in "${@:-fast bn3}"; do
    for p in $preset; do
        read -r lt acc_lt < <(run_trainerd "$p" libtorch)
        read -r ort acc_ort < <(run_trainerd "$p" onnxruntime)
        "$bin" presets --json | "$py" -c "import json,sys; [json.dump(s, open('$out/spec.json','w')) for s in json.load(sys.stdin) if s['preset']=='$p']"
        pt=$("$py" bench/pytorch_ref.py --spec "$out/spec.json" --data-dir "$DATA" --threads "$THREADS" \
            --epochs "$EPOCHS" | "$py" -c "import json,sys; print(f\"{json.load(sys.stdin)['eval_seconds_per_epoch']:.3f}\")")
        ratio=$(echo "scale=2; $lt / $ort" | bc 2>/dev/null || echo nan)
        printf '%-8s %12s %12s %12s %9s %10s %10s\n' "$p" "$lt" "$ort" "$pt" "$ratio" "$acc_lt" "$acc_ort"
    done
done
