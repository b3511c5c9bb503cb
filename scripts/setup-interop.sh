#!/usr/bin/env bash
# Idempotent: the ecosystem's own software from PyPI in the project venv
# (made by scripts/setup.sh, which holds torch), for the tests that prove
# interoperability with it: `onnx` and `onnxruntime` (tests/export.rs;
# scripts/setup.sh installs the same onnxruntime, which serve dlopens),
# `standardwebhooks` (tests/chain.rs), `tritonclient[http,grpc]` (tests/serve.rs
# and tests/serve_grpc.rs, which talk to `trainerd serve` with Triton's own
# clients; grpcio pinned with it, as the check below reads only the base name), `tensorboard`
# (tests/tensorboard.rs, which reads the event files with TensorBoard's reader). Skipped when the
# pinned versions are already there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
pins=(
    "onnx==1.23.2"
    "onnxruntime==1.31.1"
    "standardwebhooks==1.1.0"
    "tritonclient[http,grpc]==2.73.0"
    "grpcio==1.85.4"
    "tensorboard==2.21.0"
    "mlflow==3.7.0"
    # mlflow 3.7.0 imports FallbackAsyncAdaptedQueuePool, gone in SQLAlchemy 2.1
    "sqlalchemy==2.0.44"
)

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-interop: no venv at $venv; run scripts/setup.sh first" >&2
    exit 1
fi
if ! "$venv/bin/python" - "${pins[@]}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
pins = (p.split("==") for p in sys.argv[1:])
sys.exit(any(version(n.split("[")[0]) != v for n, v in pins))
PY
then
    echo "setup-interop: installing ${pins[*]} into $venv" >&2
    "$venv/bin/pip" install --quiet "${pins[@]}"
fi
echo "setup-interop: ok (${pins[*]})" >&2
