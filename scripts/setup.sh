#!/usr/bin/env bash
# Idempotent build setup: a project-local virtualenv holding torch==2.11.0
# (libtorch for tch) and onnxruntime==1.31.1 (the shared library `trainerd
# serve` dlopens for its forward pass), and .cargo/config.toml pointing the
# build at both.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
torch_version="2.11.0"
ort_version="1.31.1"

if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
    echo "setup: creating $venv with torch==$torch_version (a large download, once)" >&2
    # The wheels (~3.5 GiB) land in TMPDIR, then unpack to ~5 GiB in the venv.
    "$root/scripts/need-space.sh" "${TMPDIR:-/tmp}" 4 "pip's download of torch"
    "$root/scripts/need-space.sh" "$venv" 9 "the torch venv (download and unpacked)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-cache-dir "torch==$torch_version" numpy
fi

if ! "$venv/bin/python" -c "import sys; from importlib.metadata import version; sys.exit(version('onnxruntime') != '$ort_version')" 2>/dev/null; then
    echo "setup: installing onnxruntime==$ort_version into $venv" >&2
    "$venv/bin/pip" install --quiet --no-cache-dir "onnxruntime==$ort_version"
fi

torch_lib=$("$venv/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
# The library file itself (libonnxruntime.so.1.31.1), found without importing onnxruntime.
ort_lib=$("$venv/bin/python" - <<'PY'
import glob, os, sysconfig
capi = os.path.join(sysconfig.get_paths()["purelib"], "onnxruntime", "capi")
print(sorted(glob.glob(os.path.join(capi, "libonnxruntime.so*")))[0])
PY
)
# PATH as it is now, minus any earlier venv entry, so reruns give the same file.
base_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vx "$venv/bin" | paste -sd: -)
mkdir -p "$root/.cargo"
config="$root/.cargo/config.toml"
want=$(cat <<TOML
# Written by scripts/setup.sh; do not edit (it is rewritten on every run).
[env]
LIBTORCH_USE_PYTORCH = "1"
# tch-sys asks the "python" found on PATH where torch lives: put the venv first.
VIRTUAL_ENV = "$venv"
PATH = { value = "$venv/bin:$base_path", force = true }
TRAINERD_TORCH_LIB = "$torch_lib"
# The onnxruntime library serve loads when nothing else is found (crate::onnxruntime).
TRAINERD_ORT_LIB = "$ort_lib"
TOML
)
if [ ! -f "$config" ] || [ "$(cat "$config")" != "$want" ]; then
    printf '%s\n' "$want" > "$config"
    echo "setup: wrote $config" >&2
fi
# The README's main command trains on data/, trainerd's default data dir:
# trainerd downloads MNIST there (SHA-256 verified) when it is empty. A local
# copy ($MNIST_COPY, default ../shared/data/mnist) where one exists saves
# the download; nothing is copied over a data/ that is already there.
copy=${MNIST_COPY:-$root/../shared/data/mnist}
if [ ! -e "$root/data" ] && [ -f "$copy/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$root/data"
    cp "$copy"/*-ubyte.gz "$root/data/"
    echo "setup: copied MNIST from $copy to $root/data" >&2
fi
echo "setup: ok (torch $torch_version at $torch_lib; onnxruntime $ort_version at $ort_lib)" >&2
