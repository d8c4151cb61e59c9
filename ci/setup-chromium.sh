#!/usr/bin/env bash
# Finds (or installs, once) the headless Chromium that the `#[ignore]`d rendering test of
# `ctiforge-eval` (`eval/tests/html.rs`) drives to load `report.html`, dump its DOM and take
# a screenshot. An already working `chromium` or `chromium-browser` on PATH is used as is;
# otherwise Debian's `chromium` package is installed with apt (root, or sudo, needed). The
# tests read the binary from CTIFORGE_CHROMIUM. Progress goes to stderr; the browser path is
# the last line on stdout.
set -euo pipefail

# A browser that starts and reports its version; prints its path.
find_chromium() {
    local name path
    for name in chromium chromium-browser; do
        path="$(command -v "$name" 2>/dev/null)" || continue
        if "$path" --version >&2 2>/dev/null; then
            echo "$path"
            return 0
        fi
    done
    return 1
}

if ! find_chromium >/dev/null 2>&1; then
    echo "setup-chromium: installing Debian's chromium package (about 100 MB)" >&2
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "setup-chromium: not root and no sudo; install chromium by hand" >&2
            exit 1
        }
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq >&2
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
fi
find_chromium || {
    echo "setup-chromium: chromium is installed but does not start (\`chromium --version\`)" >&2
    exit 1
}
