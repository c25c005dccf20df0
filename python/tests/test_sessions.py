"""Persistent sessions (`/v1/sessions`): PersistentExecutionContext and LocalSandbox."""

from __future__ import annotations

import uuid

import pytest

from hutch import LocalSandbox, SandboxExecutionError, SandboxTimeoutError
from sandbox.core.execution_context import PersistentExecutionContext

pytestmark = pytest.mark.sessions

DOCUMENTED_KEYS = {
    "success", "error", "error_type", "stdout", "stderr", "execution_time", "artifacts",
    "cache_hit",
}  # fmt: skip


def new_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def context(configured):
    ctx = PersistentExecutionContext(session_id=new_id())
    yield ctx
    ctx.cleanup_session()
    ctx.close()


def test_execute_code_returns_the_documented_dict(context) -> None:
    result = context.execute_code(
        "import numpy as np\nx = np.array([1, 2, 3, 4, 5])\nprint(f\"Mean: {np.mean(x)}\")\n",
        cache_key="numpy_mean_example",
    )
    assert DOCUMENTED_KEYS <= set(result), result
    assert result["success"] is True and result["error"] is None and result["error_type"] is None
    assert result["stdout"] == "Mean: 3.0\n" and result["stderr"] == ""
    assert result["artifacts"] == [] and result["cache_hit"] is False
    assert result["session_id"] == context.session_id and result["sandbox_id"]
    assert "x" in result["persisted"]["saved"] and "np" in result["persisted"]["saved"]


def test_failures_are_results_not_exceptions(context) -> None:
    failed = context.execute_code("1/0")
    assert failed["success"] is False and failed["error_type"] == "ZeroDivisionError"
    assert "ZeroDivisionError" in failed["traceback"]
    timed_out = context.execute_code("import time; time.sleep(30)", timeout=1)
    assert timed_out["success"] is False and timed_out["error_type"] == "TimeoutError"
    assert timed_out["timeout"] == 1


def test_cache_key_is_bound_to_the_code(context) -> None:
    first = context.execute_code("import random; print(random.random())", cache_key="k")
    again = context.execute_code("import random; print(random.random())", cache_key="k")
    assert (first["cache_hit"], again["cache_hit"]) == (False, True)
    assert again["stdout"] == first["stdout"]
    other = context.execute_code("print('other code')", cache_key="k")
    assert other["cache_hit"] is False and other["stdout"] == "other code\n"
    stats = context.get_execution_stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["total_executions"]) == (1, 2, 3)
    assert stats["cache_hit_ratio"] == pytest.approx(1 / 3)
    context.clear_cache()
    assert context.execute_code("import random; print(random.random())", cache_key="k")["cache_hit"] is False


def test_stats_and_history(context) -> None:
    assert context.get_execution_stats()["total_executions"] == 0  # before the session exists
    assert context.get_execution_history() == []
    for code in ("a = 1", "b = a + 1", "1/0"):
        context.execute_code(code)
    stats = context.get_execution_stats()
    assert set(stats) >= {
        "total_executions", "average_execution_time", "cache_hit_ratio", "cache_hits",
        "cache_misses", "cached_compilations", "session_id", "artifacts_count",
    }  # fmt: skip
    assert stats["session_id"] == context.session_id and stats["total_executions"] == 3
    assert stats["average_execution_time"] > 0
    history = context.get_execution_history(limit=2)
    assert [h["code"] for h in history] == ["1/0", "b = a + 1"]  # newest first
    assert history[0]["success"] is False and history[0]["error_type"] == "ZeroDivisionError"
    assert all(h["timestamp"] and len(h["code_digest"]) == 64 for h in history)


def test_state_survives_into_a_new_context_and_sandbox(configured) -> None:
    sid = new_id()
    first = PersistentExecutionContext(session_id=sid)
    made = first.execute_code(
        "import json\n"
        "import threading\n"
        "x = 42\n"
        "def double(n):\n    return 2 * n\n"
        "class Point:\n    def __init__(self, x): self.x = x\n"
        "p = Point(3)\n"
        "lock = threading.Lock()\n"
    )
    assert made["success"], made
    dropped = {d["name"] for d in made["persisted"]["dropped"]}
    assert "lock" in dropped and "x" in made["persisted"]["saved"]
    old_sandbox = made["sandbox_id"]
    saved = first.save_session()
    assert "x" in saved["saved"]
    # The sandbox goes away; the session does not.
    configured_delete(configured, old_sandbox)
    first.close()

    second = PersistentExecutionContext(session_id=sid)
    try:
        result = second.execute_code("print(x, double(x), json.dumps({'p': p.x}))")
        assert result["success"], result
        assert result["stdout"] == '42 84 {"p": 3}\n'
        assert result["sandbox_id"] != old_sandbox
        restored = result["restored"]
        assert {"x", "double", "json", "p"} <= set(restored["restored"]), restored
        assert "lock" not in restored["restored"]
        assert second.get_execution_stats()["total_executions"] >= 2
    finally:
        second.cleanup_session()
        second.close()


def configured_delete(server, sandbox_id: str) -> None:
    import httpx

    r = httpx.delete(f"{server.url}/v1/sandboxes/{sandbox_id}",
                     headers={"X-API-Key": server.api_key}, timeout=30)
    assert r.status_code == 200, r.text


def test_cleanup_session_forgets_everything(configured) -> None:
    ctx = PersistentExecutionContext(session_id=new_id())
    ctx.execute_code("y = 1")
    sandbox_id = ctx.get_session_info()["sandbox_id"]
    assert sandbox_id in configured.sandbox_ids()
    ctx.cleanup_session()
    assert sandbox_id not in configured.sandbox_ids()  # the server had made it for the session
    assert ctx.get_execution_history() == [] and ctx.get_execution_stats()["total_executions"] == 0
    fresh = ctx.execute_code("print('y' in dir())")
    assert fresh["stdout"] == "False\n"
    ctx.cleanup_session()
    ctx.close()


async def test_local_sandbox_session_methods(configured) -> None:
    async with LocalSandbox.create(name="my-sandbox") as sb:
        info = sb._execution_context.get_session_info()
        assert info["sandbox_id"] == sb.sandbox_id  # the session runs in this sandbox
        await sb.run("x = 1 + 1")
        r = await sb.run("print(x)")
        assert r.stdout == "2\n" and r.session_id == sb.session_id
        assert r.persisted and "x" in r.persisted["saved"]
        assert sb.get_performance_stats()["total_executions"] == 2
        history = sb.get_execution_history(limit=20)
        assert [h["code"] for h in history] == ["print(x)", "x = 1 + 1"]
        sb.clear_cache()
        assert "x" in sb.save_session()["saved"]
        with pytest.raises(SandboxExecutionError) as info_err:
            await sb.run("undefined_name")
        assert info_err.value.error_type == "NameError" and info_err.value.traceback
        with pytest.raises(SandboxTimeoutError) as t:
            await sb.run("import time; time.sleep(30)", timeout=1)
        assert t.value.timeout == 1
        # commands run in the same sandbox as the session's code
        await sb.run("open('/workspace/f.txt', 'w').write('shared')")
        assert (await sb.command.run("cat", ["/workspace/f.txt"])).stdout == "shared"
        sb.cleanup_session()
        assert sb.get_execution_history() == []


async def test_seed_persistence_flow(configured) -> None:
    """The seed's "Session Persistence" example, with the first sandbox closed in between."""
    sandbox1 = LocalSandbox(name="persistent")
    await sandbox1.start()
    await sandbox1.run("x = 42")
    session_id = sandbox1.session_id
    await sandbox1.stop()

    context = PersistentExecutionContext(session_id=session_id)
    sandbox2 = LocalSandbox(name="persistent")
    sandbox2._execution_context = context
    await sandbox2.start()
    try:
        result = await sandbox2.run("print(x)")
        assert result.stdout == "42\n"
        assert result.restored and "x" in result.restored["restored"]
    finally:
        sandbox2.cleanup_session()
        await sandbox2.stop()


async def test_resumed_session_runs_in_the_attaching_sandbox(configured) -> None:
    sandbox1 = LocalSandbox()
    await sandbox1.start()
    await sandbox1.run("x = 42")
    await sandbox1.stop()
    sandbox2 = LocalSandbox()
    sandbox2._execution_context = PersistentExecutionContext(session_id=sandbox1.session_id)
    await sandbox2.start()
    try:
        result = await sandbox2.run("print(x)")
        assert result.stdout == "42\n"
        assert result.sandbox_id == sandbox2.sandbox_id
    finally:
        sandbox2.cleanup_session()
        await sandbox2.stop()
