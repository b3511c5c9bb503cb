#!/usr/bin/env bash
# Serving benchmark: `trainerd serve` on a champion trained on tiny generated
# data, driven by examples/serve_bench.rs over kept-alive HTTP/1.1
# connections: requests/s and p50/p99 latency for single-image requests at
# 1, 8 and 64 concurrent clients, images/s for batch-64 requests, each as JSON,
# as Triton's binary tensor data and over gRPC (raw_input_contents), and beside
# them the raw forward pass of each engine (libtorch, onnxruntime) on batches
# of 64 in a loop (and single-image latency), and onnxruntime's own Python
# throughput on the same best/model.onnx with the same threads
# (bench/ort_throughput.py, as one session and as one single-threaded session
# per thread), in ROUNDS interleaved rounds with their medians: the target
# is served images/s at batch 64 of at least 0.9x that. Each load run also
# prints the CPU seconds of the client and of the server, and the served
# images per server CPU-second, beside onnxruntime's images per CPU-second:
# where client and server share the cores, this shows what the load
# generator's own share costs.
#   bench/serve.sh
#   PRESET=fast   the champion's architecture
#   SECONDS_EACH=10  length of each run
#   THREADS=2     cores for the server (taskset) and its forward pass's threads
#   ROUNDS=3      side-by-side rounds of served and onnxruntime's own batch-64 runs
#   ENGINE=auto   the server's --engine (auto | onnxruntime | libtorch)
#   CLIENT_CORES= cores for the load generator (default: the others, or the same)
# Timings mean something only on a quiet machine (check `uptime` first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin trainerd --example serve_bench
PRESET=${PRESET:-fast}
SECONDS_EACH=${SECONDS_EACH:-10}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
bin=$PWD/target/release/trainerd
load=$PWD/target/release/examples/serve_bench
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
python3 scripts/tiny-mnist.py "$work/data" 1000 200 1 >/dev/null
TRAINERD_LOG_FORMAT=json "$bin" train --data-dir "$work/data" --state-dir "$work/state" \
    --preset "$PRESET" --epochs 1 --val-size 100 --max-trials 1 --target-accuracy 0.01 \
    --threads "$THREADS" >/dev/null 2>&1
cores=$(seq -s, 0 $((THREADS - 1)))
n=$(nproc)
client_cores=${CLIENT_CORES:-$([ "$n" -gt "$THREADS" ] && seq -s, "$THREADS" $((n - 1)) || echo "$cores")}
port=$((20000 + RANDOM % 20000))
gport=$((port + 1))
TRAINERD_LOG_FORMAT=json taskset -c "$cores" "$bin" serve --state-dir "$work/state" \
    --addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$gport" --threads "$THREADS" --engine "${ENGINE:-auto}" 2>"$work/serve.log" &
server=$!
for _ in $(seq 600); do
    "$bin" serve --probe --addr "127.0.0.1:$port" >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin" serve --probe --addr "127.0.0.1:$port"
engine=$(grep -o '"engine":"[a-z_]*"' "$work/serve.log" | head -n 1 | cut -d'"' -f4)
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $n cores; server on cores $cores, clients on $client_cores; preset $PRESET; engine $engine"
for form in json binary grpc; do
    p=$port; [ "$form" = grpc ] && p=$gport
    for clients in 1 8 64; do
        SERVER_PID=$server taskset -c "$client_cores" "$load" load "127.0.0.1:$p" "$clients" 1 "$SECONDS_EACH" "$form"
    done
    SERVER_PID=$server taskset -c "$client_cores" "$load" load "127.0.0.1:$p" 8 64 "$SECONDS_EACH" "$form"
done
# Side by side, in ROUNDS rounds (the cores' speed drifts from run to run):
# served batch-64 images/s (binary HTTP, gRPC) and onnxruntime's own, as one
# session of THREADS threads and as THREADS single-threaded sessions (the
# server's default layout); then the medians and their ratios.
echo "side by side, $ROUNDS rounds of $SECONDS_EACH s"
for _ in $(seq "$ROUNDS"); do
    for form in binary grpc; do
        p=$port; [ "$form" = grpc ] && p=$gport
        SERVER_PID=$server taskset -c "$client_cores" "$load" load "127.0.0.1:$p" 8 64 "$SECONDS_EACH" "$form"
    done
    for inst in 1 "$THREADS"; do
        taskset -c "$cores" .venv/bin/python bench/ort_throughput.py "$work/state/best/model.onnx" \
            "$THREADS" 64 "$SECONDS_EACH" "$inst"
    done
done | tee "$work/rounds"
python3 - "$work/rounds" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.search(r"images/s=\s*([\d.]+)", line)
    if not m or "images/request=64" not in line and "onnxruntime" not in line:
        continue
    kind = re.search(r"x threads=(\S+)", line)
    key = f"onnxruntime {kind.group(1)}" if kind else line.split()[0]
    runs.setdefault(key, []).append(float(m.group(1)))
med = {k: statistics.median(v) for k, v in runs.items()}
print("medians, images/s at batch 64: " + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
for k in ("binary", "grpc"):
    ratios = ", ".join(f"{med[k] / v:.2f}x of {o}" for o, v in med.items() if o.startswith("onnx"))
    print(f"  served {k}: {ratios}")
PY
kill "$server"; wait "$server" 2>/dev/null || true; server=
THREADS=$THREADS taskset -c "$cores" "$load" raw "$work/state" 64 "$SECONDS_EACH"
