#!/usr/bin/env bash
# Docker numbers for trainerd: image size, `docker run` to the first training
# step, and restart (SIGKILL, `docker start`) to the first resumed step.
#
#   bench/docker.sh        (from the repository root; needs a built image:
#                           scripts/docker-up.sh && scripts/docker-build.sh)
#
# Times are wall clock, measured by polling the container's JSON log every
# 0.1 s. The daemon logs progress every 5 s at info level, so the bench runs
# it with trainerd's debug events and a checkpoint after every step: the first
# training step is the first event carrying `step` >= 1 (its checkpoint), an
# upper bound that includes that one save. Results go to stdout and to
# bench/out/docker.txt.
#
# Env: TRAINERD_IMAGE (default trainerd:latest), TRAINERD_MNIST_SRC
#      (default ../shared/data/mnist), TRAINERD_BENCH_RUNS (default 3).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
image=${TRAINERD_IMAGE:-trainerd:latest}
mnist=${TRAINERD_MNIST_SRC:-$root/../shared/data/mnist}
runs=${TRAINERD_BENCH_RUNS:-3}
uid=4242
name=trainerd-bench-$$
work=$(mktemp -d /var/tmp/trainerd-bench.XXXXXX)
chmod 755 "$work" # the container uid must reach the volumes below it
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p bench/out

docker image inspect "$image" >/dev/null

now() { date +%s.%N; }
step_filter='(.step|type) == "number" and .step >= 1 and ((.message // "") | test("resum|stopped") | not)'
resume_filter='(.message // "") | test("resumed from checkpoint")'

# wait_for FROM_LINE FILTER: polls the log until an event matches.
wait_for() {
    local deadline=$((SECONDS + 600))
    while [ $SECONDS -lt $deadline ]; do
        # Not `jq -e`: jq 1.6 exits 0 on empty input.
        if [ -n "$(docker logs "$name" 2>&1 | tail -n "+$1" |
            jq -c -R "fromjson? | objects | select($2)" 2>/dev/null | head -n 1)" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench: timed out waiting for: $2" >&2
    docker logs "$name" 2>&1 | tail -n 20 >&2
    return 1
}

size=$(docker image inspect -f '{{.Size}}' "$image")
results=()
for i in $(seq 1 "$runs"); do
    rm -rf "$work/state" "$work/data"
    mkdir -p "$work/state" "$work/data"
    cp "$mnist"/*-ubyte.gz "$work/data/"
    chown -R "$uid:$uid" "$work"
    t0=$(now)
    docker run -d --name "$name" --network none --user "$uid:$uid" \
        -v "$work/state:/var/lib/trainerd" -v "$work/data:/data" \
        -e TRAINERD_CHECKPOINT_EVERY=1 -e TRAINERD_LOG_FORMAT=json \
        -e RUST_LOG=info,trainerd=debug "$image" >/dev/null
    wait_for 1 "$step_filter"
    t1=$(now)
    # Let it checkpoint, then crash it and start it again.
    until [ "$(jq -r '.step // 0' "$work/state/heartbeat.json" 2>/dev/null || echo 0)" -ge 60 ]; do sleep 0.2; done
    docker kill -s KILL "$name" >/dev/null
    docker wait "$name" >/dev/null
    n=$(docker logs "$name" 2>&1 | wc -l)
    t2=$(now)
    docker start "$name" >/dev/null
    wait_for $((n + 1)) "$resume_filter"
    t3=$(now)
    wait_for $((n + 1)) "$step_filter"
    t4=$(now)
    docker rm -f "$name" >/dev/null
    results+=("$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" \
        'BEGIN {printf "%.1f %.1f %.1f", b - a, d - c, e - c}')")
    echo "bench: run $i: ${results[-1]} (first step, resume log, first resumed step; s)" >&2
done

{
    echo "image                        $image"
    echo "image size                   $((size / 1000000)) MB"
    printf '%s\n' "${results[@]}" | awk -v runs="$runs" '
        { a[NR] = $1; b[NR] = $2; c[NR] = $3 }
        function med(x,   n, i, j, t) { n = runs
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
            return (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        END {
            printf "run -> first training step   %.1f s (median of %d)\n", med(a), runs
            printf "restart -> resumed (log)     %.1f s (median of %d)\n", med(b), runs
            printf "restart -> first resumed step %.1f s (median of %d)\n", med(c), runs
        }'
    echo "machine                      $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
} | tee bench/out/docker.txt
