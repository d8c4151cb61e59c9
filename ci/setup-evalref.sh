#!/usr/bin/env bash
# Creates (once) the cached Python environment that holds the reference implementations of
# the eval metrics: Google's `rouge-score` (with nltk's Porter stemmer), `sacrebleu`,
# `seqeval`, scikit-learn and scipy (already a scikit-learn dependency, pinned so the drift
# statistics compare with a known version). `ci/reference_metrics.py`,
# `ci/reference_metrics_bench.py` and `ci/reference_drift.py` run in it; the `#[ignore]`d parity tests of `ctiforge-eval` read its interpreter from
# CTIFORGE_EVALREF_PYTHON. The environment lives outside the clone, keyed by the pinned
# versions, so CI and later sessions reuse it. Prints the interpreter path on stdout.
set -euo pipefail

ROUGE_VERSION="0.1.2"
SACREBLEU_VERSION="2.6.0"
SEQEVAL_VERSION="1.2.2"
SKLEARN_VERSION="1.9.1"
NLTK_VERSION="3.10.4"
NUMPY_VERSION="2.4.6"
# Installed with scikit-learn; pinned here without renaming the environment.
SCIPY_VERSION="1.17.1"
ROOT="${CTIFORGE_CACHE:-$HOME/.cache/ctiforge}"
VENV="$ROOT/evalref-rs${ROUGE_VERSION}-sb${SACREBLEU_VERSION}-se${SEQEVAL_VERSION}"
VENV="$VENV-sk${SKLEARN_VERSION}-nltk${NLTK_VERSION}-np${NUMPY_VERSION}"

if [ ! -f "$VENV/.complete" ]; then
    echo "setup-evalref: creating $VENV (first run downloads about 80 MB)" >&2
    rm -rf "$VENV"
    mkdir -p "$ROOT"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "rouge-score==${ROUGE_VERSION}" "sacrebleu==${SACREBLEU_VERSION}" \
        "seqeval==${SEQEVAL_VERSION}" "scikit-learn==${SKLEARN_VERSION}" \
        "nltk==${NLTK_VERSION}" "numpy==${NUMPY_VERSION}" "scipy==${SCIPY_VERSION}" >&2
    "$VENV/bin/python" -c "import rouge_score, sacrebleu, seqeval, sklearn, nltk, numpy, scipy; \
print(sacrebleu.__version__, sklearn.__version__, nltk.__version__, numpy.__version__, \
scipy.__version__)" >&2
    touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
