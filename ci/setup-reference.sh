#!/usr/bin/env bash
# Creates (once) the cached Python environment that holds the independent reference
# implementations used by the `#[ignore]`d parity tests: Hugging Face `transformers` on
# PyTorch (CPU). The environment lives outside the clone, keyed by the pinned versions,
# so CI and later sessions reuse it. Prints the interpreter path on stdout.
set -euo pipefail

TORCH_VERSION="2.9.1"
TRANSFORMERS_VERSION="4.57.6"
ROOT="${CTIFORGE_CACHE:-$HOME/.cache/ctiforge}"
VENV="$ROOT/ref-torch${TORCH_VERSION}-tf${TRANSFORMERS_VERSION}"

if [ ! -f "$VENV/.complete" ]; then
    echo "setup-reference: creating $VENV (first run downloads about 3 GB)" >&2
    rm -rf "$VENV"
    mkdir -p "$ROOT"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "torch==${TORCH_VERSION}" "transformers==${TRANSFORMERS_VERSION}" \
        "safetensors" "numpy" "tokenizers" "jinja2" >&2
    "$VENV/bin/python" -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >&2
    touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
