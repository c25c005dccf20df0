"""Harness: one real `hutch serve` for the session, independent of the SDK's own `LocalServer`.

Process tree (this machine's PID 1 never reaps orphans, so everything we start is our child):

    pytest
    ├── hutch __spawner DATA/run/spawner.sock   parent and reaper of every sandbox init
    ├── hutch serve --data-dir DATA ...         the "configured" server (HUTCH_URL/HUTCH_API_KEY)
    └── (tests of the self-started path: the SDK's own spawner + server, stopped by the SDK)

The server listens on 127.0.0.1:5555 with API key ``your-key`` when that port is free, so the
seed's remote examples run exactly as written; otherwise on a free port, and the example runner
substitutes the URL.

At session end the harness checks that no sandbox is left (`GET /v1/sandboxes` is empty: every
test must clean up what it made), then SIGTERMs the server, runs `hutch purge` and reaps the
spawner.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import pytest

# The repository's shared test server (also used by tests/compat and tests/mcp).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "lib"))
from hutch_server import HutchServer, deadline, hutch_binary  # noqa: E402

PYTHON_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = PYTHON_DIR / "examples"
SEED_PORT = 5555
SEED_KEY = "your-key"
TEST_DEADLINE_S = int(os.environ.get("HUTCH_SDK_TEST_DEADLINE", "180"))


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Server(HutchServer):
    """The shared test server (tests/lib/hutch_server.py) on the seed's port when it is free."""

    def __init__(self) -> None:
        super().__init__(
            hutch_binary(),
            api_key=SEED_KEY,
            pool_size="1",
            prefix="hutch-sdk-test-",
            keep_data_env="HUTCH_SDK_KEEP_DATA",
            port=SEED_PORT if _port_free(SEED_PORT) else None,
        )

    def log(self) -> str:
        return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", super().log()).splitlines()[-30:])

    # -- raw control-plane access, for checks the SDK should not be trusted with -------------

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"X-API-Key": self.api_key}, timeout=30, **kw)

    def sandbox_ids(self) -> List[str]:
        r = self.get("/v1/sandboxes", params={"limit": 100})
        r.raise_for_status()
        return [s["id"] for s in r.json().get("data") or []]


_SERVER: Dict[str, Server] = {}


@pytest.fixture(scope="session")
def hutch_server() -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.exit("the SDK tests create real sandboxes and must run as root", returncode=1)
    srv = Server()
    try:
        srv.start()
        _SERVER["srv"] = srv
        yield srv
        # Every test must have killed what it created (sandboxes, and sessions whose sandbox the
        # server made). Failing here fails the run.
        left = srv.sandbox_ids()
        assert not left, f"sandboxes left behind by the tests: {left}"
    finally:
        _SERVER.clear()
        srv.stop()


@pytest.fixture
def configured(hutch_server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Points the SDK's "local" resolution at the harness server (HUTCH_URL/HUTCH_API_KEY)."""
    monkeypatch.setenv("HUTCH_URL", hutch_server.url)
    monkeypatch.setenv("HUTCH_API_KEY", hutch_server.api_key)
    return hutch_server


@pytest.fixture
def self_started(hutch_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No server configured: the SDK starts (and must stop) its own. Checks that it did stop."""
    monkeypatch.delenv("HUTCH_URL", raising=False)
    monkeypatch.delenv("HUTCH_API_KEY", raising=False)
    before = set(_sdk_data_dirs())
    yield
    from hutch import server as hserver

    assert hserver._shared is None, "the SDK's local server is still running after the test"
    leftover = set(_sdk_data_dirs()) - before
    assert not leftover, f"the SDK's local server left data directories: {leftover}"
    assert not _sdk_processes(), f"hutch processes of the SDK's own server left: {_sdk_processes()}"


def _sdk_data_dirs() -> List[str]:
    return [str(p) for p in Path(tempfile.gettempdir()).glob("hutch-sdk-*") if "test" not in p.name]


def _sdk_processes() -> List[str]:
    """Command lines of live processes that belong to an SDK-started server (its data dirs are
    `hutch-sdk-XXXX`, the harness's `hutch-sdk-test-XXXX`)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split(") ", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "hutch-sdk-" in cmd and "hutch-sdk-test-" not in cmd and state != "Z":
            found.append(cmd)
    return found


# -------------------------------------------------------------------------------------------------
# Per-test deadline and the server log on failure.
# -------------------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with deadline(TEST_DEADLINE_S):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.failed and rep.when in ("setup", "call") and "srv" in _SERVER:
        rep.sections.append(("hutch server log (last 30 lines)", _SERVER["srv"].log()))
