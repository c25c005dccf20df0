"""Agent info, metrics, processes, jupyter sessions and desktop (spec §7, §11; §14 flow 9).
The cache endpoints belong to the execution work and are tested in test_code.py."""

from __future__ import annotations

import time

import pytest

from hopx_ai.errors import DesktopNotAvailableError


def test_health_and_info(sandbox):
    assert sandbox.is_healthy() is True
    info = sandbox.get_agent_info()
    assert isinstance(info, dict) and info
    assert "features" in info and isinstance(info["features"], dict)
    assert isinstance(info.get("uptime"), (int, float))


def test_metrics(sandbox):
    for m in (sandbox.get_metrics_snapshot(), sandbox.get_agent_metrics()):
        assert isinstance(m, dict)
        assert isinstance(m["uptime_seconds"], (int, float))
        assert isinstance(m["total_requests"], int) and m["total_requests"] >= 1
        sysm = m["system"]
        assert 0 <= sysm["memory"]["usage_percent"] <= 100
        assert sysm["cpu"]["cores"] >= 1
        assert isinstance(m["process"]["count"], int)


def test_system_processes(sandbox):
    sandbox.commands.run("sleep 60", background=True)
    procs = sandbox.list_system_processes()
    assert procs and all(isinstance(p["pid"], int) for p in procs)
    assert any("sleep" in (p.get("command") or p.get("name") or "") for p in procs), procs


def test_jupyter_sessions(sandbox):
    assert isinstance(sandbox.get_jupyter_sessions(), list)


def test_desktop_not_available(sandbox):
    started = time.monotonic()
    with pytest.raises(DesktopNotAvailableError) as ei:
        sandbox.desktop.click(1, 1)
    assert ei.value.missing_dependencies
    with pytest.raises(DesktopNotAvailableError):
        sandbox.desktop.get_vnc_status()
    with pytest.raises(DesktopNotAvailableError):
        sandbox.desktop.screenshot()
    assert time.monotonic() - started < 2.5  # not 503-retried (1 s + 2 s back-off)


async def test_async_observability(async_sandbox):
    assert await async_sandbox.is_healthy() is True
    info = await async_sandbox.get_agent_info()
    assert "features" in info
    m = await async_sandbox.get_metrics_snapshot()  # GET /metrics on the async client
    assert isinstance(m["uptime_seconds"], (int, float))
    assert isinstance((await async_sandbox.get_agent_metrics())["total_requests"], int)
    procs = await async_sandbox.list_system_processes()
    assert procs and all(isinstance(p["pid"], int) for p in procs)
    assert isinstance(await async_sandbox.get_jupyter_sessions(), list)
