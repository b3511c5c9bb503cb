#!/usr/bin/env bash
# End-to-end check of the metrics endpoint with a real Prometheus server:
# trains briefly with --metrics-addr on 127.0.0.1, lets Prometheus (Debian's
# `prometheus` package, installed when missing) scrape it every second, and
# asks Prometheus' HTTP API whether the target is up and the values moved.
#
#   scripts/prometheus-check.sh           # exit 0 when all checks pass
#
# Env: TRAINERD_BIN (default target/debug/trainerd, built when missing),
# TRAINERD_TEST_MNIST_DIR (real MNIST; default: synthetic data).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
say() { echo "prometheus-check: $*" >&2; }

if ! command -v prometheus >/dev/null 2>&1; then
    say "installing prometheus (apt)"
    apt-get update -qq >/dev/null
    # No service start inside containers: the package's init scripts are not needed.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
bin=${TRAINERD_BIN:-}
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --quiet)
    bin=${CARGO_TARGET_DIR:-$root/target}/debug/trainerd
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=${TRAINERD_TEST_MNIST_DIR:-}
if [ -z "$data" ]; then
    data="$work/data"
    python3 "$root/scripts/tiny-mnist.py" "$data" 12000 1000
fi

# Long enough for many scrapes; it is stopped once the checks pass. Port 0:
# the kernel picks a free port, and the log line names it.
"$bin" train --data-dir "$data" --state-dir "$work/state" --preset fast --epochs 20 \
    --val-size 1000 --threads 1 --log-format json --metrics-addr 127.0.0.1:0 \
    >"$work/trainerd.log" 2>&1 &
trainer=$!
pids+=("$trainer")
mport=
for _ in $(seq 600); do
    mport=$(sed -n 's/.*metrics endpoint listening.*"addr":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/trainerd.log" | head -1)
    [ -n "$mport" ] && break
    kill -0 "$trainer" 2>/dev/null || { say "trainerd exited early"; tail -5 "$work/trainerd.log" >&2; exit 1; }
    sleep 0.2
done
[ -n "$mport" ] || { say "trainerd never opened its metrics endpoint"; exit 1; }
say "trainerd serves metrics on 127.0.0.1:$mport"

pport=$(free_port)
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: trainerd
    static_configs:
      - targets: ['127.0.0.1:$mport']
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

query() { # prints the first sample's value of an instant query, or nothing
    curl -fsS --max-time 5 "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}

# Each check: a PromQL expression that returns a sample once it holds.
checks=(
    'up{job="trainerd"} == 1'
    'max_over_time(trainerd_step[2m]) > min_over_time(trainerd_step[2m])'
    'trainerd_epoch >= 1'
    'trainerd_val_accuracy > 0'
    'trainerd_train_loss > 0'
    'trainerd_samples_per_second > 0'
    'trainerd_checkpoint_age_seconds >= 0'
    'trainerd_trial_steps > 0'
)
deadline=$((SECONDS + ${PROMETHEUS_CHECK_TIMEOUT:-600}))
pending=("${checks[@]}")
while [ ${#pending[@]} -gt 0 ]; do
    if [ $SECONDS -ge $deadline ]; then
        say "timed out; still failing: ${pending[*]}"
        tail -5 "$work/trainerd.log" >&2; tail -5 "$work/prometheus.log" >&2
        exit 1
    fi
    if ! kill -0 "$trainer" 2>/dev/null; then
        say "trainerd exited before all checks passed; still failing: ${pending[*]}"
        tail -5 "$work/trainerd.log" >&2
        exit 1
    fi
    left=()
    for q in "${pending[@]}"; do
        v=$(query "$q")
        if [ -n "$v" ]; then say "ok: $q  (value $v)"; else left+=("$q"); fi
    done
    pending=("${left[@]+"${left[@]}"}")
    [ ${#pending[@]} -eq 0 ] || sleep 2
done
steps=$(query 'count_over_time(trainerd_step[5m])')
say "all checks passed ($steps samples of trainerd_step scraped)"
