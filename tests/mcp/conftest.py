"""Session harness: one real `hutch serve`, driven through MCP by the official `mcp` client.

Process tree (this machine's PID 1 never reaps orphans, so every process we start must be
reaped by us):

    pytest
    ├── hutch __spawner DATA/run/spawner.sock   parent and reaper of every sandbox init
    ├── hutch serve --data-dir DATA ...         serves /mcp (streamable HTTP)
    └── hutch mcp --url ...                     one per stdio test, started by the mcp client

Every test that takes `mcp` runs twice, over stdio and over streamable HTTP. At session end:
SIGTERM the server, `hutch purge --data-dir DATA` (kills every sandbox and asks the spawner to
exit), then wait() for the spawner; before that, a check that no test left a sandbox behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from hutch_server import HutchServer, deadline, hutch_binary  # noqa: E402

API_KEY = "mcp-test-key-0123456789"
# Longest any single test may run before it is failed (SIGALRM; no plugin needed).
TEST_DEADLINE_S = int(os.environ.get("HUTCH_MCP_TEST_DEADLINE", "180"))


# ---------------------------------------------------------------------------------------------
# Async tests run on anyio's pytest plugin (the one the mcp SDK's own tests use): it runs an
# async fixture's setup and teardown in one task, which the client's task groups require. Test
# modules mark themselves with `pytestmark = pytest.mark.anyio`.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------------


class McpTestServer(HutchServer):
    """The shared server, plus plain HTTP checks of its own."""

    # -- plain HTTP (stdlib, so the checks do not depend on the client under test) ----------

    def request(
        self, method: str, path: str, *, host: str | None = None, headers: dict | None = None,
        body: bytes | None = None, timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if host is not None:
                hdrs["Host"] = host
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def rest(self, method: str, path: str, *, auth: bool = True, body: Any = None) -> tuple[int, Any]:
        headers = {"X-API-Key": API_KEY} if auth else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, _, raw = self.request(method, path, headers=headers, body=data)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def sandbox_ids(self) -> set[str]:
        status, body = self.rest("GET", "/v1/sandboxes?limit=1000")
        assert status == 200, body
        return {s["id"] for s in body["data"]}

    def fetch_preview(self, url: str, path: str = "/") -> tuple[int, bytes]:
        """GETs a preview URL the way a browser would, from this machine: `*.localhost` names
        need no DNS here (browsers and curl resolve them to the loopback themselves), so the
        connection goes to 127.0.0.1 with the URL's host in `Host`."""
        u = urllib.parse.urlsplit(url)
        assert u.hostname and u.hostname.endswith(".localhost"), url
        assert u.port == self.port, url
        status, _, body = self.request("GET", (u.path.rstrip("/") or "") + path, host=u.netloc)
        return status, body


@pytest.fixture(scope="session")
def hutch() -> Iterator[McpTestServer]:
    if os.geteuid() != 0:
        pytest.exit("the MCP suite creates real sandboxes and must run as root", returncode=1)
    srv = McpTestServer(
        hutch_binary(),
        api_key=API_KEY,
        pool_size="1",
        log_filter=os.environ.get("HUTCH_MCP_TEST_LOG", "info"),
        prefix="hutch-mcp-",
        keep_data_env="HUTCH_MCP_KEEP_DATA",
    )
    try:
        srv.start()
        _SESSION_SERVER["srv"] = srv
        yield srv
        # No test may leave a sandbox behind: each session's sandboxes die with the session.
        if not wait_for(lambda: not srv.sandbox_ids(), timeout=15):
            pytest.fail(f"sandboxes left behind by the MCP suite: {srv.sandbox_ids()}")
    finally:
        _SESSION_SERVER.clear()
        srv.stop()


# ---------------------------------------------------------------------------------------------
# MCP clients over both transports.
# ---------------------------------------------------------------------------------------------


def stdio_params(srv: McpTestServer, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(srv.binary),
        args=["mcp", "--url", srv.url, "--api-key", API_KEY, "--log", "info", *extra],
    )


@contextlib.asynccontextmanager
async def connect(srv: McpTestServer, transport: str) -> AsyncIterator[Client]:
    """An MCP client session with the server over `transport` (`stdio` or `http`)."""
    if transport == "stdio":
        async with Client(stdio_params(srv), read_timeout_seconds=120) as client:
            yield client
    else:
        async with httpx2.AsyncClient(
            headers={"X-API-Key": API_KEY}, timeout=httpx2.Timeout(120)
        ) as http:
            async with Client(
                streamable_http_client(f"{srv.url}/mcp", http_client=http), read_timeout_seconds=120
            ) as client:
                yield client


@pytest.fixture(params=["stdio", "http"])
def transport(request) -> str:
    return request.param


@pytest.fixture
async def mcp(hutch: McpTestServer, transport: str) -> AsyncIterator[Client]:
    async with connect(hutch, transport) as client:
        yield client


class ToolFailed(AssertionError):
    pass


async def call(client: Client, tool: str, args: dict | None = None) -> dict:
    """Calls a tool that must succeed; returns its structured result."""
    r = await client.call_tool(tool, args or {})
    text = " ".join(getattr(c, "text", "") for c in r.content)
    if r.is_error:
        raise ToolFailed(f"{tool} failed: {text}")
    assert r.structured_content is not None, text
    assert json.loads(text) == r.structured_content
    return r.structured_content


async def call_error(client: Client, tool: str, args: dict | None = None) -> str:
    """Calls a tool that must report a sandbox failure (`isError: true`); returns its text."""
    r = await client.call_tool(tool, args or {})
    text = " ".join(getattr(c, "text", "") for c in r.content)
    assert r.is_error, f"{tool} succeeded: {r.structured_content}"
    return text


async def call_invalid(client: Client, tool: str, args: dict) -> MCPError:
    """Calls a tool with input it must refuse as a protocol error."""
    with pytest.raises(MCPError) as e:
        await client.call_tool(tool, args)
    return e.value


def wait_for(probe, *, timeout: float = 15.0, interval: float = 0.1):
    """Polls `probe` until it returns a truthy value, which is returned; None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


async def async_wait_for(probe, *, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(interval)


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
            tail = "\n".join(_ANSI.sub("", srv.log()).splitlines()[-25:])
            rep.sections.append(("hutch server log (last 25 lines)", tail))


_SESSION_SERVER: dict = {}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
