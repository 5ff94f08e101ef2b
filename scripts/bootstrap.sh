#!/usr/bin/env bash
# Set up everything the service needs on a fresh machine: a virtualenv with the project installed.
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh --dev    plus the test, lint and proto tools (and buf from npm)
# Repeated runs skip pip while pyproject.toml is unchanged (see the stamp below).
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
mode=runtime
if [ "${1:-}" = "--dev" ]; then mode=dev; fi
# The install is skipped when nothing it depends on changed: the stamp records the hash of
# pyproject.toml and what was installed ("dev" includes "runtime"), and is written only after
# pip succeeded. The project itself is installed editable, so code changes need no reinstall.
stamp=.venv/.bootstrap-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$have" != "$mode $want" ] && [ "$have" != "dev $want" ]; then
  rm -f "$stamp"
  if [ "$mode" = dev ]; then
    "${pip[@]}" install -e ".[dev]"
  else
    "${pip[@]}" install -e .
  fi
  echo "$mode $want" >"$stamp"
fi
if [ "$mode" = dev ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's npm (for buf)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  if [ ! -x node_modules/.bin/buf ]; then
    npm install --no-audit --no-fund --silent >/dev/null
  fi
fi
