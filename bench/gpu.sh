#!/usr/bin/env bash
# GPU check for a machine that has NVIDIA drivers and a python3 with torch 2.11
# but no network and no Rust: carry a `--features cuda` binary there
# (scripts/cuda-build-check.sh leaves one at target/release/trainerd-cuda) and run
#   bench/gpu.sh BINARY DATA_DIR [PRESET...]        default presets: fast bn3
# It points the loader at that torch's lib folder (the binary's rpath points at
# this repo's venv, which is not there), checks that `--device auto` picks the
# GPU, then trains each preset once with trainerd and once with
# bench/pytorch_ref.py on the GPU and prints wall time from process start,
# training seconds and test accuracy, plus the time to 99.0% / 99.5%.
set -euo pipefail
bin=$(realpath "$1")
data=$(realpath "$2")
shift 2
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(fast bn3)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
torch_lib=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
ldd "$bin" | grep -E 'torch_cuda|not found' || true
"$bin" --version
rows=$out/rows
printf '%-8s %-9s %9s %9s %9s\n' preset tool wall_s train_s test
for p in "${presets[@]}"; do
    "$bin" presets --json | "$py" -c "import json,sys; [json.dump(s, open('$out/spec.json','w')) for s in json.load(sys.stdin) if s['preset']=='$p']"
    state="$out/state-$p"
    start=$(date +%s.%N)
    # Exit 2 only says validation missed the study's target; the model is saved.
    code=0
    "$bin" train --data-dir "$data" --state-dir "$state" --preset "$p" --device "$device" \
        --max-trials 1 --log-format json >"$out/td-$p.log" 2>&1 || code=$?
    [ "$code" = 0 ] || [ "$code" = 2 ] || { tail -5 "$out/td-$p.log"; exit 1; }
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    grep -o '"device":"[^"]*"' "$out/td-$p.log" | head -1
    read -r train test < <("$py" -c "import json; c=json.load(open('$state/best/model.json')); print(c['train_seconds'], c['test_accuracy'])")
    printf '%-8s %-9s %9.2f %9.2f %9.4f\n' "$p" trainerd "$wall" "$train" "$test"
    echo "$p trainerd $wall $test" >>"$rows"
    "$py" bench/pytorch_ref.py --spec "$out/spec.json" --data-dir "$data" --device "$device" >"$out/py.json"
    read -r wall train test < <("$py" -c "import json; d=json.load(open('$out/py.json')); print(d['wall_seconds'], d['train_seconds'], d['test_accuracy'])")
    printf '%-8s %-9s %9.2f %9.2f %9.4f\n' "$p" pytorch "$wall" "$train" "$test"
    echo "$p pytorch $wall $test" >>"$rows"
done
for goal in 0.990 0.995; do
    for tool in trainerd pytorch; do
        awk -v g="$goal" -v t="$tool" '$2 == t && $4 >= g && (best == "" || $3 < best) { best = $3; p = $1 }
            END { printf "time to %.1f%% test, %s: %s\n", g * 100, t, best == "" ? "not reached" : sprintf("%.2f s (%s)", best, p) }' "$rows"
    done
done
