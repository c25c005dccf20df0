"""`commands.run` through the SDK (spec §8.6, §8.7; §14 flow 5)."""

from __future__ import annotations

import time

import pytest

from conftest import wait_until


def test_env_and_working_dir(sandbox):
    r = sandbox.commands.run("echo $FOO && pwd", env={"FOO": "bar"}, working_dir="/tmp")
    assert r.stdout == "bar\n/tmp\n"
    assert r.exit_code == 0 and r.is_success
    assert r.stderr == ""
    assert r.execution_time is not None and r.execution_time >= 0


def test_default_working_dir_is_workspace(sandbox):
    assert sandbox.commands.run("pwd").stdout == "/workspace\n"


def test_non_zero_exit_is_a_result_not_an_exception(sandbox):
    r = sandbox.commands.run("echo out; echo oops >&2; exit 3")
    assert r.exit_code == 3
    assert not r.is_success
    assert r.stdout == "out\n"
    assert r.stderr == "oops\n"


def test_non_zero_exit_runs_once(sandbox):
    """A failing command must not be answered with a 5xx (the SDK would run it three times)."""
    sandbox.commands.run("echo run >> /workspace/count.txt; exit 1")
    assert sandbox.files.read("/workspace/count.txt") == "run\n"


def test_shell_features(sandbox):
    r = sandbox.commands.run("""printf '%s\\n' "a b" 'c "d"' | wc -l; X=$((6*7)); echo "x=$X"; cd /etc && basename $PWD""")
    assert r.stdout == "2\nx=42\netc\n"


def test_stdin_is_not_a_terminal_and_closed(sandbox):
    """A command that reads stdin must see EOF, not hang."""
    r = sandbox.commands.run("cat; echo done", timeout=10)
    assert r.stdout == "done\n"


def test_large_output(sandbox):
    r = sandbox.commands.run("seq 1 200000")
    lines = r.stdout.splitlines()
    assert len(lines) == 200000 and lines[-1] == "200000"


def test_background_command(sandbox):
    started = time.monotonic()
    r = sandbox.commands.run("sleep 30", background=True)
    assert time.monotonic() - started < 5
    assert r.stdout.startswith("Background process started: ")
    pid = r.stdout.split(": ", 1)[1]
    assert pid and pid != "unknown"

    # Background commands are listed with the background code jobs (§8.4) and can be killed.
    procs = {p["process_id"]: p for p in sandbox.list_processes()}
    assert pid in procs and procs[pid]["status"] == "running"
    sandbox.kill_process(pid)

    def status():
        p = {p["process_id"]: p for p in sandbox.list_processes()}.get(pid)
        return p and p["status"] != "running" and p["status"]

    assert wait_until(status, timeout=10, what="the background command to end") in ("killed", "failed")


def test_background_command_env_and_workdir(sandbox):
    sandbox.commands.run("echo $BG_VAR > result.txt; pwd >> result.txt", background=True,
                         env={"BG_VAR": "bg-value"}, working_dir="/tmp")
    wait_until(lambda: sandbox.files.exists("/tmp/result.txt") and sandbox.files.read("/tmp/result.txt").count("\n") == 2,
               timeout=10, what="the background command's output file")
    assert sandbox.files.read("/tmp/result.txt") == "bg-value\n/tmp\n"


async def test_async_commands(async_sandbox):
    r = await async_sandbox.commands.run("echo $FOO; pwd", env={"FOO": "abar"}, working_dir="/tmp", timeout_seconds=30)
    assert r.stdout == "abar\n/tmp\n"
    assert r.exit_code == 0 and r.success is True
    r = await async_sandbox.commands.run("exit 5", timeout_seconds=30)
    assert r.exit_code == 5 and r.success is False
    r = await async_sandbox.commands.run("sleep 30", background=True)
    assert r.stdout.startswith("Background process started: ") and not r.stdout.endswith("unknown")


async def test_async_command_timeout(async_sandbox):
    """Async client: 408 EXECUTION_TIMEOUT. SDK bug (§4.3): its async error mapping builds
    `CodeExecutionError(..., exit_code=...)`, which raises TypeError inside the SDK; either way
    the call must fail fast and not hang or be retried."""
    started = time.monotonic()
    with pytest.raises(Exception):
        await async_sandbox.commands.run("sleep 30", timeout_seconds=1)
    assert time.monotonic() - started < 10
