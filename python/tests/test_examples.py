"""The seed document's examples (python/examples/*.py) run as written, as separate programs.

Each runs twice where it uses local sandboxes: against the configured server (HUTCH_URL /
HUTCH_API_KEY, as with `hutch serve` running) and with no server configured, when the SDK starts
and removes its own. The remote parts use the seed's literal ``http://127.0.0.1:5555`` /
``your-key``: the harness server listens there (or, if that port is taken, the URL is
substituted in a copy of the file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import EXAMPLES, SEED_PORT

#: Each example and lines its output must contain.
EXPECTED: Dict[str, List[str]] = {
    "persistent_context.py": ["Mean: 3.0", "'cache_hit': False"],
    "local_sandbox_methods.py": ["total_executions", "session-"],
    "python_sandbox.py": ["Hello World", "Hello from microVM"],
    "node_sandbox.py": ["Hello from Node.js"],
    "local_remote.py": [f"{sys.version_info[0]}."],
    "sandbox_options.py": ["true info"],
    "execution_results.py": ["'Hello\\n'", "total"],
    "metrics_monitoring.py": ["running=True"],
    "error_handling.py": [
        "Error type: SyntaxError",
        "Traceback:",
        "Execution timed out after 2 seconds",
    ],
    "session_persistence.py": ["42"],
    "artifacts.py": ["Created 1 artifacts", "/workspace/artifacts"],
}
#: Examples that only talk to the seed's remote server.
REMOTE_ONLY = {"node_sandbox.py"}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


def _run(name: str, server, tmp_path: Path, env: Dict[str, str]) -> str:
    path = EXAMPLES / name
    if server.port != SEED_PORT:
        copy = tmp_path / name
        copy.write_text(path.read_text().replace(f"127.0.0.1:{SEED_PORT}", f"127.0.0.1:{server.port}"))
        path = copy
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}"
    for want in EXPECTED[name]:
        assert want in proc.stdout, f"{name}: {want!r} not in output:\n{proc.stdout}"
    return proc.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_with_configured_server(name: str, configured, tmp_path: Path) -> None:
    _run(name, configured, tmp_path, dict(os.environ))


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - REMOTE_ONLY))
def test_example_with_self_started_server(name: str, hutch_server, self_started, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HUTCH_URL", "HUTCH_API_KEY")}
    _run(name, hutch_server, tmp_path, env)
