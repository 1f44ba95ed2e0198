#!/usr/bin/env bash
# Set up ./.venv with the test tools and run everything CI runs: lint, types, layer rules,
# then the unit, integration (PostgreSQL + Redis) and browser (Chromium) suites.
# Extra arguments go to pytest (e.g. tests/unit -k config).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh
ensure_venv test

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian's chromium (and a colour emoji font, for the screenshots)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
  else
    echo "warning: /usr/bin/chromium is missing; browser tests will be skipped (install it: sudo apt-get install -y chromium)" >&2
  fi
fi

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/pytest "$@"
