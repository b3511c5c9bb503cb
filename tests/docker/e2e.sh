#!/usr/bin/env bash
# End-to-end checks of the trainerd image on a real Docker engine.
#
#   tests/docker/e2e.sh            (from the repository root; CI runs it)
#
# Starts the engine (scripts/docker-up.sh), builds the image from the
# unchanged Dockerfile (scripts/docker-build.sh), then checks what users rely
# on:
#   a  `docker run` trains at once: the log shows its first training step
#   f  the HEALTHCHECK (`trainerd health`) turns healthy
#   b  `docker kill -s KILL` mid-training, `docker start`: resumes from the
#      newest checkpoint, and the step carries on from there
#   c  `docker stop` (10 s grace): exit 143 and a final checkpoint, which the
#      next start resumes from exactly
#   e  non-root: the image's default user and a --user uid are not root, and
#      the files on the bind-mounted volume belong to, and are usable by, the
#      host uid the container ran as; a state dir it cannot write gives exit
#      73 with a hint at --user
#   d  compose (restart: unless-stopped, host network): healthy, /metrics on
#      the host's loopback; the daemon is killed from outside (SIGKILL to its
#      host pid, as the OOM killer would); the restart policy starts it again
#      and it resumes. (`docker kill` would not do: Docker counts it as a
#      manual stop and the policy leaves the container down.)
#   s  `trainerd serve` in the image: a champion trained by the image on tiny
#      data, served over REST and, by the entrypoint's default, gRPC on 8001;
#      Triton's own gRPC client (the venv's tritonclient) infers through it
#   g  empty data dir: MNIST is downloaded from TRAINERD_MNIST_MIRRORS (a
#      local http.server on 127.0.0.1); with no mirror answering, a clear
#      error that says how to mount data instead
#
# Containers use --network none, or host where they must reach 127.0.0.1;
# never a bridge network.
#
# Env:
#   TRAINERD_SKIP_DOCKER=1    skip everything (says so loudly; exit 0)
#   TRAINERD_E2E_NO_BUILD=1   use the existing image instead of building
#   TRAINERD_E2E_ONLY="a b"   run only these checks (a/f/b/c/e share one container)
#   TRAINERD_E2E_KEEP=1       keep the work dir and containers for inspection
#   TRAINERD_IMAGE            image tag (default trainerd:latest)
#   TRAINERD_MNIST_SRC        MNIST dir (default ../shared/data/mnist beside this checkout or its origin)
#   TRAINERD_TEST_UID         non-root host uid the containers run as (default 4242)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

if [ "${TRAINERD_SKIP_DOCKER:-0}" = 1 ]; then
    cat >&2 <<'BANNER'
##########################################################################
##  SKIPPED: Docker end-to-end tests (TRAINERD_SKIP_DOCKER=1).           ##
##  The image, compose file and crash/resume behaviour were NOT tested.  ##
##########################################################################
BANNER
    exit 0
fi

image=${TRAINERD_IMAGE:-trainerd:latest}
export TRAINERD_IMAGE=$image
uid=${TRAINERD_TEST_UID:-4242}
# MNIST: beside this checkout, or beside the repository it was cloned from
# (a CI clone in a scratch directory has no ../shared of its own).
mnist=${TRAINERD_MNIST_SRC:-}
if [ -z "$mnist" ]; then
    origin=$(git -C "$root" config --get remote.origin.url 2>/dev/null || true)
    for dir in "$root/../shared/data/mnist" ${origin:+"$origin/../shared/data/mnist"}; do
        if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
            mnist=$dir
            break
        fi
    done
    mnist=${mnist:-$root/../shared/data/mnist}
fi
only=${TRAINERD_E2E_ONLY:-a f b c e d s g}
prefix=trainerd-e2e-$$
every=20 # checkpoint interval, steps
compose=(docker-compose -p "$prefix" -f docker-compose.yml -f docker-compose.test.yml)

mnist_files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
for f in $mnist_files; do
    [ -f "$mnist/$f" ] || { echo "e2e: MNIST not found at $mnist (set TRAINERD_MNIST_SRC)" >&2; exit 1; }
done

scripts/docker-up.sh
if [ "${TRAINERD_E2E_NO_BUILD:-0}" != 1 ]; then
    scripts/docker-build.sh
fi
docker image inspect "$image" >/dev/null

work=$(mktemp -d /var/tmp/trainerd-e2e.XXXXXX)
chmod 755 "$work" # the test uid must reach the volumes below it
http_pid=""
cleanup() {
    local rc=$?
    if [ -n "$http_pid" ]; then kill "$http_pid" 2>/dev/null || true; fi
    if [ "${TRAINERD_E2E_KEEP:-0}" = 1 ]; then
        echo "e2e: kept $work and containers $prefix-*" >&2
    else
        TRAINERD_STATE_VOLUME=$work/compose/state TRAINERD_DATA_VOLUME=$work/compose/data \
            "${compose[@]}" down -t 1 >/dev/null 2>&1 || true
        docker ps -aq --filter "name=^$prefix-" | xargs -r docker rm -f >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT

passed=0
failed=0
failures=()
say() { echo "e2e: $*" >&2; }
fail() { echo "e2e: FAIL: $*" >&2; return 1; }
wanted() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# check ID TITLE FUNCTION: runs one check and counts it.
check() {
    local id=$1 title=$2 fn=$3
    wanted "$id" || return 0
    say "--- ($id) $title"
    local start=$SECONDS rc
    # Not `if ( ... )`: errexit is off inside a tested subshell.
    set +e
    (
        set -euo pipefail
        "$fn"
    )
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        say "ok ($id) $title [$((SECONDS - start)) s]"
    else
        failed=$((failed + 1))
        failures+=("($id) $title")
        say "FAILED ($id) $title [$((SECONDS - start)) s]"
    fi
}

# A state dir and a data dir (the real MNIST files, copied) owned by $uid.
make_dirs() {
    local dir=$work/$1 with_data=${2:-yes}
    mkdir -p "$dir/state" "$dir/data"
    if [ "$with_data" = yes ]; then
        for f in $mnist_files; do cp "$mnist/$f" "$dir/data/"; done
    fi
    chown -R "$uid:$uid" "$dir"
}

# start NAME NETWORK [docker run args...]: a detached daemon on NAME's dirs.
start() {
    local name=$1 net=$2
    shift 2
    # The image listens on 0.0.0.0:9464; with host networking that is the
    # host's, so such a container gets a free loopback port instead.
    if [ "$net" = host ]; then
        set -- -e "TRAINERD_METRICS_ADDR=127.0.0.1:$(free_port)" "$@"
    fi
    docker run -d --name "$prefix-$name" --network "$net" --user "$uid:$uid" \
        -v "$work/$name/state:/var/lib/trainerd" -v "$work/$name/data:/data" \
        -e TRAINERD_CHECKPOINT_EVERY=$every -e TRAINERD_SEED=7 -e TRAINERD_LOG_FORMAT=json \
        "$@" "$image" >/dev/null
}

# Log lines (JSON, one per line) of container $1 from line $2 on.
logs_from() { docker logs "$1" 2>&1 | tail -n "+${2:-1}"; }
log_count() { docker logs "$1" 2>&1 | wc -l; }

# wait_log CONTAINER FROM_LINE TIMEOUT JQ_FILTER: prints the first log object
# matching the filter; fails when the container exits or time runs out.
wait_log() {
    local c=$1 from=$2 timeout=$3 filter=$4 hit deadline=$((SECONDS + $3)) restarts
    restarts=$(docker inspect -f '{{.RestartCount}}' "$c")
    while [ $SECONDS -lt $deadline ]; do
        hit=$(logs_from "$c" "$from" | jq -c -R "fromjson? | objects | select($filter)" 2>/dev/null | head -n 1)
        if [ -n "$hit" ]; then
            echo "$hit"
            return 0
        fi
        if [ "$(docker inspect -f '{{.State.Running}}' "$c")" != true ] ||
            [ "$(docker inspect -f '{{.RestartCount}}' "$c")" != "$restarts" ]; then
            fail "$c exited ($(docker inspect -f '{{.State.ExitCode}}' "$c")) before logging: $filter"
            logs_from "$c" "$from" | tail -n 20 >&2
            return 1
        fi
        sleep 0.5
    done
    fail "$c: nothing matching $filter within $timeout s"
    logs_from "$c" "$from" | tail -n 20 >&2
    return 1
}

# A training step: a log event carrying a step, other than a resume notice.
first_step='(.step|type) == "number" and .step >= 1 and ((.message // .fields.message // "") | test("resum|stopped") | not)'
resumed='((.message // .fields.message // "") | test("resumed from checkpoint"))'

# The step trainerd's heartbeat reports (0 when none yet), if the heartbeat
# was written after unix ms $2 (default: any time).
hb_step() {
    jq -r --argjson since "${2:-0}" 'if (.updated_ms // 0) > $since then (.step // 0) else 0 end' \
        "$work/$1/state/heartbeat.json" 2>/dev/null || echo 0
}
now_ms() { date +%s%3N; }

# wait_step NAME MIN TIMEOUT [SINCE_MS]: until the heartbeat (written after
# SINCE_MS) reports step >= MIN.
wait_step() {
    local deadline=$((SECONDS + $3)) s
    while [ $SECONDS -lt $deadline ]; do
        s=$(hb_step "$1" "${4:-0}")
        [ "$s" -ge "$2" ] && { echo "$s"; return 0; }
        sleep 0.5
    done
    fail "$1: heartbeat step still $(hb_step "$1" "${4:-0}") < $2 after $3 s"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_health() {
    local c=$1 deadline=$((SECONDS + $2)) h
    while [ $SECONDS -lt $deadline ]; do
        h=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c")
        [ "$h" = healthy ] && return 0
        if [ "$(docker inspect -f '{{.State.Running}}' "$c")" != true ]; then
            fail "$c exited ($(docker inspect -f '{{.State.ExitCode}}' "$c")) while health was '$h'"
            return 1
        fi
        sleep 1
    done
    fail "$c health is '$h' after $2 s"
    docker inspect -f '{{json .State.Health}}' "$c" >&2
    return 1
}

wait_exit() {
    local c=$1 deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(docker inspect -f '{{.State.Running}}' "$c")" = false ] && return 0
        sleep 0.5
    done
    fail "$c still running after $2 s"
}

######################## a f b c e: one container ########################
main=$prefix-main

check_a() {
    make_dirs main
    # 20 epochs for the first trial: a, f, b, c and e all happen inside it.
    # With the default one-epoch trial, the study could end before check c's
    # `docker stop` (trials take seconds now), and the stop then found an idle
    # daemon with no trial step to checkpoint.
    start main none --health-interval 2s --health-timeout 10s --health-start-period 5s --health-retries 3 \
        -e TRAINERD_EPOCHS=20
    local hit
    hit=$(wait_log "$main" 1 300 "$first_step")
    say "first step logged: $hit"
}

check_f() {
    docker inspect "$main" >/dev/null 2>&1 || fail "no container (check a did not run)"
    wait_health "$main" 120
    docker exec "$main" trainerd health
}

check_b() {
    local s_kill r line n t_start
    s_kill=$(wait_step main $((3 * every)) 300)
    docker kill -s KILL "$main" >/dev/null
    wait_exit "$main" 30
    [ "$(docker inspect -f '{{.State.ExitCode}}' "$main")" = 137 ] || fail "exit code after SIGKILL is not 137"
    say "killed at heartbeat step $s_kill"
    n=$(log_count "$main")
    t_start=$(now_ms)
    docker start "$main" >/dev/null
    line=$(wait_log "$main" $((n + 1)) 300 "$resumed")
    r=$(jq -r '.step' <<<"$line")
    say "resumed: $line"
    # The heartbeat lags the real step, and checkpoints come every $every
    # steps: the newest one is at most $every steps before the heartbeat's.
    [ "$r" -ge 1 ] || fail "resumed from step $r (started over)"
    [ "$r" -ge $((s_kill - every)) ] || fail "resumed at $r, but a checkpoint >= $((s_kill - every)) existed"
    # Continuity: training goes on from r, and status says so.
    line=$(wait_log "$main" $((n + 1)) 300 "$first_step and .step > $r")
    say "next step after resume: $line"
    wait_step main $((r + 1)) 120 "$t_start" >/dev/null
    local st
    st=$(docker exec "$main" trainerd status --json)
    say "status: $(jq -c '{state, trial, step}' <<<"$st")"
    [ "$(jq -r '.step // 0' <<<"$st")" -gt "$r" ] || fail "status step not past $r: $st"
}

check_c() {
    local n line s_stop rc t0 elapsed
    wait_step main $(($(hb_step main) + 2)) 120 >/dev/null
    n=$(log_count "$main")
    t0=$SECONDS
    docker stop -t 10 "$main" >/dev/null
    elapsed=$((SECONDS - t0))
    rc=$(docker inspect -f '{{.State.ExitCode}}' "$main")
    say "docker stop took ${elapsed} s, exit code $rc"
    [ "$rc" = 143 ] || fail "exit code $rc, want 143 (137 means the 10 s grace ran out)"
    line=$(logs_from "$main" $((n + 1)) | jq -c -R 'fromjson? | objects | select(((.message // "") | test("stopped")) and (.step | type) == "number")' | tail -n 1)
    [ -n "$line" ] || fail "no 'stopped' log line that names its step"
    s_stop=$(jq -r '.step' <<<"$line")
    say "stopped: $line"
    # The final checkpoint is at the stop step: the next start resumes there.
    n=$(log_count "$main")
    docker start "$main" >/dev/null
    line=$(wait_log "$main" $((n + 1)) 300 "$resumed")
    say "resumed: $line"
    [ "$(jq -r '.step' <<<"$line")" = "$s_stop" ] || fail "resumed at $(jq -r .step <<<"$line"), final checkpoint was at $s_stop"
}

check_e() {
    local user inside state=$work/main/state
    user=$(docker image inspect -f '{{.Config.User}}' "$image")
    case $user in "" | 0 | 0:* | root | root:*) fail "image runs as root (User=$user)" ;; esac
    inside=$(docker run --rm --network none --entrypoint id "$image" -u)
    [ "$inside" != 0 ] || fail "default container uid is 0"
    say "image user $user (uid $inside)"
    if docker inspect "$main" >/dev/null 2>&1 && [ "$(docker inspect -f '{{.State.Running}}' "$main")" = true ]; then
        [ "$(docker exec "$main" id -u)" = "$uid" ] || fail "daemon not running as $uid"
        docker stop -t 10 "$main" >/dev/null
    fi
    [ -n "$(find "$state" -mindepth 1 -print -quit)" ] || fail "state dir is empty"
    local foreign
    foreign=$(find "$state" ! -uid "$uid" -print)
    [ -z "$foreign" ] || fail "files not owned by uid $uid: $foreign"
    # As that host uid (not root): read everything, copy it, delete it.
    # shellcheck disable=SC2016 # $1 is the inner shell's argument.
    # From /: the checkout may sit in a directory only root can enter.
    setpriv --reuid "$uid" --regid "$uid" --clear-groups -- sh -ec '
        cd /
        find "$1" -type f -exec cat {} + >/dev/null
        cp -r "$1" "$1.copy"
        rm -rf "$1.copy" "$1"/heartbeat.json
    ' sh "$state"

    # A state dir the container's uid cannot write: exit 73 (state dir not
    # writable) and a hint at --user from the entrypoint, not a crash loop.
    mkdir -p "$work/rootowned/state"
    chmod 755 "$work/rootowned/state"
    local out rc
    set +e
    out=$(docker run --rm --network none -v "$work/rootowned/state:/var/lib/trainerd" \
        -v "$work/main/data:/data:ro" "$image" 2>&1)
    rc=$?
    set -e
    [ "$rc" = 73 ] || fail "exit $rc on a read-only state dir, want 73: $out"
    grep -q -- '--user' <<<"$out" || fail "no --user hint: $out"
}

check a "docker run logs its first training step" check_a
check f "health check turns healthy" check_f
check b "SIGKILL mid-training, docker start: resumes from newest checkpoint" check_b
check c "docker stop: final checkpoint, exit 143 within 10 s" check_c
check e "non-root, volume files usable by the host uid" check_e
docker rm -f "$main" >/dev/null 2>&1 || true

######################## d: compose + restart policy ########################
check_d() {
    make_dirs compose
    export TRAINERD_STATE_VOLUME=$work/compose/state TRAINERD_DATA_VOLUME=$work/compose/data
    export TRAINERD_UID=$uid TRAINERD_GID=$uid
    local port
    port=$(free_port)
    export TRAINERD_METRICS_ADDR=127.0.0.1:$port
    "${compose[@]}" up -d --no-build
    local c pid s_kill line r n
    c=$("${compose[@]}" ps -q trainerd)
    [ -n "$c" ] || fail "compose started no container"
    [ "$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$c")" = unless-stopped ] || fail "restart policy not unless-stopped"
    wait_log "$c" 1 300 "$first_step" >/dev/null
    wait_health "$c" 120
    # Host networking: the metrics endpoint is on the host's loopback.
    grep -q '^trainerd_step' <<<"$(curl -fsS "http://127.0.0.1:$port/metrics")" ||
        fail "no trainerd_step on http://127.0.0.1:$port/metrics"
    s_kill=$(wait_step compose $((3 * every)) 300)
    pid=$(docker inspect -f '{{.State.Pid}}' "$c")
    [ "$(cat "/proc/$pid/comm")" = trainerd ] || fail "pid $pid is $(cat "/proc/$pid/comm"), not trainerd"
    n=$(log_count "$c")
    say "SIGKILL to trainerd (host pid $pid) at heartbeat step $s_kill"
    kill -KILL "$pid"
    local deadline=$((SECONDS + 60))
    until [ "$(docker inspect -f '{{.RestartCount}}' "$c")" -ge 1 ] &&
        [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ]; do
        [ $SECONDS -lt $deadline ] || fail "container not restarted by its policy within 60 s"
        sleep 0.5
    done
    say "restarted by policy (RestartCount $(docker inspect -f '{{.RestartCount}}' "$c"))"
    line=$(wait_log "$c" $((n + 1)) 300 "$resumed")
    r=$(jq -r '.step' <<<"$line")
    say "resumed: $line"
    [ "$r" -ge 1 ] || fail "resumed from step $r (started over)"
    [ "$r" -ge $((s_kill - every)) ] || fail "resumed at $r after kill at $s_kill"
    wait_log "$c" $((n + 1)) 300 "$first_step and .step > $r" >/dev/null
    "${compose[@]}" down -t 10 >/dev/null 2>&1
}
check d "compose: daemon killed, restart policy restarts it, it resumes" check_d

######################## g: MNIST download ########################
check_s() {
    local dir=$work/serve rest grpc c
    mkdir -p "$dir/state"
    python3 scripts/tiny-mnist.py "$dir/data" 300 100 1 >/dev/null
    chown -R "$uid:$uid" "$dir"
    docker run --rm --network none --user "$uid:$uid" \
        -v "$dir/state:/var/lib/trainerd" -v "$dir/data:/data" "$image" \
        train --preset linear --epochs 1 --max-trials 1 --val-size 50 --target-accuracy 0.01 \
        >"$work/serve-train.log" 2>&1 || { tail -n 5 "$work/serve-train.log" >&2; fail "train in the image failed"; }
    rest=$(free_port)
    # The entrypoint's gRPC default is 0.0.0.0:8001; with host networking that
    # is the host's port, so fall back to a free one if something holds it.
    grpc=8001
    local env=()
    if ! python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0", 8001))' 2>/dev/null; then
        grpc=$(free_port)
        env=(-e "TRAINERD_GRPC_ADDR=127.0.0.1:$grpc")
        say "port 8001 is taken here; gRPC on $grpc instead (the default is not checked)"
    fi
    c=$prefix-serve
    docker run -d --name "$c" --network host --user "$uid:$uid" --read-only \
        -v "$dir/state:/var/lib/trainerd:ro" -e "TRAINERD_SERVE_ADDR=127.0.0.1:$rest" \
        -e TRAINERD_LOG_FORMAT=json "${env[@]}" "$image" serve >/dev/null
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null "http://127.0.0.1:$rest/v2/health/ready" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { docker logs "$c" 2>&1 | tail -n 5 >&2; fail "REST never ready"; }
        sleep 0.2
    done
    "$root/.venv/bin/python" - "127.0.0.1:$grpc" <<'PY' || fail "gRPC through tritonclient.grpc failed"
import sys
import numpy as np
import tritonclient.grpc as g
c = g.InferenceServerClient(url=sys.argv[1])
assert c.is_server_ready() and c.is_model_ready("trainerd")
x = g.InferInput("pixels", [4, 784], "UINT8")
x.set_data_from_numpy(np.zeros((4, 784), np.uint8))
labels = c.infer("trainerd", [x]).as_numpy("label")
assert labels.shape == (4,), labels
print("e2e: gRPC answered labels", labels.tolist(), file=sys.stderr)
PY
    docker rm -f "$c" >/dev/null
}
check s "trainerd serve in the image: REST, and gRPC on 8001 by default (tritonclient.grpc)" check_s

check_g() {
    local port c line
    make_dirs download no
    port=$(free_port)
    python3 -m http.server --bind 127.0.0.1 --directory "$mnist" "$port" >"$work/http.log" 2>&1 &
    http_pid=$!
    local deadline=$((SECONDS + 20))
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "http.server did not start"
        sleep 0.2
    done
    start download host -e TRAINERD_MNIST_MIRRORS="http://127.0.0.1:$port/"
    c=$prefix-download
    wait_log "$c" 1 300 "$first_step" >/dev/null
    grep -q 'GET /train-images-idx3-ubyte' "$work/http.log" || fail "the mirror was not asked for the training images"
    [ -n "$(find "$work/download/data" -name 'train-images*' -size +1M)" ] || fail "no training images written to the data dir"
    say "downloaded: $(find "$work/download/data" -type f -printf '%f ')"
    docker rm -f "$c" >/dev/null
    kill "$http_pid" 2>/dev/null || true
    http_pid=""

    # No mirror answers (a port nothing listens on): a clear error, not a hang.
    make_dirs nomirror no
    start nomirror host -e TRAINERD_MNIST_MIRRORS="http://127.0.0.1:$port/"
    c=$prefix-nomirror
    wait_exit "$c" 180
    local rc
    rc=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    docker logs "$c" 2>&1 | tail -n 5 >&2
    [ "$rc" = 65 ] || fail "exit code $rc without data, want 65 (bad data)"
    # Capture first: with pipefail, `docker logs | grep -q` fails when grep
    # exits at its first match and docker logs dies of SIGPIPE.
    local logs
    logs=$(docker logs "$c" 2>&1)
    grep -qi 'mount' <<<"$logs" || fail "the error does not say how to mount data"
}
check g "empty data dir: MNIST from TRAINERD_MNIST_MIRRORS; clear error without a mirror" check_g

echo
for f in "${failures[@]}"; do echo "e2e: failed: $f"; done
echo "docker-e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
