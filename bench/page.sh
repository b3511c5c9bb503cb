#!/usr/bin/env bash
# The live page's cost to training (issue 27: at most 2% fewer samples/s
# with five pages open). Runs one `trainerd train` trial with no page open,
# then the same with PAGES open pages, each an SSE stream (`curl -N` on
# /api/v1/stream) that also asks for the study, the events and the champion
# every second (more often than a page does, which asks only on changes);
# ROUNDS such pairs back to back (the machine drifts). Prints each run's
# median samples/s (its "training" log lines, one every 5 s) and the ratio.
#   DATA=../shared/data/mnist PRESET=fast EPOCHS=2 THREADS=2 PAGES=5 ROUNDS=3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/mnist}
PRESET=${PRESET:-fast}
EPOCHS=${EPOCHS:-2}
THREADS=${THREADS:-2}
PAGES=${PAGES:-5}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-19480}
bin=target/release/trainerd
[ -x "$bin" ] || cargo build --release --bin trainerd
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

median_rate() {
    python3 - "$1" <<'PY'
import json, statistics, sys
rates = []
for line in open(sys.argv[1]):
    try:
        v = json.loads(line)
    except ValueError:
        continue
    if v.get("message") == "training" and v.get("samples_per_sec"):
        rates.append(v["samples_per_sec"])
print(int(statistics.median(rates[1:] or rates)) if rates else 0)
PY
}

# one_run LOG PAGES: a fresh state dir, one trial, PAGES pages open meanwhile.
one_run() {
    local log=$1 pages=$2 state="$work/state"
    rm -rf "$state"
    TRAINERD_LOG_FORMAT=json TRAINERD_THREADS=$THREADS "$bin" train --data-dir "$DATA" \
        --state-dir "$state" --preset "$PRESET" --epochs "$EPOCHS" --max-trials 1 \
        --target-accuracy 0.01 --metrics-addr "127.0.0.1:$PORT" 2>"$log" &
    local trainer=$!
    pids=("$trainer")
    if [ "$pages" -gt 0 ]; then
        until curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz"; do sleep 0.2; done
        for _ in $(seq "$pages"); do
            curl -s -N -o /dev/null "http://127.0.0.1:$PORT/api/v1/stream" &
            pids+=($!)
            (while kill -0 "$trainer" 2>/dev/null; do
                s=$(curl -s "http://127.0.0.1:$PORT/api/v1/status" | python3 -c 'import json,sys; print((json.load(sys.stdin).get("study") or {}).get("id") or "")' 2>/dev/null || true)
                [ -n "$s" ] && curl -s -o /dev/null "http://127.0.0.1:$PORT/api/v1/studies/$s"
                curl -s -o /dev/null "http://127.0.0.1:$PORT/api/v1/events?since=0"
                curl -s -o /dev/null "http://127.0.0.1:$PORT/api/v1/champion"
                sleep 1
            done) &
            pids+=($!)
        done
    fi
    wait "$trainer" || true
    for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
    pids=()
}

printf '| round | samples/s, no page | samples/s, %s pages | ratio |\n| --- | --- | --- | --- |\n' "$PAGES"
for r in $(seq "$ROUNDS"); do
    one_run "$work/quiet.log" 0
    one_run "$work/pages.log" "$PAGES"
    q=$(median_rate "$work/quiet.log")
    p=$(median_rate "$work/pages.log")
    printf '| %s | %s | %s | %s |\n' "$r" "$q" "$p" "$(python3 -c "print(f'{$p / max($q, 1):.3f}')")"
done
