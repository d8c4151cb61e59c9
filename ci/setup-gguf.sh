#!/usr/bin/env bash
# Creates (once) the cached Python environment that holds the GGUF references used by the
# `#[ignore]`d parity tests of the export crate: gguf-py (`gguf` on PyPI: the GGUF reader
# and the legacy quantizers) and llama-cpp-python, which compiles llama.cpp and ggml from
# source, so `ggml_quantize_chunk` (the K-quant reference) can be called through ctypes.
# The environment lives outside the clone, keyed by the pinned versions. Progress goes to
# stderr; the interpreter path is the last line on stdout. The first run compiles
# llama.cpp (15+ minutes on 2 cores).
set -euo pipefail

GGUF_VERSION="0.19.0"
LLCPP_VERSION="0.3.36"
NUMPY_VERSION="2.2.6"
ROOT="${CTIFORGE_CACHE:-$HOME/.cache/ctiforge}"
VENV="$ROOT/gguf-${GGUF_VERSION}-llcpp-${LLCPP_VERSION}"

if [ ! -f "$VENV/.complete" ]; then
    echo "setup-gguf: creating $VENV (first run compiles llama.cpp: 15+ minutes)" >&2
    rm -rf "$VENV"
    mkdir -p "$ROOT"
    python3 -m venv "$VENV"
    PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
    "${PIP[@]}" "numpy==${NUMPY_VERSION}" "gguf==${GGUF_VERSION}" \
        "scikit-build-core[pyproject]" cmake ninja typing-extensions diskcache jinja2 >&2
    # A private TMPDIR: the build tree is large and other builds share /tmp.
    BUILD_TMP="$(mktemp -d "$ROOT/.gguf-build.XXXXXX")"
    trap 'rm -rf "$BUILD_TMP"' EXIT
    # Only the shared libraries are needed: no native-CPU tuning (the reference
    # quantizers are the portable `_ref` code anyway), no tools, tests or multimodal.
    TMPDIR="$BUILD_TMP" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DMTMD_BUILD=OFF -DLLAMA_CURL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF" \
        "${PIP[@]}" --no-build-isolation --no-binary llama-cpp-python \
        "llama-cpp-python==${LLCPP_VERSION}" >&2
    "$VENV/bin/python" - >&2 <<'PY'
import glob, os
import gguf, llama_cpp
lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
print("gguf", gguf.__file__, "llama_cpp", llama_cpp.__version__, sorted(os.listdir(lib)))
assert glob.glob(os.path.join(lib, "libggml-base*")), "libggml-base not found in " + lib
PY
    touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
