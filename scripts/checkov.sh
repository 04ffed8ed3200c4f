#!/usr/bin/env bash
# Static analysis of the Bicep templates (infra/) with checkov, offline (--skip-download: no platform
# policies, no network). checkov lives in its own virtual environment (.venv-checkov), created here
# when missing, so its dependency pins never touch the project's .venv. Zero failures expected; a check
# the templates cannot meet is suppressed inline, next to the resource, with `#checkov:skip=CKV_...: why`.
# Extra arguments go to checkov, e.g.  bash scripts/checkov.sh --compact
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOV_VERSION="3.3.30"
VENV=".venv-checkov"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/checkov" ] || ! "$VENV/bin/python" -m pip show checkov 2>/dev/null | grep -qx "Version: $CHECKOV_VERSION"; then
    echo "== creating $VENV (checkov $CHECKOV_VERSION)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    # pip's notes about unused local index locations are noise here; real errors still fail the step.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi
echo "== checkov (bicep)"
exec "$VENV/bin/checkov" --directory infra --framework bicep --skip-download --quiet --compact "$@"
