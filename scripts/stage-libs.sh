#!/bin/sh
# stage-libs.sh BINARY VENV DEST
#
# Copies (flat, symlinks resolved) the shared libraries BINARY loads from the
# torch venv VENV into DEST: what ldd resolves, which follows libtorch's own
# RPATHs (libc10, libgomp, CUDA runtime stubs ...). For a CUDA build it adds
# what libtorch_cuda loads with dlopen, invisible to ldd: cuDNN's engine
# libraries, the CUDA linear-algebra backend and NVRTC. It also copies
# onnxruntime's library from the venv's onnxruntime wheel (installed by
# scripts/setup.sh), which `trainerd serve` dlopens, so ldd cannot list it;
# the binary finds it as $ORIGIN/../lib/trainerd/libonnxruntime.so*. System
# libraries (libc, libstdc++) are left to the runtime image. Used by the
# Dockerfile.
set -eu
bin=$1 venv=$2 dest=$3

if ldd "$bin" | grep -q 'not found'; then
    ldd "$bin" >&2
    echo "stage-libs: $bin has unresolved libraries" >&2
    exit 1
fi
# Libraries of $1 that resolve inside the venv.
from_venv() { ldd "$1" | awk -v v="$venv/" '$2 == "=>" && index($3, v) == 1 {print $3}'; }

libs=$(from_venv "$bin")
cuda=$(printf '%s\n' "$libs" | grep '/libtorch_cuda\.so$' || true)
if [ -n "$cuda" ]; then
    torch_lib=$(dirname "$cuda")
    nvidia=$(dirname "$(dirname "$torch_lib")")/nvidia
    for extra in "$torch_lib"/libtorch_cuda_linalg.so "$torch_lib"/libcaffe2_nvrtc.so \
        "$nvidia"/cudnn/lib/libcudnn_*.so.* "$nvidia"/cu*/lib/libnvrtc*.so*; do
        [ -e "$extra" ] || continue
        libs=$(printf '%s\n%s\n%s\n' "$libs" "$extra" "$(from_venv "$extra")")
    done
fi

ort=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n 1)
if [ -z "$ort" ]; then
    echo "stage-libs: no onnxruntime library in $venv (scripts/setup.sh installs the wheel)" >&2
    exit 1
fi
libs=$(printf '%s\n%s\n' "$libs" "$ort")

mkdir -p "$dest"
printf '%s\n' "$libs" | sort -u | while read -r lib; do
    [ -n "$lib" ] && cp -L "$lib" "$dest/"
done
ls -la "$dest"
