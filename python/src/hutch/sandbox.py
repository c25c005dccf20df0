"""Sandboxes: `PythonSandbox`, `NodeSandbox`, `LocalSandbox` and `RemoteSandbox`.

A sandbox object is created unstarted; ``async with Cls.create(...) as sb:`` or ``sb = await
Cls.create(...)`` or ``await sb.start()`` starts it, which creates a real hutch sandbox over the
HopX control plane (`POST /v1/sandboxes`, template ``code-interpreter``). Code, commands, metrics
and artifacts then go to that sandbox's agent through the server's gateway, authenticated with
the sandbox's own token. Closing (``stop()``, leaving the ``async with``) kills the sandbox; so
does interpreter exit for sandboxes that were never closed.

"Local" and "remote" name where the server is, not how code runs — code always runs in an
isolated hutch sandbox:

* remote — the server given by ``server_url``/``api_key``;
* local — the server configured by ``HUTCH_URL``/``HUTCH_API_KEY``, else one the SDK starts on
  this machine (`hutch.server`).

`LocalSandbox` additionally runs its Python code in a persistent session
(`PersistentExecutionContext`): state survives the sandbox, history and statistics are recorded,
and figures are captured as artifacts. Any Python sandbox gets the same with ``session_id=...``.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import threading
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple, Type, TypeVar

import httpx

from ._http import DEFAULT_TIMEOUT, Api
from .command import Command
from .errors import SandboxAPIError, SandboxConnectionError, SandboxError
from .execution import Artifact, Execution
from .metrics import Metrics
from .server import configured_server, connect
from .session import DEFAULT_ARTIFACTS_DIR, PersistentExecutionContext

__all__ = ["BaseSandbox", "PythonSandbox", "NodeSandbox", "LocalSandbox", "RemoteSandbox"]

S = TypeVar("S", bound="BaseSandbox")

#: The agent's default timeout for `/execute`, used when neither call nor sandbox sets one.
DEFAULT_RUN_TIMEOUT = 120.0
#: Slack on top of an execution's own timeout for the HTTP call.
_HTTP_SLACK = 30.0
#: Longest a create may take (a cold template, a busy machine).
_CREATE_TIMEOUT = 120.0


class BaseSandbox:
    """A hutch sandbox running one language's code (see the module docstring).

    Args:
        name: A label kept by the SDK (the server has no sandbox names).
        server_url, api_key: A remote server; omit both for the local one.
        memory: Memory limit in MiB.
        cpus: CPUs; rounded up to whole CPUs.
        timeout: Default timeout of `run()` and `command.run()`, in seconds.
        env: Environment variables of every process in the sandbox.
        template: Template to create the sandbox from (default ``code-interpreter``).
        session_id: Run Python code in this persistent session (Python sandboxes only).
    """

    #: Language of `run()`'s code, as the agent names it.
    language: str = "python"
    #: Whether a session is created even without `session_id` (LocalSandbox).
    _sessions_by_default: bool = False

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        server_url: Optional[str] = None,
        api_key: Optional[str] = None,
        memory: Optional[int] = None,
        cpus: Optional[float] = None,
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        template: str = "code-interpreter",
        session_id: Optional[str] = None,
    ) -> None:
        self.name = name
        self.memory = memory
        self.cpus = cpus
        self.default_timeout = timeout
        self.env: Dict[str, str] = dict(env or {})
        self.template = template
        self._server_url = server_url
        self._api_key = api_key
        self._api: Optional[Api] = None
        self._release: Callable[[], None] = _noop
        self._info: Dict[str, Any] = {}
        self._token: Optional[str] = None
        self._started = False
        self._execution_context: Optional[PersistentExecutionContext] = None
        if session_id is not None or self._sessions_by_default:
            if self.language != "python":
                raise ValueError("sessions are for Python sandboxes only")
            self._execution_context = PersistentExecutionContext(session_id=session_id)
        self.command = Command(self)
        self.metrics = Metrics(self)

    def __repr__(self) -> str:
        state = self.sandbox_id or ("started" if self._started else "not started")
        return f"{type(self).__name__}(name={self.name!r}, {state})"

    # -- creation and lifetime -----------------------------------------------------------------

    @classmethod
    def create(
        cls: Type[S],
        server_url: Optional[str] = None,
        api_key: Optional[str] = None,
        name: Optional[str] = None,
        **options: Any,
    ) -> S:
        """A new, not yet started sandbox: use ``async with`` (killed on exit) or ``await`` it.

        Options are those of the constructor (and of `SandboxOptions`): ``memory``, ``cpus``,
        ``timeout``, ``env``, ``template``, ``session_id``.
        """
        return cls(name, server_url=server_url, api_key=api_key, **options)

    def __await__(self: S) -> Generator[Any, None, S]:
        return self._started_self().__await__()

    async def _started_self(self: S) -> S:
        await self.start()
        return self

    async def __aenter__(self: S) -> S:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def sandbox_id(self) -> Optional[str]:
        """The hutch sandbox's id, once started."""
        return self._info.get("id")

    @property
    def is_started(self) -> bool:
        return self._started

    def _connect(self) -> None:
        if self._server_url is not None:
            key = self._api_key
            if key is None:
                configured = configured_server()
                key = configured[1] if configured else ""
            self._api, self._release = Api(self._server_url, key), _noop
        else:
            self._api, self._release = connect()

    async def start(
        self,
        memory: Optional[int] = None,
        cpus: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """Creates the sandbox (and, for a local one, the SDK's server if needed).

        The arguments override the constructor's options. Starting twice is a no-op.
        """
        if self._started:
            return
        self.memory = memory or self.memory
        self.cpus = cpus or self.cpus
        self.default_timeout = timeout or self.default_timeout
        # Starting a local server blocks for a moment (and needs a thread for its purge later).
        await asyncio.get_running_loop().run_in_executor(None, self._connect)
        api = self._require_api()
        try:
            self._info = await api.arequest(
                "POST", "/v1/sandboxes", json=self._create_body(), timeout=_CREATE_TIMEOUT
            )
            self._token = self._info.get("auth_token")
            _track(self)
            if self._execution_context is not None:
                self._execution_context._attach(api, self._info["id"])
                await self._execution_context.aensure_session()
            self._started = True
        except BaseException:
            await self._teardown()
            raise

    def _create_body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"template_name": self.template}
        if self.memory:
            body["memory_mb"] = int(self.memory)
        if self.cpus:
            body["vcpu"] = max(1, math.ceil(self.cpus))
        if self.env:
            body["env_vars"] = dict(self.env)
        return body

    async def stop(self) -> None:
        """Kills the sandbox and lets go of the server. The session (if any) is kept."""
        if not self._started and self._api is None:
            return
        self._started = False
        await self._teardown()

    async def kill(self) -> None:
        """Same as `stop()`: the sandbox is removed."""
        await self.stop()

    async def _teardown(self) -> None:
        """Kills the sandbox, closes the clients and releases the server, each step even when
        an earlier one failed (an error killing the sandbox is raised at the end)."""
        sandbox_id = self.sandbox_id
        api, self._api, self._token = self._api, None, None
        release, self._release = self._release, _noop
        if self._execution_context is not None and sandbox_id:
            self._execution_context._detach(sandbox_id)
        try:
            if api is not None and sandbox_id:
                await _kill(api, sandbox_id)
        finally:
            _untrack(self)
            if api is not None:
                await api.aclose()
            await asyncio.get_running_loop().run_in_executor(None, release)

    # -- plumbing ------------------------------------------------------------------------------

    def _require_api(self) -> Api:
        if self._api is None:
            raise SandboxError(f"{type(self).__name__} is not started: call `await start()` first")
        return self._api

    def _require_started(self) -> Api:
        if not self._started:
            raise SandboxError(f"{type(self).__name__} is not started: call `await start()` first")
        return self._require_api()

    async def _agent(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Dict[str, Any]] = None,
        timeout: Optional[float] = None,
        raw: bool = False,
    ) -> Any:
        """An agent call on this sandbox. `timeout` is the operation's own timeout; the HTTP call
        gets some slack on top. A rejected token (401) is refreshed once and the call retried —
        it never reached the sandbox, so retrying cannot run anything twice."""
        api = self._require_started()
        http_timeout = DEFAULT_TIMEOUT if timeout is None else timeout + _HTTP_SLACK
        for attempt in (1, 2):
            try:
                return await api.arequest(
                    method, path, json=json, params=params, token=self._token,
                    timeout=http_timeout, raw=raw,
                )  # fmt: skip
            except SandboxAPIError as e:
                if e.status_code != 401 or attempt == 2:
                    raise
                reply = await api.arequest("POST", f"/v1/sandboxes/{self.sandbox_id}/token/refresh")
                self._token = reply.get("auth_token")
        raise AssertionError("unreachable")

    def _agent_sync(
        self, method: str, path: str, *, params: Optional[Dict[str, Any]] = None, raw: bool = False
    ) -> Any:
        """Sync agent call, for the seed's synchronous methods."""
        api = self._require_started()
        try:
            return api.request(method, path, params=params, token=self._token, raw=raw)
        except SandboxAPIError as e:
            if e.status_code != 401:
                raise
            reply = api.request("POST", f"/v1/sandboxes/{self.sandbox_id}/token/refresh")
            self._token = reply.get("auth_token")
            return api.request(method, path, params=params, token=self._token, raw=raw)

    async def info(self) -> Dict[str, Any]:
        """The server's sandbox object (status, resources, expiry, …)."""
        api = self._require_started()
        info = await api.arequest("GET", f"/v1/sandboxes/{self.sandbox_id}")
        return info if isinstance(info, dict) else {}

    # -- running code --------------------------------------------------------------------------

    async def run(
        self,
        code: str,
        timeout: Optional[float] = None,
        *,
        raise_on_error: bool = True,
        cache_key: Optional[str] = None,
    ) -> Execution:
        """Runs code in the sandbox's interpreter (state is kept between runs).

        Raises `SandboxExecutionError` when the code raises (with ``error_type``, ``traceback``
        and the partial `Execution`) and `SandboxTimeoutError` when it runs past `timeout`
        seconds — unless ``raise_on_error=False``, which returns the `Execution` with its
        ``exception`` set instead.
        """
        self._require_started()
        context = self._execution_context
        if context is not None:
            seconds = timeout or self.default_timeout or context.timeout
            body = await context.aexecute_code(code, cache_key, timeout=seconds)
            artifacts = [context.artifact(a) for a in body.get("artifacts") or []]
        else:
            seconds = timeout or self.default_timeout or DEFAULT_RUN_TIMEOUT
            body = await self._execute(code, seconds, cache_key)
            artifacts = [self._artifact(a) for a in body.get("artifacts") or []]
        execution = Execution(body, artifacts=artifacts, timeout=seconds)
        if raise_on_error and execution.exception is not None:
            raise execution.exception
        return execution

    async def _execute(self, code: str, seconds: float, cache_key: Optional[str]) -> Dict[str, Any]:
        request: Dict[str, Any] = {
            "code": code,
            "language": self.language,
            "timeout": seconds,
            "workdir": "/workspace",
        }
        if self.language == "python":
            request["capture_artifacts"] = True
        if cache_key is not None:
            request["cache_key"] = cache_key
        try:
            reply = await self._agent("POST", "/execute", json=request, timeout=seconds)
        except SandboxAPIError as e:
            if e.code != "EXECUTION_TIMEOUT":
                raise
            # 408: the result so far is in `details`.
            reply = dict(e.details) or {"stdout": "", "stderr": ""}
            reply.update(timed_out=True, success=False)
            reply.setdefault("message", str(e.args[0]))
        return reply if isinstance(reply, dict) else {}

    # -- artifacts -----------------------------------------------------------------------------

    @property
    def artifacts_dir(self) -> str:
        """Where figures and other artifacts are collected, inside the sandbox."""
        if self._execution_context is not None:
            return self._execution_context.artifacts_dir
        return DEFAULT_ARTIFACTS_DIR

    def list_artifacts(self, execution_id: Optional[str] = None) -> List[Artifact]:
        """Artifacts produced so far (optionally by one execution); `Artifact.read()` fetches
        one's bytes."""
        if self._execution_context is not None:
            return self._execution_context.list_artifacts(execution_id)
        reply = self._agent_sync("GET", "/artifacts", params={"execution_id": execution_id})
        return [self._artifact(a) for a in (reply or {}).get("artifacts") or []]

    def _artifact(self, info: Dict[str, Any]) -> Artifact:
        return Artifact(info, self._fetch_artifact, self._afetch_artifact)

    def _fetch_artifact(self, artifact_id: str) -> bytes:
        return bytes(self._agent_sync("GET", f"/artifacts/{artifact_id}", raw=True))

    async def _afetch_artifact(self, artifact_id: str) -> bytes:
        return bytes(await self._agent("GET", f"/artifacts/{artifact_id}", raw=True))

    # -- session, history, statistics ----------------------------------------------------------

    @property
    def session_id(self) -> Optional[str]:
        """The persistent session's id (``None`` for a sandbox without a session)."""
        return self._execution_context.session_id if self._execution_context else None

    def _require_context(self) -> PersistentExecutionContext:
        if self._execution_context is None:
            raise SandboxError(
                f"{type(self).__name__} has no session: create it with session_id=... "
                "or use LocalSandbox"
            )
        return self._execution_context

    def get_performance_stats(self) -> Dict[str, Any]:
        """Execution statistics: the session's, or else the sandbox interpreter's."""
        if self._execution_context is not None:
            return self._execution_context.get_execution_stats()
        return dict(self._agent_sync("GET", "/execute/stats") or {})

    def get_execution_history(self, limit: int = 50) -> List[Dict[str, Any]]:
        """Recent executions, newest first: the session's, or else the sandbox interpreter's."""
        if self._execution_context is not None:
            return self._execution_context.get_execution_history(limit=limit)
        reply = self._agent_sync("GET", "/execute/history", params={"limit": limit}) or {}
        return list(reply.get("history") or [])

    def clear_cache(self) -> None:
        """Clears the result and compilation caches."""
        if self._execution_context is not None:
            self._execution_context.clear_cache()
        else:
            self._require_started().request("POST", "/cache/clear", token=self._token)

    def save_session(self) -> Dict[str, Any]:
        """Snapshots the session's state now (it is also saved after each successful run)."""
        return self._require_context().save_session()

    def cleanup_session(self) -> None:
        """Deletes the session: its state, history and artifacts."""
        self._require_context().cleanup_session()


class PythonSandbox(BaseSandbox):
    """A sandbox running Python.

    ``create_local(...)`` gives a `LocalSandbox` (persistent session, local server);
    ``create_remote(server_url, api_key, ...)`` a sandbox on that server; ``create(...)`` either,
    depending on whether `server_url` is given.
    """

    language = "python"

    @classmethod
    def create_local(cls, name: Optional[str] = None, **options: Any) -> "LocalSandbox":
        """A `LocalSandbox` (not yet started; use ``async with`` or ``await``)."""
        return LocalSandbox(name, **options)

    @classmethod
    def create_remote(
        cls, server_url: str, api_key: Optional[str] = None, name: Optional[str] = None,
        **options: Any,
    ) -> "PythonSandbox":  # fmt: skip
        """A Python sandbox on the server at `server_url` (not yet started)."""
        return cls(name, server_url=server_url, api_key=api_key, **options)


class NodeSandbox(BaseSandbox):
    """A sandbox running JavaScript (Node.js); `create`, `create_local`, `create_remote` as for
    `PythonSandbox`."""

    language = "javascript"

    @classmethod
    def create_local(cls, name: Optional[str] = None, **options: Any) -> "NodeSandbox":
        """A Node sandbox on the local server (not yet started)."""
        return cls(name, **options)

    @classmethod
    def create_remote(
        cls, server_url: str, api_key: Optional[str] = None, name: Optional[str] = None,
        **options: Any,
    ) -> "NodeSandbox":  # fmt: skip
        """A Node sandbox on the server at `server_url` (not yet started)."""
        return cls(name, server_url=server_url, api_key=api_key, **options)


class LocalSandbox(PythonSandbox):
    """A Python sandbox on the local server, with a persistent session.

    The seed's "enhanced" sandbox: `session_id`, `save_session()`, `cleanup_session()`,
    `get_performance_stats()`, `get_execution_history()`, `clear_cache()`, `list_artifacts()`,
    `artifacts_dir`. Assign ``sandbox._execution_context = PersistentExecutionContext(session_id)``
    before `start()` to resume an earlier session in this sandbox.
    """

    _sessions_by_default = True


class RemoteSandbox(PythonSandbox):
    """A Python sandbox on a given server: ``RemoteSandbox.create(server_url, api_key)``.

    Without arguments it uses ``HUTCH_URL``/``HUTCH_API_KEY`` (never a local server).
    """

    def __init__(self, name: Optional[str] = None, **options: Any) -> None:
        if options.get("server_url") is None:
            configured = configured_server()
            if configured is None:
                raise SandboxConnectionError(
                    "RemoteSandbox needs server_url and api_key (or HUTCH_URL/HUTCH_API_KEY)"
                )
            options["server_url"] = configured[0]
            options.setdefault("api_key", configured[1])
        super().__init__(name, **options)


# -------------------------------------------------------------------------------------------------
# Sandboxes never closed are killed at interpreter exit.
# -------------------------------------------------------------------------------------------------

_live_lock = threading.Lock()
_live: Dict[int, Tuple[str, str, str]] = {}


def _track(sb: BaseSandbox) -> None:
    api = sb._api
    if api is not None and sb.sandbox_id:
        with _live_lock:
            _live[id(sb)] = (api.base_url, api.api_key, sb.sandbox_id)


def _untrack(sb: BaseSandbox) -> None:
    with _live_lock:
        _live.pop(id(sb), None)


@atexit.register
def _kill_leftovers() -> None:
    # Registered after `hutch.server`'s handler, so it runs first: sandboxes are killed while a
    # local server is still up (its purge would remove them anyway).
    with _live_lock:
        leftovers = list(_live.values())
        _live.clear()
    for base_url, api_key, sandbox_id in leftovers:
        try:
            httpx.delete(
                f"{base_url}/v1/sandboxes/{sandbox_id}", headers={"X-API-Key": api_key}, timeout=10
            )
        except httpx.HTTPError:
            pass


async def _kill(api: Api, sandbox_id: str) -> None:
    try:
        await api.arequest("DELETE", f"/v1/sandboxes/{sandbox_id}")
    except SandboxAPIError as e:
        if e.status_code != 404:
            raise
    except SandboxConnectionError:
        pass  # the server is gone: so is the sandbox, or its purge will remove it


def _noop() -> None:
    return None
