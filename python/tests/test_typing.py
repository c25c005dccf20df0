"""The SDK ships `py.typed`: its sources and the seed's examples must pass `mypy --strict`."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import EXAMPLES, PYTHON_DIR


def test_mypy_strict() -> None:
    env = dict(os.environ, MYPYPATH=str(PYTHON_DIR / "src"))
    targets = [str(PYTHON_DIR / "src" / "hutch"), str(PYTHON_DIR / "src" / "sandbox")]
    targets += sorted(str(p) for p in EXAMPLES.glob("*.py"))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull,
         *targets],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
