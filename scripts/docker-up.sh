#!/usr/bin/env bash
# Idempotent: make sure a Docker engine answers on this machine.
#
# Installs Debian's docker.io, docker-compose (1.29) and debootstrap when they
# are missing, then starts dockerd in the background if no engine answers.
# The engine is started without the default bridge and without touching
# iptables: every container and build here uses `--network host` or
# `--network none` (compose: `network_mode`), never a bridge network.
#
# Env: TRAINERD_DOCKERD_LOG (default /var/log/trainerd-dockerd.log).
set -euo pipefail
log=${TRAINERD_DOCKERD_LOG:-/var/log/trainerd-dockerd.log}

say() { echo "docker-up: $*" >&2; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if engine_answers; then
    say "engine already answers ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    exit 0
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "need root to install ${missing[*]}"; exit 1; }
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { say "need root to start dockerd"; exit 1; }
    say "starting dockerd (no bridge, no iptables); log: $log"
    # containerd comes with docker.io; dockerd starts its own when none runs.
    nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
    if engine_answers; then
        say "engine up ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
        exit 0
    fi
    sleep 1
done
say "dockerd did not answer within 60 s; last lines of $log:"
tail -n 30 "$log" >&2 || true
exit 1
