"""The two ways a "local" sandbox finds its server: configured, or started by the SDK itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hutch
from hutch import LocalServer, NodeSandbox, PythonSandbox
from hutch import server as hserver


async def test_configured_server_is_used(configured) -> None:
    async with PythonSandbox.create(name="env") as sb:
        assert sb._api is not None and sb._api.base_url == configured.url
        assert sb.sandbox_id in configured.sandbox_ids()
    assert hserver._shared is None  # nothing was started


async def test_self_started_server_is_shared_and_removed(self_started) -> None:
    first = PythonSandbox.create(name="a")
    second = NodeSandbox.create_local(name="b")
    async with first, second:
        shared = hserver._shared
        assert shared is not None and shared.running and hserver._refs == 2
        assert first._api.base_url == second._api.base_url == shared.url
        data_dir = shared.data_dir
        assert (await first.run("print(1)")).stdout == "1\n"
        assert (await second.run("console.log(2)")).stdout == "2\n"
    # the last user let go: server stopped, sandboxes purged, data directory removed
    assert hserver._shared is None and not shared.running
    assert data_dir is not None and not data_dir.exists()


async def test_self_started_server_restarts_after_release(self_started) -> None:
    for _ in range(2):
        async with PythonSandbox.create() as sb:
            assert (await sb.run("print('ok')")).stdout == "ok\n"


def test_local_server_context_manager(hutch_server) -> None:
    with LocalServer() as srv:
        assert srv.running and srv.data_dir is not None
        data_dir = srv.data_dir
        r = __import__("httpx").get(f"{srv.url}/v1/sandboxes", headers={"X-API-Key": srv.api_key})
        assert r.status_code == 200
    assert not srv.running and not data_dir.exists()
    srv.stop()  # idempotent


def test_find_binary_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.environ["HUTCH_BIN"]
    assert hserver.find_binary() == Path(real)
    monkeypatch.setenv("HUTCH_BIN", str(tmp_path / "missing"))
    with pytest.raises(hutch.SandboxConnectionError, match="HUTCH_BIN"):
        hserver.find_binary()
    # a Cargo workspace above the working directory: the newer of release/debug wins
    monkeypatch.delenv("HUTCH_BIN")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "Cargo.toml").write_text("[workspace]\n")
    for kind, mtime in (("release", 1000), ("debug", 2000)):
        exe = tmp_path / "target" / kind / "hutch"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
        os.utime(exe, (mtime, mtime))
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert hserver.find_binary() == tmp_path / "target" / "debug" / "hutch"


def test_configured_server_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUTCH_URL", raising=False)
    monkeypatch.delenv("HUTCH_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert hserver.configured_server() is None
    cfg = tmp_path / "hutch" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('url = "http://10.0.0.1:7770"\napi_key = "from-file"\n')
    monkeypatch.setenv("HUTCH_API_KEY", "from-env")
    assert hserver.configured_server() == ("http://10.0.0.1:7770", "from-env")
    monkeypatch.delenv("HUTCH_API_KEY")
    monkeypatch.setenv("HUTCH_URL", "http://127.0.0.1:1234")
    assert hserver.configured_server() == ("http://127.0.0.1:1234", "from-file")


def test_no_root_no_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(hutch.SandboxConnectionError, match="root"):
        LocalServer().start()
