# trainerd image: a crash-proof training daemon for libtorch models.
#
#   docker build --network host -t trainerd .
#   docker run --network host -v "$PWD/volumes/state:/var/lib/trainerd" \
#       -v "$PWD/volumes/data:/data" --user "$(id -u):$(id -g)" trainerd
#
# Two stages: the builder installs torch==2.11.0 from PyPI into a venv (via
# scripts/setup.sh, LIBTORCH_USE_PYTORCH=1) and compiles trainerd against its
# libtorch, and onnxruntime==1.31.1, whose shared library `trainerd serve`
# dlopens for its forward pass; the runtime stage holds the binary and only
# the shared libraries it loads (found by ldd, plus onnxruntime's), with no
# Python and no compiler.

############################## builder ##############################
FROM rust:1.95-slim-bookworm AS builder

# g++ for torch-sys's C++ shim; python3-venv for scripts/setup.sh.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# torch (and onnxruntime) first: the largest download, and it changes least often.
COPY scripts/setup.sh scripts/need-space.sh scripts/
RUN scripts/setup.sh && rm -rf /root/.cache/pip

# Dependencies (torch-sys's C++ shim above all) in their own layer, built
# against a placeholder crate, so an edit under src/ does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
# build.rs compiles the gRPC service's definition (protox: no protoc needed).
COPY proto proto
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && cargo build --release --locked \
 && rm -rf src

COPY src src
# FEATURES=cuda builds the CUDA variant: the staging step below then finds
# libtorch_cuda and the NVIDIA libraries it loads (a much larger image; run it
# with the NVIDIA container toolkit, e.g. `docker run --gpus all`).
ARG FEATURES=""
# The placeholder left newer artifacts than the copied sources' mtimes.
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked ${FEATURES:+--features "$FEATURES"}

# Stage exactly the libraries the binary loads from the venv (see the
# script). Debug info (mostly torch-sys's C++ shim) is ~95% of the binary:
# strip it; the symbol table stays, so backtraces still name functions.
COPY scripts/stage-libs.sh scripts/stage-libs.sh
RUN mkdir -p /out/bin \
 && cp target/release/trainerd /out/bin/trainerd \
 && strip --strip-debug /out/bin/trainerd \
 && scripts/stage-libs.sh target/release/trainerd /src/.venv /out/lib/trainerd

############################## runtime ##############################
FROM debian:bookworm-slim AS runtime

# ca-certificates: the daemon fetches MNIST over https when /data is empty.
# apt's caches (package lists, pkgcache.bin, downloaded .debs) go in the same
# layer, whatever the base image keeps.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb

# A fixed non-root uid/gid; run with --user "$(id -u):$(id -g)" to own
# bind-mounted host directories instead (see entrypoint/trainerd-entrypoint.sh).
RUN groupadd --system --gid 10001 trainerd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/trainerd \
            --no-create-home --shell /usr/sbin/nologin trainerd \
 && mkdir -p /var/lib/trainerd /data \
 && chown trainerd:trainerd /var/lib/trainerd /data

# The binary's rpath includes $ORIGIN/../lib/trainerd: no LD_LIBRARY_PATH.
COPY --from=builder /out/lib/trainerd/ /usr/local/lib/trainerd/
COPY --from=builder /out/bin/trainerd /usr/local/bin/trainerd
COPY entrypoint/trainerd-entrypoint.sh /usr/local/bin/trainerd-entrypoint
# Fail the build, not the first run, if a library does not resolve (or
# onnxruntime's, which serve dlopens and ldd does not list, is missing).
RUN ldd /usr/local/bin/trainerd \
 && ! ldd /usr/local/bin/trainerd | grep -q 'not found' \
 && ls /usr/local/lib/trainerd/libonnxruntime.so*

# The live page (/, /api/v1), /metrics, /healthz and the push hooks on every interface of the container
# (`-p 9464:9464`, or host networking); TRAINERD_METRICS_ADDR=off turns it off.
ENV TRAINERD_STATE_DIR=/var/lib/trainerd \
    TRAINERD_DATA_DIR=/data \
    TRAINERD_METRICS_ADDR=0.0.0.0:9464
# `trainerd serve` (or `run --serve-addr`): REST on 8000 and, from the
# entrypoint, gRPC on 8001, the ports Triton uses.
EXPOSE 9464 8000 8001
VOLUME ["/var/lib/trainerd", "/data"]
USER 10001:10001
WORKDIR /var/lib/trainerd

STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["trainerd", "health"]
ENTRYPOINT ["trainerd-entrypoint"]
CMD ["run"]

# Last, so a new build date or revision does not rebuild the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="trainerd" \
      org.opencontainers.image.description="Crash-proof training daemon: trains a libtorch model on MNIST at launch, checkpoints to a volume, resumes after any crash" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
