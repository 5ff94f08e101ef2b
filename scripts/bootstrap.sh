#!/usr/bin/env bash
# Set up everything the service needs on a fresh machine: a virtualenv with the project installed.
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh --dev    plus the test, lint and proto tools (and buf from npm)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "bootstrap: $python not found; installing Debian's python3" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    echo "bootstrap: installing Debian's python3-venv" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$python" -m venv .venv
  fi
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if [ "${1:-}" = "--dev" ]; then
  "${pip[@]}" install -e ".[dev]"
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's npm (for buf)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  if [ ! -x node_modules/.bin/buf ]; then
    npm install --no-audit --no-fund --silent >/dev/null
  fi
else
  "${pip[@]}" install -e .
fi
