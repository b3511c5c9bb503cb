#!/bin/sh
# Entrypoint of the trainerd image.
#
#   (no arguments)         -> trainerd run          (the image's CMD)
#   <subcommand> ...       -> trainerd <subcommand> ...  (every one trainerd has;
#                             tests/entrypoint.rs checks the list against it)
#   --flag ...             -> trainerd run --flag ...
#   anything else          -> executed as is (e.g. `sh`)
#
# It `exec`s, so trainerd becomes the container's main process and receives
# docker stop's SIGTERM itself (first SIGTERM: checkpoint, exit 143).
set -eu

if [ $# -eq 0 ]; then
    set -- run
fi
case $1 in
    run | train | trial | status | health | rollback | models | presets | predict | export | serve \
        | help | --help | -h | --version | -V)
        set -- trainerd "$@" ;;
    -*) set -- trainerd run "$@" ;;
    *) exec "$@" ;;
esac

# The image runs as uid 10001; `--user 0:0` gives that up. Say so once.
if [ "$(id -u)" = 0 ]; then
    echo "trainerd-entrypoint: warning: running as root (uid 0): files on the volumes will be" \
         "owned by root; run with --user \"\$(id -u):\$(id -g)\" to own them yourself" >&2
fi

# A bind-mounted state dir owned by another uid is the usual first-run
# mistake; say how to fix it before the daemon exits 73 on it.
state=${TRAINERD_STATE_DIR:-/var/lib/trainerd}
if [ "$2" = run ] || [ "$2" = train ]; then
    if [ -d "$state" ] && ! [ -w "$state" ]; then
        echo "trainerd-entrypoint: state dir $state is not writable by uid $(id -u):$(id -g);" \
             "run the container with --user \"\$(id -u):\$(id -g)\" (compose: TRAINERD_UID/TRAINERD_GID)" \
             "or chown the mounted directory" >&2
    fi
fi
# `serve` in the image also answers gRPC on Triton's port, 0.0.0.0:8001
# (`-p 8001:8001`), unless TRAINERD_GRPC_ADDR says otherwise (`off`: REST only).
if [ "$2" = serve ] && [ -z "${TRAINERD_GRPC_ADDR+set}" ]; then
    export TRAINERD_GRPC_ADDR=0.0.0.0:8001
fi
exec "$@"
