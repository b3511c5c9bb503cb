#!/usr/bin/env bash
# The live page's cost to training (issue 27: at most 2% fewer samples/s
# with five pages open). Runs one `trainerd train` trial with no page open,
# then the same with PAGES open pages: the compiled client
# examples/page_load.rs, whose threads each follow /api/v1/stream and fetch
# the study, the events and the champion when a status names a new revision,
# as the page's app.js does (a browser's own rendering is the viewer's CPU,
# not the server's, so it is left out); ROUNDS such pairs back to back (the
# machine drifts; the order alternates). Prints each run's median samples/s
# (its "training" log lines, one every 5 s), the ratio, and what the pages
# received (one page's first load, statuses, fetches, bytes in all).
#   DATA=../shared/data/mnist PRESET=fast EPOCHS=6 THREADS=2 PAGES=5 ROUNDS=4
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/mnist}
PRESET=${PRESET:-fast}
EPOCHS=${EPOCHS:-6}
THREADS=${THREADS:-2}
PAGES=${PAGES:-5}
ROUNDS=${ROUNDS:-4}
PORT=${PORT:-19480}
bin=target/release/trainerd
cargo build --release --bin trainerd --example page_load >&2
client=target/release/examples/page_load
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
        "$client" "127.0.0.1:$PORT" "$pages" >"$log.pages" &
        pids+=($!)
    fi
    wait "$trainer" || true
    for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

printf '| round | samples/s, no page | samples/s, %s pages | ratio | the pages received |\n| --- | --- | --- | --- | --- |\n' "$PAGES"
for r in $(seq "$ROUNDS"); do
    # Alternate which goes first, so drift and order do not favour one side.
    if [ $((r % 2)) -eq 1 ]; then
        one_run "$work/quiet.log" 0
        one_run "$work/pages.log" "$PAGES"
    else
        one_run "$work/pages.log" "$PAGES"
        one_run "$work/quiet.log" 0
    fi
    q=$(median_rate "$work/quiet.log")
    p=$(median_rate "$work/pages.log")
    printf '| %s | %s | %s | %s | %s |\n' "$r" "$q" "$p" "$(python3 -c "print(f'{$p / max($q, 1):.3f}')")" \
        "$(cat "$work/pages.log.pages" 2>/dev/null || echo '?')"
done
