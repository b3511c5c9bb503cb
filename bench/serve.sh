#!/usr/bin/env bash
# Serving benchmark: `trainerd serve` on a champion trained on tiny generated
# data, driven by examples/serve_bench.rs over kept-alive HTTP/1.1
# connections: requests/s and p50/p99 latency for single-image requests at
# 1, 8 and 64 concurrent clients, images/s for batch-64 requests, each as JSON,
# as Triton's binary tensor data and over gRPC (raw_input_contents), and beside
# them the raw forward pass of each engine (libtorch, onnxruntime) on batches
# of 64 in a loop (and single-image latency), and onnxruntime's own Python
# throughput on the same best/model.onnx with the same threads
# (bench/ort_throughput.py): the target is served images/s at batch 64 of at
# least 0.9x that. Each load run also prints the CPU seconds of the client
# and of the server, and the served images per server CPU-second, beside
# onnxruntime's images per CPU-second: where client and server share the
# cores, this shows what the load generator's own share costs.
#   bench/serve.sh
#   PRESET=fast   the champion's architecture
#   SECONDS_EACH=10  length of each run
#   THREADS=2     cores for the server (taskset) and its forward pass's threads
#   ENGINE=auto   the server's --engine (auto | onnxruntime | libtorch)
#   CLIENT_CORES= cores for the load generator (default: the others, or the same)
# Timings mean something only on a quiet machine (check `uptime` first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin trainerd --example serve_bench
PRESET=${PRESET:-fast}
SECONDS_EACH=${SECONDS_EACH:-10}
THREADS=${THREADS:-2}
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
kill "$server"; wait "$server" 2>/dev/null || true; server=
THREADS=$THREADS taskset -c "$cores" "$load" raw "$work/state" 64 "$SECONDS_EACH"
taskset -c "$cores" .venv/bin/python bench/ort_throughput.py "$work/state/best/model.onnx" \
    "$THREADS" 64 "$SECONDS_EACH"
