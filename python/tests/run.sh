#!/usr/bin/env bash
# The Python SDK's tests: builds the server, installs the SDK (non-editable, as a user would get
# it) into python/.venv with the pinned test requirements, and runs pytest against real sandboxes.
# Needs root. Extra arguments go to pytest, e.g.  ./python/tests/run.sh -k session
# Environment: HUTCH_SDK_VENV (default python/.venv), HUTCH_BIN (default: cargo's debug build).
set -euo pipefail
cd "$(dirname "$0")/.."          # python/
repo=$(cd .. && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "python/tests: creates real sandboxes and needs root" >&2
  exit 1
fi

venv=${HUTCH_SDK_VENV:-.venv}
req=tests/requirements.txt
py=/usr/bin/python3            # Debian's (python3-venv from scripts/deps.sh); pyenv may shadow it
[ -x "$py" ] || py=$(command -v python3)

# --- venv: reused while its Python works and the pins are unchanged ------------------------------
stamp=$venv/.requirements.sha256
want=$( (sha256sum "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "python/tests: creating $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "python/tests: installing $(grep -c '==' "$req") pinned packages"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
  echo "$want" >"$stamp"
fi
# The SDK itself, always reinstalled from the working tree (non-editable: tests see the package
# exactly as installed, with its py.typed and both top-level packages).
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --force-reinstall .
rm -rf build src/*.egg-info
vpy=$(cd "$venv" && pwd)/bin/python

# --- the server binary ----------------------------------------------------------------------------
if [ -z "${HUTCH_BIN:-}" ]; then
  (cd "$repo" && cargo build -q -p hutch)
  HUTCH_BIN=$(realpath "${CARGO_TARGET_DIR:-$repo/target}/debug/hutch")
fi
export HUTCH_BIN
# Tests decide themselves which server each part uses; an outer configuration must not leak in.
unset HUTCH_URL HUTCH_API_KEY

# --- the suite (run from tests/ so `import hutch` finds the installed package, not src/) --------
rc=0
(cd tests && "$vpy" -m pytest -c pytest.ini --rootdir . -q --tb=short "$@") || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "python/tests: pytest collected no tests — counted as a failure" >&2
fi
exit "$rc"
