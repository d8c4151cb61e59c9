#!/usr/bin/env bash
# Creates (once) the cached Python environment of the data-preparation benchmark: pandas,
# pyarrow (for parquet) and datasketch (MinHash + LSH), used by `ci/reference_prep_pandas.py`
# under `cargo xtask bench-prep`. The environment lives outside the clone, keyed by the
# pinned versions, so CI and later sessions reuse it. Prints the interpreter path on stdout.
set -euo pipefail

PANDAS_VERSION="3.1.1"
PYARROW_VERSION="26.0.1"
DATASKETCH_VERSION="2.0.0"
ROOT="${CTIFORGE_CACHE:-$HOME/.cache/ctiforge}"
VENV="$ROOT/bench-pandas${PANDAS_VERSION}-pa${PYARROW_VERSION}-ds${DATASKETCH_VERSION}"

if [ ! -f "$VENV/.complete" ]; then
    echo "setup-bench: creating $VENV (first run downloads about 100 MB)" >&2
    rm -rf "$VENV"
    mkdir -p "$ROOT"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "pandas==${PANDAS_VERSION}" "pyarrow==${PYARROW_VERSION}" \
        "datasketch==${DATASKETCH_VERSION}" >&2
    "$VENV/bin/python" -c "import pandas, pyarrow, datasketch; \
print(pandas.__version__, pyarrow.__version__, datasketch.__version__)" >&2
    touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
