# Shared by serve.sh and test.sh: create ./.venv with a Python >= 3.11 and install EchoChat
# (editable) with the given extras; again whenever pyproject.toml is newer than the install.
find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: EchoChat needs Python 3.11 or newer; install it (e.g. apt-get install python3) or set PYTHON=/path/to/python3.11" >&2
  return 1
}

# ensure_venv EXTRAS [SATISFIED_BY...]: install .[EXTRAS] unless a stamp for EXTRAS (or for
# one of SATISFIED_BY, a superset) is newer than pyproject.toml.
ensure_venv() {
  local extras="$1" name
  for name in "$@"; do
    if [ -x .venv/bin/python ] && [ .venv/.installed-"$name" -nt pyproject.toml ]; then
      return 0
    fi
  done
  local python
  python=$(find_python)
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $python"
    "$python" -m venv .venv
  fi
  echo "==> installing EchoChat [$extras] into .venv (the first run takes a minute or two)"
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -q -e ".[$extras]"
  touch .venv/.installed-"$extras"
}
