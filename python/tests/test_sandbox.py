"""Sandboxes over the HopX API: create/kill, run, commands, metrics, options (agent path)."""

from __future__ import annotations

import pytest

import hutch
from hutch import NodeSandbox, PythonSandbox, RemoteSandbox


@pytest.fixture
def remote(hutch_server):
    return dict(server_url=hutch_server.url, api_key=hutch_server.api_key)


async def test_context_manager_creates_and_kills(hutch_server, remote) -> None:
    async with PythonSandbox.create_remote(name="cm", **remote) as sb:
        sid = sb.sandbox_id
        assert sid in hutch_server.sandbox_ids()
        info = await sb.info()
        assert info["status"] == "running" and info["template_name"] == "code-interpreter"
    assert sid not in hutch_server.sandbox_ids()
    assert not sb.is_started


async def test_await_create_and_explicit_stop(hutch_server, remote) -> None:
    sb = await PythonSandbox.create(**remote)
    try:
        assert sb.is_started and sb.sandbox_id in hutch_server.sandbox_ids()
        await sb.start()  # idempotent
    finally:
        await sb.stop()
    assert sb.sandbox_id is not None and sb.sandbox_id not in hutch_server.sandbox_ids()


async def test_run_output_and_state(remote) -> None:
    async with PythonSandbox.create_remote(**remote) as sb:
        result = await sb.run("print('Hello World')")
        assert result.stdout == "Hello World\n" and result.stderr == ""
        assert await result.output() == "Hello World\n"
        assert result.success and result.exception is None and not result.has_error()
        assert result.execution_id and result.execution_time >= 0
        await sb.run("x = 6 * 7")
        r = await sb.run("import sys; print(x, file=sys.stderr); x")
        assert r.stderr == "42\n" and r.result == "42"
        assert await r.output() == "42\n"


async def test_node_sandbox(remote) -> None:
    async with NodeSandbox.create(name="node-env", **remote) as sb:
        result = await sb.run("console.log('Hello from Node.js')")
        assert await result.output() == "Hello from Node.js\n"
        assert result.language == "javascript"
        with pytest.raises(hutch.SandboxExecutionError) as info:
            await sb.run("throw new Error('boom')")
        assert info.value.error_type == "Error" and "boom" in str(info.value)


async def test_commands(remote) -> None:
    async with PythonSandbox.create_remote(**remote) as sb:
        cmd = await sb.command.run("ls", ["-la"])
        assert cmd.exit_code == 0 and cmd.success
        assert "total" in await cmd.output()
        failed = await sb.command.run("ls", ["/no/such/path"])
        assert failed.exit_code != 0 and not failed.success
        assert "No such file" in failed.stderr and "No such file" in await failed.error()
        shell = await sb.command.run("bash", ["-c", "echo $GREETING from $(pwd)"],
                                     env={"GREETING": "hi"}, cwd="/tmp")
        assert shell.stdout == "hi from /tmp\n"
        with pytest.raises(hutch.SandboxTimeoutError) as t:
            await sb.command.run("sleep", ["30"], timeout=1)
        assert t.value.timeout == 1
        with pytest.raises(hutch.SandboxExecutionError) as e:
            await sb.command.run("no-such-program")
        assert e.value.error_type == "COMMAND_FAILED"


async def test_options_reach_the_sandbox(remote) -> None:
    config = (hutch.SandboxOptions.builder().name("opts").memory(768).cpus(1.5)
              .timeout(30).env("DEBUG", "true").build())
    async with PythonSandbox.create_remote(**remote, **{k: v for k, v in config.__dict__.items()}) as sb:
        info = await sb.info()
        assert info["resources"]["memory_mb"] == 768 and info["resources"]["vcpu"] == 2
        r = await sb.run("import os; print(os.environ['DEBUG'])")
        assert r.stdout == "true\n"
        c = await sb.command.run("printenv", ["DEBUG"])
        assert c.stdout == "true\n"
        assert "opts" in repr(sb)


async def test_metrics(remote) -> None:
    async with PythonSandbox.create_remote(name="m", **remote) as sb:
        await sb.run("print(1)")
        metrics = await sb.metrics.all()
        assert metrics["running"] is True and metrics["name"] == "m"
        assert metrics["sandbox_id"] == sb.sandbox_id
        for key in ("cpu_usage", "memory_usage", "memory_total", "disk_usage", "process_count"):
            assert metrics[key] is not None, key
        assert 0 < metrics["memory_usage"] <= metrics["memory_total"]
        assert await sb.metrics.get("cpu_usage") >= 0
        assert await sb.metrics.get("memory_usage") > 0
        assert await sb.metrics.get("system.cpu.cores") >= 1  # a path into the raw snapshot
        assert await sb.metrics.is_running()
        with pytest.raises(KeyError, match="cpu_usage"):
            await sb.metrics.get("no_such_metric")


async def test_interpreter_stats_and_history_without_a_session(remote) -> None:
    async with PythonSandbox.create_remote(**remote) as sb:
        await sb.run("a = 1")
        await sb.run("1/0", raise_on_error=False)
        stats = sb.get_performance_stats()
        assert stats["total_executions"] == 2
        history = sb.get_execution_history(limit=1)
        assert len(history) == 1 and history[0]["success"] is False
        sb.clear_cache()
        with pytest.raises(hutch.SandboxError, match="no session"):
            sb.save_session()


async def test_remote_sandbox_from_environment(configured) -> None:
    async with RemoteSandbox.create() as sb:
        r = await sb.run("import sys; print(sys.version_info[0])")
        assert r.stdout == "3\n"


async def test_bad_api_key_is_an_api_error(hutch_server) -> None:
    with pytest.raises(hutch.SandboxConnectionError) as info:
        async with PythonSandbox.create_remote(server_url=hutch_server.url, api_key="wrong"):
            pass
    assert isinstance(info.value, hutch.SandboxAPIError) and info.value.status_code == 401
