"""Control-plane lifecycle through the SDK (spec §6, §12; §14 flows 1 and 8)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import httpx
import pytest

import hopx_ai.sandbox as sdk_sandbox_module
from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai.errors import AgentError, NotFoundError

from conftest import TEMPLATE, async_wait_until, wait_until


def _gone(base_url: str, api_key: str, sandbox_id: str) -> bool:
    try:
        Sandbox(sandbox_id, base_url=base_url, api_key=api_key).get_info()
        return False
    except NotFoundError:
        return True


def _ids(sandboxes) -> list[str]:
    return [s.sandbox_id for s in sandboxes]


# --- flow 1: create, info, list, kill ----------------------------------------------------------


def test_create_info_list_kill(base_url, api_key):
    sb = Sandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key)
    try:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", sb.sandbox_id)
        info = sb.get_info()
        assert info.sandbox_id == sb.sandbox_id
        assert info.status == "running"
        assert info.template_name == TEMPLATE
        assert info.public_host.rstrip("/") == base_url
        assert info.resources is not None
        assert info.resources.vcpu > 0 and info.resources.memory_mb > 0 and info.resources.disk_mb > 0
        assert info.created_at is not None and info.created_at.tzinfo is not None
        assert abs((datetime.now(timezone.utc) - info.created_at).total_seconds()) < 120
        assert sb.sandbox_id in _ids(Sandbox.list(base_url=base_url, api_key=api_key))
        assert sb.sandbox_id in str(sb)  # __str__ calls get_info
    finally:
        sb.kill()
    with pytest.raises(NotFoundError) as ei:
        sb.get_info()
    assert ei.value.status_code == 404
    assert sb.sandbox_id not in _ids(Sandbox.list(base_url=base_url, api_key=api_key))
    # A second kill of the same sandbox is a clean 404, not a crash.
    with pytest.raises(NotFoundError):
        sb.kill()


def test_context_manager_kills_on_exit(base_url, api_key):
    with Sandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key) as sb:
        sid = sb.sandbox_id
        assert sb.commands.run("echo inside").stdout == "inside\n"
    assert _gone(base_url, api_key, sid)


def test_context_manager_kills_on_exception(base_url, api_key):
    sid = None
    with pytest.raises(RuntimeError, match="boom"):
        with Sandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key) as sb:
            sid = sb.sandbox_id
            raise RuntimeError("boom")
    assert sid and _gone(base_url, api_key, sid)


async def test_async_context_manager(base_url, api_key):
    async with AsyncSandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key) as sb:
        sid = sb.sandbox_id
        info = await sb.get_info()
        assert info.status == "running"
        r = await sb.commands.run("echo async-inside", timeout_seconds=30)
        assert r.stdout == "async-inside\n"
    with pytest.raises(NotFoundError):
        await AsyncSandbox(sid, base_url=base_url, api_key=api_key).get_info()


async def test_async_await_create_info_kill(base_url, api_key):
    sb = await AsyncSandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key)
    try:
        info = await sb.get_info()
        assert info.status == "running" and info.template_name == TEMPLATE
        listed = await AsyncSandbox.list(base_url=base_url, api_key=api_key)
        assert sb.sandbox_id in _ids(listed)
        connected = await AsyncSandbox.connect(sb.sandbox_id, base_url=base_url, api_key=api_key)
        assert (await connected.get_info()).status == "running"
    finally:
        await sb.kill()
    with pytest.raises(NotFoundError):
        await sb.get_info()


# --- listing and paging ----------------------------------------------------------------------


def test_list_limit_and_cursor_paging(base_url, api_key, make_sandbox, raw):
    mine = {make_sandbox().sandbox_id for _ in range(5)}

    page = Sandbox.list(limit=2, base_url=base_url, api_key=api_key)
    assert len(page) == 2

    # Walk every page of 2 by cursor: each sandbox exactly once, and `has_more` ends the walk.
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        params = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = raw.get("/v1/sandboxes", params=params).raise_for_status().json()
        assert body["object"] == "list"
        assert len(body["data"]) <= 2
        seen += [d["id"] for d in body["data"]]
        if not body["has_more"]:
            assert body.get("next_cursor") in (None, "")
            break
        assert body["next_cursor"], "has_more without next_cursor makes Sandbox.iter loop forever"
        cursor = body["next_cursor"]
    else:
        pytest.fail("paging did not end")
    assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
    assert mine <= set(seen)


def test_iter_follows_cursors(base_url, api_key, make_sandbox, monkeypatch):
    """`Sandbox.iter` always asks for pages of 100 (no parameter for it in SDK 0.5.0). To make it
    follow cursors without creating 100+ sandboxes, its list request is rewritten to limit=2;
    the paging loop itself is the SDK's."""
    mine = {make_sandbox().sandbox_id for _ in range(5)}
    assert mine <= set(_ids(Sandbox.iter(base_url=base_url, api_key=api_key)))

    real_get = sdk_sandbox_module.HTTPClient.get
    calls = []

    def small_pages(self, path, params=None, **kw):
        if path == "/v1/sandboxes" and params is not None:
            params = {**params, "limit": 2}
            calls.append(dict(params))
        return real_get(self, path, params=params, **kw)

    monkeypatch.setattr(sdk_sandbox_module.HTTPClient, "get", small_pages)
    got = _ids(Sandbox.iter(status="running", base_url=base_url, api_key=api_key))
    assert len(got) == len(set(got))
    assert mine <= set(got)
    assert len(calls) >= 3 and all("cursor" in c for c in calls[1:]), calls


async def test_async_iter(base_url, api_key, make_async_sandbox):
    mine = {(await make_async_sandbox()).sandbox_id for _ in range(2)}
    got = [s.sandbox_id async for s in AsyncSandbox.iter(base_url=base_url, api_key=api_key)]
    assert mine <= set(got)
    assert len(got) == len(set(got))


def test_list_status_filter(base_url, api_key, make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    b.pause()
    running = _ids(Sandbox.list(status="running", base_url=base_url, api_key=api_key))
    paused = _ids(Sandbox.list(status="paused", base_url=base_url, api_key=api_key))
    assert a.sandbox_id in running and a.sandbox_id not in paused
    assert b.sandbox_id in paused and b.sandbox_id not in running
    assert b.sandbox_id not in _ids(Sandbox.list(region="elsewhere", base_url=base_url, api_key=api_key))


# --- pause / resume / connect ----------------------------------------------------------------


def test_pause_resume_keeps_state(sandbox):
    sandbox.files.write("/workspace/before.txt", "kept across pause\n")
    job = sandbox.commands.run("sleep 120", background=True)
    assert job.stdout.startswith("Background process started: ")

    sandbox.pause()
    assert sandbox.get_info().status == "paused"
    # While paused, agent calls fail fast with a clear error (409, not retried).
    started = time.monotonic()
    with pytest.raises(AgentError) as ei:
        sandbox.commands.run("true")
    assert time.monotonic() - started < 2.5  # a retried 5xx would take >= 3 s (1 s + 2 s back-off)
    assert ei.value.code == "SANDBOX_PAUSED"

    sandbox.resume()
    assert sandbox.get_info().status == "running"
    assert sandbox.files.read("/workspace/before.txt") == "kept across pause\n"
    # The background `sleep` survived the freeze.
    r = sandbox.commands.run("pgrep -x sleep >/dev/null && echo alive")
    assert r.stdout == "alive\n"


def test_connect_running(sandbox, base_url, api_key):
    sandbox.files.write("/workspace/marker.txt", "from the first object")
    other = Sandbox.connect(sandbox.sandbox_id, base_url=base_url, api_key=api_key)
    assert other.sandbox_id == sandbox.sandbox_id
    assert other.get_info().status == "running"
    assert other.files.read("/workspace/marker.txt") == "from the first object"


def test_connect_resumes_paused(sandbox, base_url, api_key):
    sandbox.files.write("/workspace/marker.txt", "paused then connected")
    sandbox.pause()
    assert sandbox.get_info().status == "paused"
    other = Sandbox.connect(sandbox.sandbox_id, base_url=base_url, api_key=api_key)
    assert other.get_info().status == "running"
    assert other.files.read("/workspace/marker.txt") == "paused then connected"
    assert sandbox.commands.run("echo original-object-still-works").exit_code == 0


def test_connect_unknown_raises_not_found(base_url, api_key):
    with pytest.raises(NotFoundError):
        Sandbox.connect("doesnotexist0000000", base_url=base_url, api_key=api_key)


async def test_async_pause_resume(async_sandbox):
    await async_sandbox.pause()
    assert (await async_sandbox.get_info()).status == "paused"
    await async_sandbox.resume()
    assert (await async_sandbox.get_info()).status == "running"
    r = await async_sandbox.commands.run("echo back", timeout_seconds=30)
    assert r.stdout == "back\n"


def test_kill_during_a_call_is_not_a_retryable_5xx(make_sandbox, base_url):
    """A call in flight when its sandbox is killed (or expires) must get a non-retried answer.
    A 502/503/504 makes the SDK retry after 1 s (re-sending e.g. POST /execute) and the user then
    sees a misleading 401 INVALID_TOKEN from the retry instead of "sandbox gone" (§4.4, §13.15)."""
    import threading

    sb = make_sandbox()
    token = sb.get_token()
    sb.commands.run("true")  # agent up
    got = {}

    def call():
        try:
            got["r"] = httpx.post(f"{base_url}/commands/run", timeout=60,
                                  headers={"Authorization": f"Bearer {token}"},
                                  json={"command": "bash", "args": ["-c", "sleep 30"], "timeout": 60})
        except httpx.HTTPError as e:  # a dropped connection is retried by the SDK as well
            got["r"] = e

    t = threading.Thread(target=call)
    t.start()
    wait_until(lambda: "sleep 30" in " ".join(p.get("command") or "" for p in sb.list_system_processes()),
               timeout=10, what="the command to start")
    sb.kill()
    t.join(30)
    r = got["r"]
    assert isinstance(r, httpx.Response), f"connection dropped: {r!r}"
    assert r.status_code not in (429, 500, 502, 503, 504), (r.status_code, r.text)


# --- timeouts and expiry ---------------------------------------------------------------------


def test_no_timeout_means_no_expiry(sandbox):
    assert sandbox.get_info().timeout_seconds in (None, 0)
    assert sandbox.get_time_to_expiry() is None
    assert sandbox.is_expiring_soon() is False
    assert sandbox.get_expiry_info().has_timeout is False


def test_timeout_and_set_timeout(make_sandbox):
    sb = make_sandbox(timeout_seconds=300)
    info = sb.get_info()
    assert info.timeout_seconds == 300
    assert info.expires_at is not None and info.expires_at.tzinfo is not None
    ttl = sb.get_time_to_expiry()
    assert 280 <= ttl <= 300, ttl
    assert sb.is_expiring_soon(threshold_seconds=400) is True
    assert sb.is_expiring_soon(threshold_seconds=60) is False

    sb.set_timeout(600)
    ttl2 = sb.get_time_to_expiry()
    assert 580 <= ttl2 <= 600, ttl2
    assert sb.get_info().timeout_seconds == 600
    expiry = sb.get_expiry_info()
    assert expiry.has_timeout and not expiry.is_expired and not expiry.is_expiring_soon
    sb.ensure_healthy()


def test_real_expiry(make_sandbox, base_url, api_key):
    sb = make_sandbox(timeout_seconds=3)
    assert sb.get_info().status == "running"
    assert sb.is_expiring_soon() is True
    wait_until(lambda: _gone(base_url, api_key, sb.sandbox_id), timeout=20, interval=0.25,
               what="the 3 s sandbox to be reaped")
    with pytest.raises(NotFoundError):
        sb.get_info()
    assert sb.sandbox_id not in _ids(Sandbox.list(base_url=base_url, api_key=api_key))


def test_set_timeout_extends_a_short_sandbox(make_sandbox):
    sb = make_sandbox(timeout_seconds=3)
    sb.set_timeout(120)
    time.sleep(4.5)  # past the original deadline: there is no event to poll for
    assert sb.get_info().status == "running"


async def test_async_set_timeout(make_async_sandbox):
    sb = await make_async_sandbox(timeout_seconds=200)
    assert 180 <= await sb.get_time_to_expiry() <= 200
    await sb.set_timeout(900)
    assert 880 <= await sb.get_time_to_expiry() <= 900


async def test_async_real_expiry(make_async_sandbox):
    sb = await make_async_sandbox(timeout_seconds=2)

    async def gone():
        try:
            await sb.get_info()
            return False
        except NotFoundError:
            return True

    await async_wait_until(gone, timeout=20, interval=0.25, what="expiry")


# --- templates and health --------------------------------------------------------------------


def test_health_check(base_url):
    h = Sandbox.health_check(base_url=base_url)
    assert h["status"] == "healthy"


async def test_async_health_check(base_url):
    h = await AsyncSandbox.health_check(base_url=base_url)
    assert h["status"] == "healthy"


def test_templates(base_url, api_key):
    templates = Sandbox.list_templates(base_url=base_url, api_key=api_key)
    names = {t.name for t in templates}
    assert TEMPLATE in names
    t = Sandbox.get_template(TEMPLATE, base_url=base_url, api_key=api_key)
    assert t.name == TEMPLATE and t.display_name and t.is_active
    # Looked up by id too (the template builder does this).
    assert Sandbox.get_template(t.id, base_url=base_url, api_key=api_key).name == TEMPLATE
    with pytest.raises(NotFoundError):
        Sandbox.get_template("no-such-template", base_url=base_url, api_key=api_key)


def test_create_by_template_id(base_url, api_key, make_sandbox):
    t = Sandbox.get_template(TEMPLATE, base_url=base_url, api_key=api_key)
    sb = make_sandbox(template=None, template_id=t.id)
    info = sb.get_info()
    assert info.template_id == t.id
    assert sb.commands.run("echo by-id").stdout == "by-id\n"


def test_internet_access_flag(make_sandbox):
    """Checked from the interfaces, not by reaching the internet (the suite must run offline)."""
    ifaces = "python3 -c 'import socket; print(sorted(n for _, n in socket.if_nameindex()))'"
    off = make_sandbox(internet_access=False)
    assert off.get_info().internet_access is False
    assert off.commands.run(ifaces).stdout == "['lo']\n"
    on = make_sandbox()
    assert on.get_info().internet_access is True  # the default
    assert on.commands.run(ifaces).stdout != "['lo']\n"


def test_region_is_accepted(make_sandbox):
    sb = make_sandbox(region="us-east")
    assert sb.get_info().status == "running"


def test_preview_url_needs_a_hopx_host(sandbox):
    """§13.1 option (a): with public_host = http://127.0.0.1:PORT the SDK's own parser refuses."""
    from hopx_ai.errors import HopxError

    with pytest.raises(HopxError, match="preview URL"):
        sandbox.get_preview_url(8080)


def test_stop_start_and_connect_refuses_stopped(sandbox, raw, base_url, api_key):
    """stop/start are REST-only (no SDK method in 0.5.0); `Sandbox.connect` refuses `stopped`."""
    from hopx_ai.errors import HopxError

    sandbox.files.write("/workspace/persist.txt", "files survive stop")
    sandbox.commands.run("sleep 300", background=True)
    r = raw.post(f"/v1/sandboxes/{sandbox.sandbox_id}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    assert sandbox.get_info().status == "stopped"
    with pytest.raises(HopxError, match="stopped"):
        Sandbox.connect(sandbox.sandbox_id, base_url=base_url, api_key=api_key)
    with pytest.raises(AgentError):
        sandbox.files.read("/workspace/persist.txt")
    r = raw.post(f"/v1/sandboxes/{sandbox.sandbox_id}/start")
    assert r.status_code == 200 and r.json()["status"] == "running"
    again = Sandbox.connect(sandbox.sandbox_id, base_url=base_url, api_key=api_key)
    assert again.files.read("/workspace/persist.txt") == "files survive stop"
    # Processes did not survive the stop.
    assert again.commands.run("pgrep -x sleep || echo none").stdout == "none\n"
