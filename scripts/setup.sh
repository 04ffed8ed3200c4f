#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently:
#   Debian packages (PostgreSQL server, ODBC drivers), a virtualenv with the pinned requirements and the
#   project installed editable with its `cli` extra (demo, bench, `des api`),
#   and Azurite from npm (package.json). Safe to run again; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(postgresql unixodbc unixodbc-dev tdsodbc odbc-postgresql libsqliteodbc chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements.sha"
# Every requirements file (requirements.txt: the function app; requirements-cli.txt: the `cli` extra;
# requirements-dev.txt: tests and linters), constraints.txt and pyproject.toml feed the stamp.
want=$(cat requirements*.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python requirements"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # constraints.txt pins the transitive packages too (the whole environment CI ran).
  .venv/bin/python -m pip install -q -r requirements-dev.txt -c constraints.txt
  # The project itself, editable, with the tooling extra (its pins are already installed above).
  .venv/bin/python -m pip install -q -e '.[cli]' -c constraints.txt
  echo "$want" > "$stamp"
fi

if [ -f package.json ]; then
  if [ ! -x node_modules/.bin/azurite ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    command -v npm >/dev/null 2>&1 || { echo "setup: npm is needed (install Node.js)" >&2; exit 1; }
    echo "setup: installing Azurite (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi
