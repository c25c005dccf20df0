"""Agent tokens (spec §2.2; §14 flow 10: refresh after a 401).

There is no revocation endpoint, so the SDK's 401 → refresh → retry path is forced from the
client side: the agent client's token is swapped for garbage, the next call gets 401
INVALID_TOKEN from the server, the SDK calls `POST …/token/refresh` and retries.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import httpx

from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai._token_cache import _token_cache

from conftest import TEMPLATE

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _agent(base_url: str, token: str, path: str = "/env") -> httpx.Response:
    return httpx.get(f"{base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_create_and_refresh_token_shape(base_url, raw):
    body = raw.post("/v1/sandboxes", json={"template_name": TEMPLATE}).raise_for_status().json()
    sid = body["id"]
    try:
        assert body["auth_token"] and RFC3339_Z.match(body["token_expires_at"]), body
        expires = datetime.fromisoformat(body["token_expires_at"].replace("Z", "+00:00"))
        # > 1 h, or the SDK refreshes on every new Sandbox object.
        assert expires - datetime.now(timezone.utc) > timedelta(hours=2)
        # Refresh: POST with a JSON content type and no body (as the SDK sends it).
        r = raw.post(f"/v1/sandboxes/{sid}/token/refresh", headers={"Content-Type": "application/json"})
        r.raise_for_status()
        fresh = r.json()
        assert fresh["auth_token"] and fresh["auth_token"] != body["auth_token"]
        assert RFC3339_Z.match(fresh["token_expires_at"])
        # Both tokens work.
        for tok in (body["auth_token"], fresh["auth_token"]):
            h = _agent(base_url, tok, "/health")
            assert h.status_code == 200 and h.json()["status"] == "healthy"
    finally:
        raw.delete(f"/v1/sandboxes/{sid}")
    # After the kill neither token is accepted.
    assert _agent(base_url, body["auth_token"]).status_code == 401
    assert raw.post(f"/v1/sandboxes/{sid}/token/refresh").status_code == 404


def test_connect_refreshes_and_old_token_keeps_working(sandbox, base_url, api_key):
    sandbox.files.write("/workspace/t.txt", "token test")
    old = sandbox.get_token()
    other = Sandbox.connect(sandbox.sandbox_id, base_url=base_url, api_key=api_key)
    new = other.get_token()
    assert new != old
    assert _agent(base_url, old).status_code == 200
    assert _agent(base_url, new).status_code == 200
    # Both SDK objects keep working (the first one still holds the old token).
    assert sandbox.files.read("/workspace/t.txt") == "token test"
    assert other.files.read("/workspace/t.txt") == "token test"


def test_token_picks_the_sandbox(make_sandbox, base_url):
    a, b = make_sandbox(), make_sandbox()
    a.files.write("/workspace/who.txt", "a")
    b.files.write("/workspace/who.txt", "b")
    for sb, want in ((a, "a"), (b, "b")):
        r = httpx.get(f"{base_url}/files/read", params={"path": "/workspace/who.txt"},
                      headers={"Authorization": f"Bearer {sb.get_token()}"})
        assert r.json()["content"] == want


def test_sdk_refreshes_after_401(sandbox, monkeypatch):
    sandbox.files.write("/workspace/r.txt", "survives a 401")  # agent client initialised
    refreshes = []
    real = Sandbox.refresh_token

    def counting(self):
        refreshes.append(self.sandbox_id)
        return real(self)

    monkeypatch.setattr(Sandbox, "refresh_token", counting)
    sandbox._agent_client.update_jwt_token("garbage-token-for-the-401-path")
    assert sandbox.files.read("/workspace/r.txt") == "survives a 401"
    assert refreshes == [sandbox.sandbox_id]
    good = _token_cache[sandbox.sandbox_id].token
    assert sandbox._agent_client._jwt_token == good != "garbage-token-for-the-401-path"
    # A POST is retried as well (its body is re-sent).
    sandbox._agent_client.update_jwt_token("garbage-again")
    assert sandbox.commands.run("echo retried").stdout == "retried\n"
    assert len(refreshes) == 2


async def test_async_sdk_refreshes_after_401(async_sandbox, monkeypatch):
    await async_sandbox.files.write("/workspace/r.txt", "async survives")
    calls = []
    real = AsyncSandbox.refresh_token

    async def counting(self):
        calls.append(1)
        return await real(self)

    monkeypatch.setattr(AsyncSandbox, "refresh_token", counting)
    async_sandbox._agent_client.update_jwt_token("garbage-async-token")
    assert await async_sandbox.files.read("/workspace/r.txt") == "async survives"
    assert calls == [1]


def test_sync_websocket_with_a_stale_token_fails_cleanly(sandbox, base_url):
    """WebSockets are not refreshed by the SDK; a bad token must fail the upgrade (401)."""
    r = httpx.get(f"{base_url}/terminal", headers={
        "Authorization": "Bearer garbage", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status_code == 401
