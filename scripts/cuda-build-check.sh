#!/usr/bin/env bash
# The CUDA build, checked on a machine without a GPU (CI): `--features cuda`
# compiles, keeps libtorch_cuda linked (Rust's --as-needed would drop it), and
# the binary still trains on the CPU with `--device auto`, while `--device
# cuda` fails with exit 78 and a message that says why. Leaves the CUDA
# binary at target/release/trainerd-cuda and target/release/trainerd as the
# default (CPU) build. On a GPU machine, bench/gpu.sh is the check to run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail() { echo "cuda-build-check: FAIL: $*" >&2; exit 1; }

cargo build --release --locked --features cuda
cp target/release/trainerd target/release/trainerd-cuda
cargo build --release --locked
bin=target/release/trainerd-cuda

readelf -d "$bin" | grep -q 'NEEDED.*libtorch_cuda' \
    || fail "libtorch_cuda.so is not a NEEDED library of $bin (dropped by --as-needed?)"
readelf -d target/release/trainerd | grep -q 'NEEDED.*libtorch_cuda' \
    && fail "the default build links libtorch_cuda; only --features cuda should"
echo "ok: $bin needs libtorch_cuda.so; the default build does not"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/tiny-mnist.py "$work/data" 7000 500 >/dev/null
have_gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then have_gpu=1; fi

code=0
"$bin" train --data-dir "$work/data" --state-dir "$work/auto" --preset linear --max-trials 1 \
    --device auto --log-format json >"$work/auto.log" 2>&1 || code=$?
{ [ "$code" = 0 ] || [ "$code" = 2 ]; } || { tail -5 "$work/auto.log"; fail "--device auto exited $code"; }
want=Cpu; [ "$have_gpu" = 1 ] && want=Cuda
grep -q "\"device\":\"$want" "$work/auto.log" || fail "--device auto did not pick $want"
[ -f "$work/auto/best/model.safetensors" ] || fail "--device auto saved no model"
echo "ok: --device auto trains on $want and saves the model"

if [ "$have_gpu" = 0 ]; then
    code=0
    "$bin" train --data-dir "$work/data" --state-dir "$work/cuda" --preset linear --max-trials 1 \
        --device cuda >"$work/cuda.log" 2>&1 || code=$?
    [ "$code" = 78 ] || fail "--device cuda without a GPU exited $code, want 78"
    grep -q "cuda requested but no CUDA device is usable" "$work/cuda.log" \
        || fail "--device cuda without a GPU: unclear message: $(tail -1 "$work/cuda.log")"
    echo "ok: --device cuda without a GPU exits 78: $(tail -1 "$work/cuda.log")"
fi
