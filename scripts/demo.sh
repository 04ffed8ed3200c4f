#!/usr/bin/env bash
# The main job on the embedded default: a realistic CRM sample synced into ./des-demo.db (SQLite),
# then a convergence check against the generated truth. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m shared demo "$@"
