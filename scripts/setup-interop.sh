#!/usr/bin/env bash
# Idempotent: the real `onnx` and `onnxruntime` from PyPI in the project venv
# (made by scripts/setup.sh, which holds torch), for tests/export.rs, which
# checks the exported models with the ecosystem's own software. Skipped
# when the pinned versions are already there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
onnx_version="1.23.2"
ort_version="1.31.1"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-interop: no venv at $venv; run scripts/setup.sh first" >&2
    exit 1
fi
if ! "$venv/bin/python" - "$onnx_version" "$ort_version" 2>/dev/null <<'PY'
import sys
import onnx, onnxruntime
sys.exit(onnx.__version__ != sys.argv[1] or onnxruntime.__version__ != sys.argv[2])
PY
then
    echo "setup-interop: installing onnx==$onnx_version onnxruntime==$ort_version into $venv" >&2
    "$venv/bin/pip" install --quiet "onnx==$onnx_version" "onnxruntime==$ort_version"
fi
echo "setup-interop: ok (onnx $onnx_version, onnxruntime $ort_version)" >&2
