#!/usr/bin/env bash
# The commands the CI definitions in ci/github/ and ci/gitlab/ run, in one place, so that
# `cargo xtask ci-pipeline` and the test suite run exactly what CI runs.
#
#   ci/pipeline-job.sh run     prep → train → eval → export → drift → register → promote;
#                              the eval report and the summary land in $CTIFORGE_PUBLISH
#   ci/pipeline-job.sh drift   scheduled drift check: the champion's training data against
#                              new data, recorded on the champion (exit 4 on `fail`)
#
# Environment:
#   CTIFORGE             the ctiforge binary (default: ctiforge on PATH)
#   MLFLOW_TRACKING_URI  the registry (CI: from a secret); MLFLOW_TRACKING_USERNAME /
#                        MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN for auth
#   PIPELINE_CONFIG      the pipeline file (default: configs/pipeline/demo.toml)
#   MODEL_NAME           overrides the file's pipeline.model_name (optional)
#   PIPELINE_OUT         output folder (default: runs/ci)
#   CTIFORGE_PUBLISH     where the published report goes (default: $PIPELINE_OUT/publish)
#   NEW_DATA_RECIPE      drift: a prep recipe for the new data (default: the TRAM recipe)
#   NEW_DATA_SET         drift: one --set override for that recipe (optional)
set -euo pipefail

CTIFORGE="${CTIFORGE:-ctiforge}"
PIPELINE_CONFIG="${PIPELINE_CONFIG:-configs/pipeline/demo.toml}"
PIPELINE_OUT="${PIPELINE_OUT:-runs/ci}"
CTIFORGE_PUBLISH="${CTIFORGE_PUBLISH:-$PIPELINE_OUT/publish}"
NEW_DATA_RECIPE="${NEW_DATA_RECIPE:-configs/prep/tram-techniques.toml}"

registry_args=()
if [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
    registry_args=(--registry "$MLFLOW_TRACKING_URI")
fi
name_args=()
if [ -n "${MODEL_NAME:-}" ]; then
    name_args=(--model-name "$MODEL_NAME")
fi

case "${1:-}" in
run)
    mkdir -p "$CTIFORGE_PUBLISH"
    status=0
    "$CTIFORGE" pipeline --config "$PIPELINE_CONFIG" --out "$PIPELINE_OUT" \
        "${registry_args[@]}" "${name_args[@]}" --json >"$CTIFORGE_PUBLISH/summary.json" \
        || status=$?
    # 3: the gate refused the candidate. It is registered, not promoted: a decision, not
    # a failure of the job; the summary says why.
    if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
        echo "pipeline-job: the pipeline failed (exit $status)" >&2
        exit "$status"
    fi
    cp "$PIPELINE_OUT/eval/tuned/report.html" "$CTIFORGE_PUBLISH/eval-report.html"
    cp "$PIPELINE_OUT/eval/tuned/eval.json" "$CTIFORGE_PUBLISH/eval.json"
    if [ -f "$PIPELINE_OUT/drift/drift.html" ]; then
        cp "$PIPELINE_OUT/drift/drift.html" "$CTIFORGE_PUBLISH/drift.html"
    fi
    if [ "$status" -eq 3 ]; then
        echo "pipeline-job: registered; the gate kept the current champion" >&2
    else
        echo "pipeline-job: registered and promoted" >&2
    fi
    ;;
drift)
    model="${MODEL_NAME:-}"
    if [ -z "$model" ]; then
        model=$(sed -n 's/^model_name *= *"\(.*\)"/\1/p' "$PIPELINE_CONFIG" | head -1)
    fi
    recipe=$(sed -n '/^\[prep\]/,/^\[/s/^config *= *"\(.*\)"/\1/p' "$PIPELINE_CONFIG" | head -1)
    mkdir -p "$PIPELINE_OUT/drift-check"
    # The champion's training data, rebuilt from its recipe (prep is deterministic), and
    # the new data.
    "$CTIFORGE" prep --config "$recipe" --out "$PIPELINE_OUT/drift-check/reference" --force
    new_set=()
    if [ -n "${NEW_DATA_SET:-}" ]; then
        new_set=(--set "$NEW_DATA_SET")
    fi
    "$CTIFORGE" prep --config "$NEW_DATA_RECIPE" --out "$PIPELINE_OUT/drift-check/current" \
        --force "${new_set[@]}"
    "$CTIFORGE" registry drift "${registry_args[@]}" \
        --reference "$PIPELINE_OUT/drift-check/reference" \
        --current "$PIPELINE_OUT/drift-check/current" \
        --config configs/drift/default.toml \
        --attach "$model@champion" --out "$CTIFORGE_PUBLISH/drift"
    ;;
*)
    echo "usage: ci/pipeline-job.sh run|drift (see the comments at the top)" >&2
    exit 2
    ;;
esac
