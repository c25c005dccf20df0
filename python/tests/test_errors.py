"""Typed errors from real executions."""

from __future__ import annotations

import pytest

from hutch import (
    PythonSandbox,
    SandboxExecutionError,
    SandboxTimeoutError,
)


@pytest.fixture
async def sb(hutch_server):
    async with PythonSandbox.create_remote(server_url=hutch_server.url,
                                           api_key=hutch_server.api_key) as sandbox:
        yield sandbox


async def test_exception_raises_execution_error(sb) -> None:
    with pytest.raises(SandboxExecutionError) as info:
        await sb.run("print('before')\n1/0")
    e = info.value
    assert e.error_type == "ZeroDivisionError"
    assert "division by zero" in str(e)
    assert e.traceback and "ZeroDivisionError" in e.traceback and "1/0" in e.traceback
    assert e.execution is not None and e.execution.stdout == "before\n"


async def test_syntax_error(sb) -> None:
    with pytest.raises(SandboxExecutionError) as info:
        await sb.run("invalid python code")
    assert info.value.error_type == "SyntaxError"


async def test_raise_on_error_false_returns_the_exception(sb) -> None:
    result = await sb.run("raise ValueError('bad value')", raise_on_error=False)
    assert not result.success and result.has_error()
    assert isinstance(result.exception, SandboxExecutionError)
    assert result.exception.error_type == result.error_type == "ValueError"
    assert "ValueError: bad value" in await result.output()
    with pytest.raises(SandboxExecutionError):
        result.raise_for_error()


async def test_timeout_raises_timeout_error_and_keeps_state(sb) -> None:
    await sb.run("kept = 'yes'")
    with pytest.raises(SandboxTimeoutError) as info:
        await sb.run("import time\nprint('started')\ntime.sleep(30)", timeout=1)
    e = info.value
    assert e.timeout == 1 and isinstance(e, TimeoutError)
    assert not isinstance(e, SandboxExecutionError)
    assert e.execution is not None and e.execution.stdout == "started\n"
    assert (await sb.run("print(kept)")).stdout == "yes\n"


async def test_sandbox_default_timeout(hutch_server) -> None:
    async with PythonSandbox.create_remote(server_url=hutch_server.url,
                                           api_key=hutch_server.api_key, timeout=1) as sb:
        result = await sb.run("import time; time.sleep(30)", raise_on_error=False)
        assert isinstance(result.exception, SandboxTimeoutError)
        assert result.exception.timeout == 1


async def test_seed_except_chain_reaches_each_branch(sb) -> None:
    seen = []
    for code, timeout in (("invalid python code", None), ("import time; time.sleep(30)", 1)):
        try:
            await sb.run(code, timeout=timeout)
        except SandboxExecutionError as e:
            seen.append(("execution", e.error_type))
        except SandboxTimeoutError as e:
            seen.append(("timeout", e.timeout))
    assert seen == [("execution", "SyntaxError"), ("timeout", 1)]
