#!/usr/bin/env bash
# The test command: installs what is missing, then lint, type check and the test suite.
# PostgreSQL and Azurite are started by the tests themselves (tests/support/).
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -m unit
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
bash scripts/checkov.sh
echo "== pytest"
exec .venv/bin/python -m pytest -n 2 --dist loadfile -p no:cacheprovider "$@"
