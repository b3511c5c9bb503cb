#!/usr/bin/env bash
# Idempotent: Debian's `chromium` for tests/page.rs, which drives the live
# page (`GET /` of the daemon's HTTP server) in a real headless browser over
# the DevTools protocol (a pipe, no driver). Skipped when a chromium is
# already on PATH (or TRAINERD_CHROMIUM names one). Needs root for apt-get.
set -euo pipefail

if [ -n "${TRAINERD_CHROMIUM:-}" ] && [ -x "$TRAINERD_CHROMIUM" ]; then
    echo "setup-browser: ok ($TRAINERD_CHROMIUM)" >&2
    exit 0
fi
if command -v chromium >/dev/null 2>&1; then
    echo "setup-browser: ok ($(command -v chromium))" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: no chromium on PATH and no apt-get to install it; install Chromium and set TRAINERD_CHROMIUM" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
echo "setup-browser: installing Debian's chromium" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "setup-browser: ok ($(command -v chromium))" >&2
