"""SandboxOptions and object construction: no server needed."""

from __future__ import annotations

import pytest

import hutch
import sandbox
from hutch import LocalSandbox, NodeSandbox, PythonSandbox, RemoteSandbox, SandboxOptions
from sandbox.core.execution_context import PersistentExecutionContext


def test_builder_builds_the_seed_fields() -> None:
    config = (
        SandboxOptions.builder()
        .name("configured-sandbox")
        .memory(1024)
        .cpus(2.0)
        .timeout(300.0)
        .env("DEBUG", "true")
        .env("LOG_LEVEL", "info")
        .build()
    )
    assert config.__dict__ == {
        "name": "configured-sandbox",
        "memory": 1024,
        "cpus": 2.0,
        "timeout": 300.0,
        "env": {"DEBUG": "true", "LOG_LEVEL": "info"},
    }


def test_builder_is_reusable_and_validates() -> None:
    b = SandboxOptions.builder().env("A", "1")
    first = b.build()
    b.env("B", "2")
    assert first.env == {"A": "1"}
    for bad in (lambda: b.memory(0), lambda: b.cpus(-1), lambda: b.timeout(0)):
        with pytest.raises(ValueError):
            bad()


def test_create_takes_a_config_and_does_not_start() -> None:
    config = SandboxOptions.builder().name("c").memory(512).cpus(1.5).timeout(9).env("K", "V").build()
    sb = LocalSandbox.create(**config.__dict__)
    assert isinstance(sb, LocalSandbox) and not sb.is_started and sb.sandbox_id is None
    assert (sb.name, sb.memory, sb.cpus, sb.default_timeout, sb.env) == ("c", 512, 1.5, 9, {"K": "V"})
    assert sb._create_body() == {
        "template_name": "code-interpreter",
        "memory_mb": 512,
        "vcpu": 2,  # whole CPUs, rounded up
        "env_vars": {"K": "V"},
    }


def test_factories_return_the_right_types() -> None:
    assert isinstance(PythonSandbox.create_local(name="x"), LocalSandbox)
    remote = PythonSandbox.create_remote(server_url="http://127.0.0.1:1", api_key="k")
    assert type(remote) is PythonSandbox and remote.session_id is None
    assert isinstance(NodeSandbox.create(server_url="http://127.0.0.1:1", api_key="k"), NodeSandbox)
    assert isinstance(NodeSandbox.create_local(), NodeSandbox)
    assert isinstance(RemoteSandbox.create(server_url="http://127.0.0.1:1", api_key="k"), RemoteSandbox)


def test_remote_sandbox_needs_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUTCH_URL", raising=False)
    monkeypatch.delenv("HUTCH_API_KEY", raising=False)
    with pytest.raises(hutch.SandboxConnectionError):
        RemoteSandbox()
    monkeypatch.setenv("HUTCH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HUTCH_API_KEY", "k")
    assert RemoteSandbox()._server_url == "http://127.0.0.1:9"


def test_local_sandbox_has_a_session_id_before_start() -> None:
    sb = LocalSandbox(name="s")
    assert sb.session_id and sb.session_id.startswith("session-")
    assert LocalSandbox(session_id="mine").session_id == "mine"
    with pytest.raises(ValueError):
        NodeSandbox(session_id="x")


def test_session_ids_are_validated() -> None:
    assert PersistentExecutionContext(session_id="a-B_9").session_id == "a-B_9"
    assert PersistentExecutionContext().session_id != PersistentExecutionContext().session_id
    for bad in ("", "a b", "x/y", "é", "a" * 129):
        with pytest.raises(ValueError):
            PersistentExecutionContext(session_id=bad)


def test_sandbox_package_reexports_hutch() -> None:
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is getattr(hutch, name)
    assert PersistentExecutionContext is hutch.PersistentExecutionContext


def test_error_hierarchy() -> None:
    assert issubclass(hutch.SandboxAPIError, hutch.SandboxConnectionError)
    assert issubclass(hutch.SandboxTimeoutError, TimeoutError)
    assert not issubclass(hutch.SandboxTimeoutError, hutch.SandboxExecutionError)
    for cls in (hutch.SandboxExecutionError, hutch.SandboxTimeoutError, hutch.SandboxConnectionError):
        assert issubclass(cls, hutch.SandboxError)


def test_packages_are_typed() -> None:
    from importlib import resources

    assert resources.files("hutch").joinpath("py.typed").is_file()
    assert resources.files("sandbox").joinpath("py.typed").is_file()


async def test_unstarted_sandbox_refuses_work() -> None:
    sb = PythonSandbox.create_remote(server_url="http://127.0.0.1:1", api_key="k")
    with pytest.raises(hutch.SandboxError, match="not started"):
        await sb.run("1")
    await sb.stop()  # stopping an unstarted sandbox is a no-op


async def test_unreachable_server_is_a_connection_error() -> None:
    port = __import__("hutch_server").free_port()
    with pytest.raises(hutch.SandboxConnectionError) as info:
        async with PythonSandbox.create_remote(server_url=f"http://127.0.0.1:{port}", api_key="k"):
            pass
    assert not isinstance(info.value, hutch.SandboxAPIError)
