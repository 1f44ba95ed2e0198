#!/usr/bin/env bash
# Set up EchoChat in ./.venv (first run, or when pyproject.toml changed) and start the server
# on the embedded default: SQLite in ./echochat-data, one process, http://127.0.0.1:8000.
# Extra arguments go to `echochat serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh
ensure_venv postgres test
exec .venv/bin/echochat serve "$@"
