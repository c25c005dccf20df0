#!/usr/bin/env bash
# The whole test suite: style, lints, Rust tests on real sandboxes, the HopX SDK compatibility
# suite and the MCP suite against a real server, and a final check that nothing was left on the
# machine.
# Needs root (namespaces, cgroups, nftables).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "the test suite creates real sandboxes and needs root" >&2
  exit 1
fi
./scripts/deps.sh

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace --no-fail-fast

if [ -d tests/compat ]; then
  step "HopX SDK compatibility (hopx-ai from PyPI)"
  ./tests/compat/run.sh
fi

if [ -d tests/mcp ]; then
  step "MCP tools (the official mcp client from PyPI, stdio and streamable HTTP)"
  ./tests/mcp/run.sh
fi

step "Python SDK (python/)"; ./python/tests/run.sh

step "leak check"
./scripts/leak-check.sh
