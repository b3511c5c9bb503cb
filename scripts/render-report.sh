#!/usr/bin/env bash
# Renders a trainerd report (best/report.html) to a PNG with headless
# Chromium, so people (and CI artifacts) can look at it.
#
#   scripts/render-report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]
#   scripts/render-report.sh --train [OUT.png]   # train briefly on tiny data first
#
# Installs Debian's `chromium` when it is missing (apt; needs root).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need_chromium() {
    if ! command -v chromium >/dev/null 2>&1; then
        echo "render-report: installing chromium (apt)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
}

if [ "${1:-}" = "--train" ]; then
    out=${2:-report.png}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    bin=${TRAINERD_BIN:-}
    if [ -z "$bin" ]; then
        (cd "$root" && cargo build --quiet)
        bin=${CARGO_TARGET_DIR:-$root/target}/debug/trainerd
    fi
    data=${TRAINERD_TEST_MNIST_DIR:-}
    if [ -z "$data" ]; then
        data="$work/data"
        python3 "$root/scripts/tiny-mnist.py" "$data" 3000 1000
    fi
    "$bin" train --data-dir "$data" --state-dir "$work/state" --preset fast --epochs 3 \
        --val-size 500 --log-format json --target-accuracy 0.99 >/dev/null 2>"$work/train.log" || {
        code=$?
        # 2 = trained but below target: the report exists all the same.
        [ "$code" = 2 ] || { tail -5 "$work/train.log" >&2; exit "$code"; }
    }
    report="$work/state/best/report.html"
    size=${3:-1200x2200}
else
    report=${1:?usage: render-report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT] | --train [OUT.png]}
    out=${2:-report.png}
    size=${3:-1200x2200}
fi

[ -f "$report" ] || { echo "render-report: no report at $report" >&2; exit 1; }
need_chromium
profile=$(mktemp -d)
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size="${size/x/,}" \
    --screenshot="$out_abs" "file://$(cd "$(dirname "$report")" && pwd)/$(basename "$report")" \
    >/dev/null 2>"$profile/chromium.log" || { tail -20 "$profile/chromium.log" >&2; rm -rf "$profile"; exit 1; }
rm -rf "$profile"
echo "render-report: wrote $out_abs" >&2
