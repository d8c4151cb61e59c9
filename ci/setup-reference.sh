#!/usr/bin/env bash
# Creates (once) the cached Python environment that holds the independent reference
# implementations used by the `#[ignore]`d parity tests: Hugging Face `transformers` on
# PyTorch (CPU), plus Hugging Face `peft` for the LoRA adapter tests. The environment lives
# outside the clone, keyed by the torch and transformers pins, so CI and later sessions
# reuse it; `peft` (small) is added to an existing environment when missing or at another
# version. Prints the interpreter path on stdout.
set -euo pipefail

TORCH_VERSION="2.9.1"
TRANSFORMERS_VERSION="4.57.6"
# peft 0.18.1 supports transformers 4.57 and torch 2.9; it needs accelerate (and psutil).
PEFT_VERSION="0.18.1"
ACCELERATE_VERSION="1.12.0"
PSUTIL_VERSION="7.2.2"
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

# Not part of the directory key (that would re-download torch): checked on every run.
if ! "$VENV/bin/python" -c "import sys, peft; sys.exit(peft.__version__ != '${PEFT_VERSION}')" \
    >/dev/null 2>&1; then
    echo "setup-reference: installing peft ${PEFT_VERSION} into $VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "peft==${PEFT_VERSION}" "accelerate==${ACCELERATE_VERSION}" \
        "psutil==${PSUTIL_VERSION}" >&2
    "$VENV/bin/python" -c "import peft; print('peft', peft.__version__)" >&2
fi
echo "$VENV/bin/python"
