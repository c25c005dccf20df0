#!/usr/bin/env bash
# HopX SDK compatibility suite: the unmodified `hopx-ai` Python SDK (pinned in requirements.txt)
# against one real `hutch serve`. Needs root (real sandboxes). Extra arguments go to pytest, e.g.
#   ./tests/compat/run.sh -k files          ./tests/compat/run.sh tests/compat/test_code.py
# Environment: HUTCH_COMPAT_VENV (default .venv-compat), HUTCH_COMPAT_LOG (server log filter),
# HUTCH_COMPAT_KEEP_DATA=1 keeps the server's data directory (and log) for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."

suite=tests/compat
venv=${HUTCH_COMPAT_VENV:-.venv-compat}
probe="hopx_ai, pytest, pytest_asyncio"
source tests/lib/pytest-suite.sh
run_suite "$@"
