#!/usr/bin/env bash
# MCP suite: the official `mcp` Python SDK (pinned in requirements.txt) as the client of
# `hutch mcp` (stdio) and of `/mcp` on one real `hutch serve`. Needs root (real sandboxes). Extra
# arguments go to pytest, e.g.
#   ./tests/mcp/run.sh -k web_app          ./tests/mcp/run.sh tests/mcp/test_tools.py
# Environment: HUTCH_MCP_VENV (default .venv-mcp), HUTCH_MCP_TEST_LOG (server log filter),
# HUTCH_MCP_KEEP_DATA=1 keeps the server's data directory (and log) for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/mcp: creates real sandboxes and needs root" >&2
  exit 1
fi

here=tests/mcp
venv=${HUTCH_MCP_VENV:-.venv-mcp}
req=$here/requirements.txt

# Debian's python3 (python3-venv is installed by scripts/deps.sh); a pyenv shim may shadow it.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

# --- venv, reused when its Python still works and the pins have not changed -------------------
stamp=$venv/.mcp-requirements.sha256
want=$( (sha256sum "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "tests/mcp: creating $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
  || ! "$venv/bin/python" -c 'import mcp, pytest' >/dev/null 2>&1; then
  echo "tests/mcp: installing $(grep -c '==' "$req") pinned packages"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
  echo "$want" >"$stamp"
fi

# --- the server binary (debug; the Rust tests usually built it already) ------------------------
cargo build -q -p hutch
hutch_bin=$(realpath "${CARGO_TARGET_DIR:-target}/debug/hutch")

# --- the suite ---------------------------------------------------------------------------------
# pytest applies `testpaths` only when run from the rootdir; from the repository root it would
# collect every suite under tests/. Without a path among the arguments, name this suite's.
has_path=
for a in "$@"; do
  case $a in -*) ;; *) [ -e "${a%%::*}" ] && has_path=1 ;; esac
done
[ -n "$has_path" ] || set -- "$@" "$here"
rc=0
HUTCH_BIN=$hutch_bin "$venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" \
  -q --tb=short "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "tests/mcp: pytest collected no tests — counted as a failure" >&2
fi
exit "$rc"
