#!/usr/bin/env bash
# Creates (once) the cached Python environment that holds a real MLflow tracking server,
# used by the `#[ignore]`d contract tests of `ctiforge-registry` against MLflow's REST API
# (`registry/tests/mlflow.rs` starts `python -m mlflow server` from it). The environment
# lives outside the clone, keyed by the pinned version, so CI and later sessions reuse it.
# Prints the interpreter path on stdout (export it as CTIFORGE_MLFLOW_PYTHON).
set -euo pipefail

MLFLOW_VERSION="3.17.2"
ROOT="${CTIFORGE_CACHE:-$HOME/.cache/ctiforge}"
VENV="$ROOT/mlflow-${MLFLOW_VERSION}"

if [ ! -f "$VENV/.complete" ]; then
    echo "setup-mlflow: creating $VENV (first run downloads about 850 MB)" >&2
    rm -rf "$VENV"
    mkdir -p "$ROOT"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "mlflow==${MLFLOW_VERSION}" >&2
    "$VENV/bin/python" -c "import mlflow; print('mlflow', mlflow.__version__)" >&2
    touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
