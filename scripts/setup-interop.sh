#!/usr/bin/env bash
# Idempotent: the real `onnx`, `onnxruntime` and `tritonclient[http]` from
# PyPI in the project venv (made by scripts/setup.sh, which holds torch), for
# tests/export.rs, which checks the exported models with the ecosystem's own
# software, and tests/serve.rs, which talks to `trainerd serve` with Triton's
# own client. Skipped when the pinned versions are already there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
onnx_version="1.23.2"
ort_version="1.31.1"
triton_version="2.73.0"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-interop: no venv at $venv; run scripts/setup.sh first" >&2
    exit 1
fi
if ! "$venv/bin/python" - "$onnx_version" "$ort_version" "$triton_version" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
import onnx, onnxruntime
import tritonclient.http
sys.exit(onnx.__version__ != sys.argv[1] or onnxruntime.__version__ != sys.argv[2]
         or version("tritonclient") != sys.argv[3])
PY
then
    echo "setup-interop: installing onnx==$onnx_version onnxruntime==$ort_version" \
        "tritonclient[http]==$triton_version into $venv" >&2
    "$venv/bin/pip" install --quiet "onnx==$onnx_version" "onnxruntime==$ort_version" \
        "tritonclient[http]==$triton_version"
fi
echo "setup-interop: ok (onnx $onnx_version, onnxruntime $ort_version, tritonclient $triton_version)" >&2
