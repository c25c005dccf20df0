#!/usr/bin/env bash
# MCP suite: the official `mcp` Python SDK (pinned in requirements.txt) as the client of
# `hutch mcp` (stdio) and of `/mcp` on one real `hutch serve`. Needs root (real sandboxes). Extra
# arguments go to pytest, e.g.
#   ./tests/mcp/run.sh -k web_app          ./tests/mcp/run.sh tests/mcp/test_tools.py
# Environment: HUTCH_MCP_VENV (default .venv-mcp), HUTCH_MCP_TEST_LOG (server log filter),
# HUTCH_MCP_KEEP_DATA=1 keeps the server's data directory (and log) for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."

suite=tests/mcp
venv=${HUTCH_MCP_VENV:-.venv-mcp}
probe="mcp, pytest"
source tests/lib/pytest-suite.sh
run_suite "$@"
