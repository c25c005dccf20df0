"""Session harness: one real `hutch serve` (tests/lib/hutch_server.py: its own spawner and data
directory, everything purged and reaped at the end) that the unmodified hopx-ai SDK talks to.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from hutch_server import HutchServer, deadline, hutch_binary  # noqa: E402

from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai.errors import NotFoundError

API_KEY = "compat-test-key-0123456789"
TEMPLATE = "code-interpreter"
POOL_SIZE = os.environ.get("HUTCH_COMPAT_POOL_SIZE", "2")
# Longest any single test may run before it is failed (SIGALRM; no plugin needed).
TEST_DEADLINE_S = int(os.environ.get("HUTCH_COMPAT_TEST_DEADLINE", "120"))

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the test modules (imported as `from conftest import ...`).
# ---------------------------------------------------------------------------------------------


def wait_until(
    probe: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Polls `probe` until it returns a truthy value; returns it. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
        time.sleep(interval)
        last = probe()
    return last


async def async_wait_until(probe, *, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    """Async twin of `wait_until`; `probe` is an async callable."""
    import asyncio

    deadline = time.monotonic() + timeout
    last = await probe()
    while not last:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
        await asyncio.sleep(interval)
        last = await probe()
    return last


def kill_quietly(sb) -> None:
    """Kills a sync sandbox; an already-gone sandbox is fine."""
    with contextlib.suppress(NotFoundError):
        sb.kill()


async def akill_quietly(sb) -> None:
    with contextlib.suppress(NotFoundError):
        await sb.kill()


# ---------------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hutch() -> Iterator[HutchServer]:
    if os.geteuid() != 0:
        pytest.exit("the compatibility suite creates real sandboxes and must run as root", returncode=1)
    srv = HutchServer(
        hutch_binary(),
        api_key=API_KEY,
        pool_size=POOL_SIZE,
        log_filter=os.environ.get("HUTCH_COMPAT_LOG", "info"),
        prefix="hutch-compat-",
        keep_data_env="HUTCH_COMPAT_KEEP_DATA",
    )
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def base_url(hutch: HutchServer) -> str:
    return hutch.url


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture
def make_sandbox(base_url: str, api_key: str):
    """Factory for extra sync sandboxes; every one is killed at teardown."""
    made: list[Sandbox] = []

    def make(**kw) -> Sandbox:
        kw.setdefault("template", TEMPLATE)
        sb = Sandbox.create(base_url=base_url, api_key=api_key, **kw)
        made.append(sb)
        return sb

    yield make
    for sb in made:
        kill_quietly(sb)


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    """A fresh running sandbox from `code-interpreter`, killed at teardown."""
    return make_sandbox()


@pytest.fixture
async def make_async_sandbox(base_url: str, api_key: str):
    made: list[AsyncSandbox] = []

    async def make(**kw) -> AsyncSandbox:
        kw.setdefault("template", TEMPLATE)
        sb = await AsyncSandbox.create(base_url=base_url, api_key=api_key, **kw)
        made.append(sb)
        return sb

    yield make
    for sb in made:
        await akill_quietly(sb)


@pytest.fixture
async def async_sandbox(make_async_sandbox) -> AsyncSandbox:
    """A fresh running sandbox driven by the async SDK, killed at teardown."""
    return await make_async_sandbox()


@pytest.fixture
def raw(base_url: str, api_key: str) -> Iterator[httpx.Client]:
    """A plain httpx client on the server (for checks the SDK cannot express)."""
    with httpx.Client(base_url=base_url, headers={"X-API-Key": api_key}, timeout=30) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# Per-test deadline and server log on failure.
# ---------------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with deadline(TEST_DEADLINE_S):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        srv = _SESSION_SERVER.get("srv")
        if srv is not None:
            tail = "\n".join(_ANSI.sub("", srv.log()).splitlines()[-20:])
            rep.sections.append(("hutch server log (last 20 lines)", tail))


_SESSION_SERVER: dict = {}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="session", autouse=True)
def _remember_server(hutch):
    _SESSION_SERVER["srv"] = hutch
    yield
    _SESSION_SERVER.clear()
