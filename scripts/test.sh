#!/usr/bin/env bash
# The project's test command (README, .ci/run): everything CI checks, from a
# fresh machine. Installs what it needs through the project's own scripts.
#   TRAINERD_SKIP_DOCKER=1   skip the Docker end-to-end tests (announced loudly)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==== %s ====\n' "$*"; }

# The image build needs about 12 GiB where Docker keeps its data (5 for a
# rebuild). When that filesystem is short and also holds target/, whose
# build the image does not use (it compiles its own), target/release goes:
# the next cargo build makes it again. docker-build.sh checks again after.
free_for_docker() {
    local root need=5
    root=$(docker info -f '{{.DockerRootDir}}')
    docker image inspect "${TRAINERD_IMAGE:-trainerd:latest}" >/dev/null 2>&1 || need=12
    scripts/need-space.sh "$root" "$need" "the image build" 2>/dev/null && return 0
    [ -d target/release ] || return 0
    [ "$(stat -c %d target)" = "$(stat -c %d "$root")" ] || return 0
    echo "test: under $need GiB free at $root; removing target/release ($(du -sh target/release | cut -f1)) for the image build" >&2
    rm -rf target/release
}

step "setup (libtorch venv, cargo config)"
scripts/setup.sh

step "setup-interop (onnx, onnxruntime for tests/export.rs)"
scripts/setup-interop.sh

step "setup-browser (Debian's chromium for tests/page.rs)"
scripts/setup-browser.sh

step "format and lints"
# A first release build of every target writes about 5 GiB under target/.
[ -d target/release ] || scripts/need-space.sh target 6 "a first release build"
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
# Docs: every intra-doc link resolves (a renamed or removed item breaks one).
RUSTDOCFLAGS='-D warnings' cargo doc --release --no-deps --quiet

step "module graph: no module (nor file inside one) imports one that imports it back"
python3 scripts/check-module-cycles.py --self-test
python3 scripts/check-module-cycles.py

step "unit and integration tests"
cargo test --release -- --test-threads=2

for extra in tests/deploy/check.sh scripts/prometheus-check.sh scripts/cuda-build-check.sh; do
    if [ -x "$extra" ]; then
        step "$extra"
        "$extra"
    fi
done

if [ "${TRAINERD_SKIP_DOCKER:-0}" = "1" ]; then
    step "DOCKER END-TO-END TESTS SKIPPED (TRAINERD_SKIP_DOCKER=1): the image is NOT tested"
elif [ -x tests/docker/e2e.sh ]; then
    step "docker end-to-end"
    scripts/docker-up.sh
    free_for_docker
    tests/docker/e2e.sh
fi
step "all checks passed"
