"""Every exception class the spec maps (§4), raised by real server answers through the SDK."""

from __future__ import annotations

import time

import httpx
import pytest

from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai.errors import (
    APIError,
    AuthenticationError,
    CodeExecutionError,
    FileNotFoundError,
    FileOperationError,
    NotFoundError,
    TemplateNotFoundError,
    ValidationError,
)

from conftest import TEMPLATE


def _count(raw: httpx.Client) -> int:
    return len(raw.get("/v1/sandboxes", params={"limit": 1000}).raise_for_status().json()["data"])


# --- control plane ---------------------------------------------------------------------------


def test_not_found_after_kill(base_url, api_key):
    sb = Sandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key)
    sb.kill()
    with pytest.raises(NotFoundError) as ei:
        sb.get_info()
    assert ei.value.status_code == 404
    assert ei.value.request_id  # from the body (or the X-Request-ID header)


def test_not_found_unknown_id(base_url, api_key):
    ghost = Sandbox("nosuchsandbox000000", base_url=base_url, api_key=api_key)
    for call in (ghost.get_info, ghost.pause, ghost.resume, ghost.kill, lambda: ghost.set_timeout(60)):
        with pytest.raises(NotFoundError):
            call()


def test_wrong_api_key(base_url, raw):
    before = _count(raw)
    with pytest.raises(AuthenticationError) as ei:
        Sandbox.create(template=TEMPLATE, base_url=base_url, api_key="wrong-key")
    assert ei.value.status_code == 401
    with pytest.raises(AuthenticationError):
        Sandbox.list(base_url=base_url, api_key="wrong-key")
    assert _count(raw) == before


async def test_wrong_api_key_async(base_url):
    with pytest.raises(AuthenticationError):
        await AsyncSandbox.create(template=TEMPLATE, base_url=base_url, api_key="wrong-key")
    with pytest.raises(AuthenticationError):
        await AsyncSandbox.list(base_url=base_url, api_key="wrong-key")


def test_bearer_api_key_accepted(base_url, api_key):
    """The template builder authenticates with `Authorization: Bearer <api key>` (§2.1)."""
    r = httpx.get(f"{base_url}/v1/templates", headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 200, r.text
    r = httpx.get(f"{base_url}/v1/templates", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_template_not_found(base_url, api_key, raw):
    before = _count(raw)
    with pytest.raises(TemplateNotFoundError) as ei:
        Sandbox.create(template="nope", base_url=base_url, api_key=api_key)
    assert ei.value.status_code == 404
    assert TEMPLATE in ei.value.available_templates  # the SDK listed /v1/templates for hints
    # A near miss gets a suggestion from those names.
    with pytest.raises(TemplateNotFoundError) as ei:
        Sandbox.create(template="code-interpretr", base_url=base_url, api_key=api_key)
    assert ei.value.suggested_template == TEMPLATE
    assert _count(raw) == before


async def test_template_not_found_async(base_url, api_key):
    with pytest.raises(TemplateNotFoundError):
        await AsyncSandbox.create(template="nope", base_url=base_url, api_key=api_key)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_seconds": -5},
        {"env_vars": {"A=B": "x"}},
    ],
    ids=["negative-timeout", "bad-env-name"],
)
def test_validation_error(base_url, api_key, raw, kwargs):
    before = _count(raw)
    with pytest.raises(ValidationError) as ei:
        Sandbox.create(template=TEMPLATE, base_url=base_url, api_key=api_key, **kwargs)
    assert ei.value.status_code == 400
    assert _count(raw) == before


def test_set_timeout_validation(sandbox):
    with pytest.raises((ValidationError, APIError)) as ei:
        sandbox.set_timeout(-1)
    assert ei.value.status_code == 400


def test_pause_twice_is_a_client_error(sandbox):
    sandbox.pause()
    started = time.monotonic()
    with pytest.raises(APIError) as ei:
        sandbox.pause()
    # 4xx (not retried), e.g. 409; a 5xx would be retried with 1+2+4 s back-off.
    assert 400 <= ei.value.status_code < 500
    assert time.monotonic() - started < 3
    sandbox.resume()


# --- agent -----------------------------------------------------------------------------------


def test_file_not_found(sandbox):
    with pytest.raises(FileNotFoundError) as ei:
        sandbox.files.read("/nope")
    assert ei.value.code == "FILE_NOT_FOUND"
    assert ei.value.path == "/nope"
    assert ei.value.request_id  # the sync agent client reads it from X-Request-ID only
    with pytest.raises(FileNotFoundError):
        sandbox.files.read_bytes("/workspace/missing.bin")
    with pytest.raises(FileNotFoundError):
        sandbox.files.remove("/workspace/missing.txt")


async def test_file_not_found_async(async_sandbox):
    with pytest.raises(FileNotFoundError):
        await async_sandbox.files.read("/nope")


def test_path_not_allowed(sandbox):
    with pytest.raises(FileOperationError) as ei:
        sandbox.files.write("/proc/hutch-test", "x")
    assert ei.value.code == "PATH_NOT_ALLOWED"
    with pytest.raises(FileOperationError) as ei:
        sandbox.files.mkdir("/sys/hutch-test")
    assert ei.value.code == "PATH_NOT_ALLOWED"
    # Reading there is allowed.
    assert "processor" in sandbox.files.read("/proc/cpuinfo")


def test_file_operation_errors(sandbox):
    sandbox.files.write("/workspace/plain.txt", "not a directory")
    # A file where a directory is needed (INVALID_PATH / DIRECTORY_NOT_FOUND family).
    with pytest.raises((FileOperationError, FileNotFoundError)):
        sandbox.files.list("/workspace/plain.txt")
    with pytest.raises((FileOperationError, FileNotFoundError)):
        sandbox.files.list("/workspace/no-such-dir")


def test_command_timeout_is_code_execution_error(sandbox):
    """A command past its timeout: 408 EXECUTION_TIMEOUT → CodeExecutionError, not retried."""
    started = time.monotonic()
    with pytest.raises(CodeExecutionError) as ei:
        sandbox.commands.run("sleep 30", timeout=1)
    assert ei.value.code == "EXECUTION_TIMEOUT"
    assert time.monotonic() - started < 10
    # The sandbox is fine afterwards and the sleep is gone.
    assert sandbox.commands.run("pgrep -x sleep || echo none").stdout == "none\n"


def test_garbage_token_is_401_invalid_token(base_url):
    for headers in ({"Authorization": "Bearer garbage"}, {}):
        r = httpx.get(f"{base_url}/files/list", params={"path": "/workspace"}, headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert body["code"] == "INVALID_TOKEN"
        assert isinstance(body["error"], str)  # the sync SDK needs a string here (§4.2)
        assert r.headers["content-type"].startswith("application/json")


def test_request_ids_and_json_content_type(raw, base_url):
    for r in (raw.get("/v1/sandboxes"), raw.get("/v1/sandboxes/nosuchsandbox000000"), httpx.get(f"{base_url}/health")):
        assert r.headers.get("x-request-id"), r.headers
        assert r.headers["content-type"].startswith("application/json")
    body = raw.get("/v1/sandboxes/nosuchsandbox000000").json()
    assert isinstance(body["error"], dict) and body["error"]["code"] and body["error"]["message"]
