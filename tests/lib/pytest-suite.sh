#!/usr/bin/env bash
# Runs one Python test suite of tests/ against real sandboxes: a venv with the suite's pinned
# requirements (reused while its Python works and the pins are unchanged), the debug `hutch`
# binary, then pytest on the suite's directory (or the paths given). Sourced by each suite's
# run.sh, which sets:
#   suite    the suite's directory, e.g. tests/compat
#   venv     the venv's directory
#   probe    Python modules whose import proves the venv is complete, e.g. "mcp, pytest"
# and passes its own arguments on: `run_suite "$@"`.
set -euo pipefail

run_suite() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$suite: creates real sandboxes and needs root" >&2
    exit 1
  fi
  local req=$suite/requirements.txt
  # Debian's python3 (python3-venv is installed by scripts/deps.sh); a pyenv shim may shadow it.
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)

  local stamp=$venv/.requirements.sha256 want
  want=$( (sha256sum "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
  if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "$suite: creating $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
    || ! "$venv/bin/python" -c "import $probe" >/dev/null 2>&1; then
    echo "$suite: installing $(grep -c '==' "$req") pinned packages"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
    echo "$want" >"$stamp"
  fi

  # The server binary (debug; the Rust tests usually built it already).
  cargo build -q -p hutch
  local hutch_bin
  hutch_bin=$(realpath "${CARGO_TARGET_DIR:-target}/debug/hutch")

  # pytest applies `testpaths` only when run from the rootdir; from the repository root it would
  # collect every suite. Without a path among the arguments, name this suite's.
  local has_path= a
  for a in "$@"; do
    case $a in -*) ;; *) [ -e "${a%%::*}" ] && has_path=1 ;; esac
  done
  [ -n "$has_path" ] || set -- "$@" "$suite"
  local rc=0
  HUTCH_BIN=$hutch_bin "$venv/bin/python" -m pytest -c "$suite/pytest.ini" --rootdir "$suite" \
    -q --tb=short "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "$suite: pytest collected no tests — counted as a failure" >&2
  fi
  return "$rc"
}
