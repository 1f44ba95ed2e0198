#!/usr/bin/env bash
# Set up ./.venv with the test tools and run everything CI runs: lint, types, layer rules,
# then the unit, integration (PostgreSQL + Redis) and browser (Chromium) suites.
# Extra arguments go to pytest (e.g. tests/unit -k config) and run in one process; without
# arguments pytest runs the whole suite in parallel (see below).
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
# With no arguments the whole suite runs in ECHOCHAT_TEST_WORKERS processes (default 2, the
# machine's cores; 0 runs it in this one) with pytest-xdist, a test module at a time per
# process, so a module's shared server stays in one process (each has its own browser).
# With arguments (a file, -k, -x...) pytest runs them in this process unless they say -n.
if [ $# -eq 0 ] && [ "${ECHOCHAT_TEST_WORKERS:-2}" != 0 ]; then
  set -- -n "${ECHOCHAT_TEST_WORKERS:-2}" --dist loadfile
fi
exec .venv/bin/pytest "$@"
