"""Session harness: one real `hutch serve` that the unmodified hopx-ai SDK talks to.

Process tree (this machine's PID 1 never reaps orphans, so every process we start must be
reaped by us):

    pytest
    ├── hutch __spawner DATA/run/spawner.sock   parent and reaper of every sandbox init
    └── hutch serve --data-dir DATA ...         finds the spawner's socket and uses it

At session end: SIGTERM the server, `hutch purge --data-dir DATA` (kills every sandbox and asks
the spawner to exit), then wait() for the spawner (terminating it if purge could not).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import httpx
import pytest

from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai.errors import NotFoundError

REPO = Path(__file__).resolve().parents[2]
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HutchServer:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.data_dir = Path(tempfile.mkdtemp(prefix="hutch-compat-")).resolve()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.spawner: subprocess.Popen | None = None
        self.server: subprocess.Popen | None = None

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        self._start_spawner()
        self._start_server()

    def restart_server(self) -> None:
        """SIGTERM the server and start it again on the same port and data directory (the
        spawner, and so every sandbox, keeps running)."""
        self._stop_server()
        self._start_server()

    def _start_spawner(self) -> None:
        run = self.data_dir / "run"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = run / "spawner.sock"
        spawner_log = open(run / "spawner.log", "ab")
        self.spawner = subprocess.Popen(
            [str(self.binary), "__spawner", str(sock)],
            stdin=subprocess.DEVNULL,
            stdout=spawner_log,
            stderr=spawner_log,
        )
        spawner_log.close()
        deadline = time.monotonic() + 10
        while not sock.exists():
            if self.spawner.poll() is not None:
                raise RuntimeError(f"spawner exited with {self.spawner.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("spawner did not create its socket within 10 s")
            time.sleep(0.005)

    def _start_server(self) -> None:
        log = open(self.log_path, "ab")
        self.server = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(self.data_dir),
                "--api-key",
                API_KEY,
                "--pool-size",
                POOL_SIZE,
                "--log",
                os.environ.get("HUTCH_COMPAT_LOG", "info"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"hutch serve exited with {self.server.returncode}:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=1)
                if r.status_code == 200 and r.json().get("status") == "healthy":
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hutch serve not healthy within 30 s:\n{self.log()}")
            time.sleep(0.02)

    # -- stop --------------------------------------------------------------------------------

    def _stop_server(self) -> None:
        if self.server is not None:
            if self.server.poll() is None:
                self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None

    def stop(self) -> None:
        self._stop_server()
        purge = subprocess.run(
            [str(self.binary), "purge", "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        if purge.returncode != 0:
            print(f"hutch purge failed ({purge.returncode}):\n{purge.stdout}")
        if self.spawner is not None:
            try:
                self.spawner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.spawner.terminate()
                try:
                    self.spawner.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.spawner.kill()
                    self.spawner.wait()
        # Never delete through a mount that a failed purge left behind (a sandbox root can
        # contain read-only binds of host directories).
        mounted = str(self.data_dir) in Path("/proc/self/mountinfo").read_text()
        if os.environ.get("HUTCH_COMPAT_KEEP_DATA") or purge.returncode != 0 or mounted:
            print(f"data dir kept: {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _binary() -> Path:
    b = os.environ.get("HUTCH_BIN")
    p = Path(b) if b else REPO / "target" / "debug" / "hutch"
    if not p.is_file():
        raise RuntimeError(f"hutch binary not found at {p} (set HUTCH_BIN or run tests/compat/run.sh)")
    return p


@pytest.fixture(scope="session")
def hutch() -> Iterator[HutchServer]:
    if os.geteuid() != 0:
        pytest.exit("the compatibility suite creates real sandboxes and must run as root", returncode=1)
    srv = HutchServer(_binary())
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


class TestDeadline(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        raise TestDeadline(f"test exceeded its {TEST_DEADLINE_S}s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_DEADLINE_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


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
