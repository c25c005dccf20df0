"""One sandbox per MCP session: made on first use, killed when the session ends — a closed
stdio connection, a SIGTERM to `hutch mcp`, a deleted HTTP session — together with the
sandboxes the session created, unless asked to keep them. And `/mcp` wants the API key."""

from __future__ import annotations

import json
import select
import subprocess
import time

import pytest
from conftest import API_KEY, async_wait_for, call, connect, stdio_params

pytestmark = pytest.mark.anyio


async def test_session_sandboxes_die_with_the_session(hutch, transport):
    before = hutch.sandbox_ids()
    async with connect(hutch, transport) as client:
        # Nothing is created until a tool needs a sandbox.
        await client.list_tools()
        assert hutch.sandbox_ids() == before
        own = (await call(client, "execute", {"code": "print(1)"}))["sandbox_id"]
        extra = (await call(client, "sandbox_create", {}))["sandbox_id"]
        kept = (await call(client, "sandbox_create", {"keep_after_session": True}))["sandbox_id"]
        assert {own, extra, kept} <= hutch.sandbox_ids()
    gone = await async_wait_for(lambda: not ({own, extra} & hutch.sandbox_ids()), timeout=15)
    assert gone, f"session sandboxes still there: {hutch.sandbox_ids()}"
    assert kept in hutch.sandbox_ids()
    status, _ = hutch.rest("DELETE", f"/v1/sandboxes/{kept}")
    assert status == 200


async def test_two_sessions_get_two_sandboxes(hutch, transport):
    async with connect(hutch, transport) as a, connect(hutch, transport) as b:
        sa = (await call(a, "execute", {"code": "secret = 'a'"}))["sandbox_id"]
        sb = (await call(b, "execute", {"code": "print(globals().get('secret'))"}))
        assert sb["sandbox_id"] != sa
        assert sb["stdout"] == "None\n"


def _rpc(proc: subprocess.Popen, msg: dict, *, want_id: int | None = None, timeout: float = 60) -> dict | None:
    proc.stdin.write((json.dumps(msg) + "\n").encode())
    proc.stdin.flush()
    if want_id is None:
        return None
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("hutch mcp closed its output")
        buf = line
        reply = json.loads(buf)
        if reply.get("id") == want_id:
            return reply
    raise AssertionError(f"no reply to request {want_id}")


def test_sigterm_to_stdio_server_kills_its_sandbox(hutch):
    """A client that stops `hutch mcp` with a signal instead of closing stdin: the sandbox still
    goes. Plain JSON-RPC over the pipes, so the process can be signalled directly."""
    params = stdio_params(hutch)
    proc = subprocess.Popen(
        [params.command, *params.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        init = _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            },
            want_id=1,
        )
        assert init["result"]["serverInfo"]["name"] == "hutch", init
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        reply = _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "execute", "arguments": {"code": "print('hi')"}},
            },
            want_id=2,
        )
        result = reply["result"]
        assert result.get("isError") is False, result
        sandbox = result["structuredContent"]["sandbox_id"]
        assert sandbox in hutch.sandbox_ids()
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        assert sandbox not in hutch.sandbox_ids()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_http_endpoint_wants_the_api_key(hutch):
    init = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    status, _, body = hutch.request("POST", "/mcp", headers=headers, body=init)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "UNAUTHORIZED"
    status, _, body = hutch.request("POST", "/mcp", headers={**headers, "X-API-Key": "wrong"}, body=init)
    assert status == 401
    # Bearer works like X-API-Key, as on the control plane.
    status, resp_headers, body = hutch.request(
        "POST", "/mcp", headers={**headers, "Authorization": f"Bearer {API_KEY}"}, body=init
    )
    assert status == 200, body
    session = resp_headers["mcp-session-id"]
    assert b'"serverInfo"' in body and b"hutch" in body
    status, _, _ = hutch.request(
        "DELETE", "/mcp", headers={"X-API-Key": API_KEY, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    )
    assert status == 204


async def test_a_used_sandbox_outlives_its_timeout(hutch):
    """The session's sandbox timeout is an idle timeout: calls push it back."""
    params = stdio_params(hutch, "--sandbox-timeout", "6")
    from mcp import Client

    async with Client(params, read_timeout_seconds=60) as client:
        own = (await call(client, "execute", {"code": "n = 0"}))["sandbox_id"]
        started = time.monotonic()
        while time.monotonic() - started < 10:  # well past the 6 s it was created with
            r = await call(client, "execute", {"code": "n += 1\nprint(n)"})
            assert r["sandbox_id"] == own
            await anyio_sleep(1.5)
        status, body = hutch.rest("GET", f"/v1/sandboxes/{own}")
        assert status == 200 and body["status"] == "running", body


async def test_a_sandbox_deleted_behind_the_sessions_back_is_replaced(hutch, transport):
    async with connect(hutch, transport) as client:
        own = (await call(client, "execute", {"code": "x = 1"}))["sandbox_id"]
        status, _ = hutch.rest("DELETE", f"/v1/sandboxes/{own}")
        assert status == 200
        r = await client.call_tool("execute", {"code": "print(x)"})
        assert r.is_error
        assert "no longer exists" in r.content[0].text and own in r.content[0].text
        fresh = await call(client, "execute", {"code": "print('new')"})
        assert fresh["sandbox_id"] != own and fresh["stdout"] == "new\n"


async def anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)
