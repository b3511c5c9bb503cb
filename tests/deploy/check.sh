#!/usr/bin/env bash
# Tests of the deployment files (issue 7), run by CI:
#   - scripts/lint-deploy.sh passes on the real files (Kubernetes schemas,
#     Katib Experiment, Jenkinsfile, workflows);
#   - the Job's podFailurePolicy uses trainerd's documented exit codes
#     (tests/deploy/exit_codes.py, stdlib only), and that script's YAML reader
#     agrees with PyYAML on every manifest;
#   - tests/deploy/katib_metrics.py accepts well-formed trial output;
#   - and every one of those checks fails on a deliberately broken copy, with
#     the message that names the fault, so none of them can pass vacuously.
# Prints "N passed, M failed" and exits non-zero on any failure.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 1
lint=scripts/lint-deploy.sh
py=.tools/venv/bin/python
passed=0
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok() { passed=$((passed + 1)); echo "ok   - $1"; }
not_ok() { failed=$((failed + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && sed 's/^/       /' "$2" | tail -n 40; }

# expect_pass NAME CMD...: CMD exits 0.
expect_pass() {
    local name=$1 out="$work/out.txt"
    shift
    if "$@" >"$out" 2>&1; then ok "$name"; else not_ok "$name (exit $?)" "$out"; fi
}

# expect_fail NAME REGEX CMD...: CMD exits non-zero and prints REGEX.
expect_fail() {
    local name=$1 pattern=$2 out="$work/out.txt" rc
    shift 2
    "$@" >"$out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        not_ok "$name: passed but must fail" "$out"
    elif ! grep -Eq -- "$pattern" "$out"; then
        not_ok "$name: failed (exit $rc) without /$pattern/" "$out"
    else
        ok "$name"
    fi
}

# broken_tree NAME FILE SED-EXPR: a copy of the checked files in which FILE
# is edited by SED-EXPR; prints the copy's root. The edit must change FILE.
broken_tree() {
    local root="$work/$1" file=$2 expr=$3
    rm -rf "$root"
    mkdir -p "$root"
    cp -r deploy ci .github "$root"/
    sed -i -e "$expr" "$root/$file"
    if cmp -s "$file" "$root/$file"; then
        echo "broken_tree $1: '$expr' did not change $file" >&2
        return 1
    fi
    echo "$root"
}

echo "# offline checks of the real files"
expect_pass "lint-deploy.sh: all checks pass" bash "$lint"
expect_pass "podFailurePolicy exit codes are trainerd's (stdlib)" \
    python3 tests/deploy/exit_codes.py deploy/kubernetes/job.yaml
expect_pass "stdlib YAML reader agrees with PyYAML" \
    "$py" tests/deploy/exit_codes.py --compare-pyyaml deploy/kubernetes/*.yaml deploy/katib/*.yaml
expect_pass "Katib StdOut: sample trial output parses" \
    python3 tests/deploy/katib_metrics.py --stdout tests/deploy/fixtures/trial-stdout.txt \
    --objective accuracy --metric loss
expect_pass "Katib JSON: sample metrics file parses" \
    python3 tests/deploy/katib_metrics.py --jsonl tests/deploy/fixtures/metrics.katib.jsonl \
    --objective accuracy --metric loss

echo "# each check fails on a broken copy"
if root=$(broken_tree k8s deploy/kubernetes/job.yaml 's/podReplacementPolicy: Failed/podReplacementPolicyy: Failed/'); then
    expect_fail "k8s: unknown Job field" "did not validate.*podReplacementPolicyy" bash "$lint" --root "$root" --only k8s
else not_ok "k8s: mutation"; fi
if root=$(broken_tree k8s-type deploy/kubernetes/deployment.yaml 's/replicas: 1/replicas: one/'); then
    expect_fail "k8s: wrong type in Deployment" "did not validate.*replicas" bash "$lint" --root "$root" --only k8s
else not_ok "k8s: mutation"; fi
if root=$(broken_tree katib deploy/katib/experiment.yaml 's/objectiveMetricName:/objectiveMetricNmae:/'); then
    expect_fail "katib: misspelt field" "unknown field 'objectiveMetricNmae'" bash "$lint" --root "$root" --only katib
else not_ok "katib: mutation"; fi
if root=$(broken_tree katib-job deploy/katib/experiment.yaml 's/backoffLimit: 0/backoffLimit: none/'); then
    expect_fail "katib: trial Job fails the Kubernetes schema" "Kubernetes 1.29 schema" \
        bash "$lint" --root "$root" --only katib
else not_ok "katib: mutation"; fi
if root=$(broken_tree katib-cmd deploy/katib/experiment.yaml 's/- --epochs=3/- --epoch=3/'); then
    expect_fail "katib: trial command lacks a flag" "command lacks --epochs" bash "$lint" --root "$root" --only katib
else not_ok "katib: mutation"; fi
if root=$(broken_tree jenkins ci/Jenkinsfile 's/^pipeline {$/pipeline {{/'); then
    expect_fail "jenkins: Groovy syntax error" "[1-9][0-9]* error\(s\) have been found" \
        bash "$lint" --root "$root" --only jenkins
else not_ok "jenkins: mutation"; fi
if root=$(broken_tree actions .github/workflows/image.yml 's/steps\.name\.outputs\.image/steps.nme.outputs.image/'); then
    expect_fail "actions: undefined step output" 'property "nme" is not defined' \
        bash "$lint" --root "$root" --only actions
else not_ok "actions: mutation"; fi

if root=$(broken_tree codes-99 deploy/kubernetes/job.yaml 's/values: \[2, 64, 65, 78\]/values: [2, 64, 65, 78, 99]/'); then
    expect_fail "exit codes: unknown code" "exit code 99 is not a trainerd exit code" \
        python3 tests/deploy/exit_codes.py "$root/deploy/kubernetes/job.yaml"
else not_ok "exit codes: mutation"; fi
if root=$(broken_tree codes-78 deploy/kubernetes/job.yaml 's/values: \[2, 64, 65, 78\]/values: [2, 64, 65]/'); then
    expect_fail "exit codes: config error not fatal" "exit code 78 \(CONFIG\) must fail the Job" \
        python3 tests/deploy/exit_codes.py "$root/deploy/kubernetes/job.yaml"
else not_ok "exit codes: mutation"; fi
if root=$(broken_tree codes-75 deploy/kubernetes/job.yaml 's/values: \[2, 64, 65, 78\]/values: [2, 64, 65, 75, 78]/'); then
    expect_fail "exit codes: restart-me code made fatal" "75 \(STALLED\) means retry" \
        python3 tests/deploy/exit_codes.py "$root/deploy/kubernetes/job.yaml"
else not_ok "exit codes: mutation"; fi
if root=$(broken_tree codes-disruption deploy/kubernetes/job.yaml 's/- type: DisruptionTarget/- type: Ready/'); then
    expect_fail "exit codes: disruptions counted as failures" "no rule ignores disruptions" \
        python3 tests/deploy/exit_codes.py "$root/deploy/kubernetes/job.yaml"
else not_ok "exit codes: mutation"; fi

printf 'epoch=1 accuracy=0.97 loss=0.1\n' >"$work/no-stamp.txt"
expect_fail "Katib StdOut: line without timestamp" "does not start with an RFC3339 timestamp" \
    python3 tests/deploy/katib_metrics.py --stdout "$work/no-stamp.txt" --objective accuracy
printf '2026-01-01T10:00:00Z epoch=1 val_acc=0.97 loss=0.1\n' >"$work/no-objective.txt"
expect_fail "Katib StdOut: objective missing" "objective metric 'accuracy' not found" \
    python3 tests/deploy/katib_metrics.py --stdout "$work/no-objective.txt" --objective accuracy
printf '2026-01-01T10:00:00Z epoch=1 accuracy=nan\n' >"$work/nan.txt"
expect_fail "Katib StdOut: value the filter cannot read" "is not a finite number" \
    python3 tests/deploy/katib_metrics.py --stdout "$work/nan.txt" --objective accuracy
printf '{"timestamp": "2026-01-01T10:00:00Z", "accuracy": 0.97}\n' >"$work/number.jsonl"
expect_fail "Katib JSON: value not a string" "'accuracy' is 0.97, not a string" \
    python3 tests/deploy/katib_metrics.py --jsonl "$work/number.jsonl" --objective accuracy
printf '{"accuracy": "0.97"}\n' >"$work/no-stamp.jsonl"
expect_fail "Katib JSON: no timestamp" 'no "timestamp"' \
    python3 tests/deploy/katib_metrics.py --jsonl "$work/no-stamp.jsonl" --objective accuracy

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
