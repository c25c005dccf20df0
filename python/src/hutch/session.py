"""`PersistentExecutionContext`: a named Python session whose state outlives its sandbox.

The seed's context pickled globals into a SQLite file next to the caller and unpickled them in the
caller's own process. Here the session lives on the hutch server (`/v1/sessions`,
docs/sessions-api.md): code runs in a sandbox, the state is pickled *inside* the sandbox and kept
by the server as opaque bytes, imports/functions/classes are re-created by replaying the
statements that defined them, and what could not be saved is reported by name (`persisted` /
`restored` → ``dropped``). History and statistics are the server's SQLite records. Nothing from
the session is ever unpickled in this process.

A context is used in one of two ways:

* standalone — ``PersistentExecutionContext(session_id=...).execute_code(...)`` talks to the
  configured server (``HUTCH_URL``/``HUTCH_API_KEY``), to the one given, or to the SDK's shared
  local server, and the server runs the session in a sandbox of its own;
* attached to a sandbox — ``sandbox._execution_context = context`` before ``await
  sandbox.start()`` (as in the seed), or implicitly for `LocalSandbox`: the session then runs in
  that sandbox, and its state is restored there on the first execution.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable, Dict, List, Optional

from ._http import Api
from .errors import SandboxAPIError
from .execution import Artifact
from .server import connect

__all__ = ["PersistentExecutionContext", "DEFAULT_ARTIFACTS_DIR"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: Where artifacts are collected inside a sandbox.
DEFAULT_ARTIFACTS_DIR = "/workspace/artifacts"
#: The server's default execution timeout for sessions.
DEFAULT_SESSION_TIMEOUT = 300.0
#: Slack on top of an execution's own timeout for the HTTP call (state restore, saving).
_HTTP_SLACK = 60.0


def _empty_stats(session_id: str) -> Dict[str, Any]:
    return {
        "total_executions": 0,
        "average_execution_time": 0.0,
        "cache_hit_ratio": 0.0,
        "cache_hits": 0,
        "cache_misses": 0,
        "cached_compilations": 0,
        "session_id": session_id,
        "artifacts_count": 0,
    }


def _not_found(e: SandboxAPIError) -> bool:
    return e.status_code == 404


class PersistentExecutionContext:
    """A persistent Python execution session on a hutch server.

    Args:
        session_id: ``[A-Za-z0-9_-]{1,128}``; a new random id when omitted. Reusing an id resumes
            that session: its variables, functions and imports are restored.
        server_url, api_key: The server; default the configured one or the SDK's local server.
        template: Template of the sandbox the server creates for a standalone session.
        env: Environment variables of that sandbox.
        timeout: Default timeout of each `execute_code`, in seconds.
    """

    def __init__(
        self,
        session_id: Optional[str] = None,
        *,
        server_url: Optional[str] = None,
        api_key: Optional[str] = None,
        template: str = "code-interpreter",
        env: Optional[Dict[str, str]] = None,
        timeout: float = DEFAULT_SESSION_TIMEOUT,
    ) -> None:
        if session_id is None:
            session_id = "session-" + uuid.uuid4().hex[:16]
        if not _SESSION_ID.match(session_id):
            raise ValueError(f"invalid session_id {session_id!r}: must match [A-Za-z0-9_-]{{1,128}}")
        self._session_id = session_id
        self.template = template
        self.env = dict(env or {})
        self.timeout = timeout
        self._own_api: Optional[Api] = (
            Api(server_url, api_key or "") if server_url is not None else None
        )
        self._release: Optional[Callable[[], None]] = None
        self._bound_api: Optional[Api] = None
        self._sandbox_id: Optional[str] = None
        self._info: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"PersistentExecutionContext(session_id={self._session_id!r})"

    # -- identity ------------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The session's id (pass it to a new context to resume the session)."""
        return self._session_id

    @property
    def artifacts_dir(self) -> str:
        """Where the session's artifacts are collected, inside the sandbox."""
        if self._info and self._info.get("artifacts_dir"):
            return str(self._info["artifacts_dir"])
        return DEFAULT_ARTIFACTS_DIR

    @property
    def sandbox_id(self) -> Optional[str]:
        """The sandbox the session runs in, once known."""
        if self._sandbox_id:
            return self._sandbox_id
        return (self._info or {}).get("sandbox_id")

    # -- connection ----------------------------------------------------------------------------

    def _api(self) -> Api:
        if self._bound_api is not None:
            return self._bound_api
        if self._own_api is None:
            self._own_api, self._release = connect()
        return self._own_api

    def _attach(self, api: Api, sandbox_id: str) -> None:
        """Runs the session in `sandbox_id` from now on (called by a starting sandbox)."""
        self._bound_api = api
        self._sandbox_id = sandbox_id
        self._info = None

    def _detach(self, sandbox_id: str) -> None:
        """Forgets a sandbox that is going away (called by a stopping sandbox)."""
        if self._sandbox_id == sandbox_id:
            self._bound_api = None
            self._sandbox_id = None
            self._info = None

    def close(self) -> None:
        """Lets go of the connection (and of the SDK's local server). The session itself is kept;
        `cleanup_session()` deletes it."""
        if self._own_api is not None:
            self._own_api.close()
        if self._release is not None:
            release, self._release = self._release, None
            self._own_api = None
            release()

    def __enter__(self) -> "PersistentExecutionContext":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the session on the server -------------------------------------------------------------

    def _create_body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"session_id": self._session_id, "template": self.template}
        if self._sandbox_id:
            body["sandbox_id"] = self._sandbox_id
        if self.env:
            body["env_vars"] = dict(self.env)
        return body

    def ensure_session(self) -> Dict[str, Any]:
        """Creates the session on the server, or attaches to the existing one; returns it."""
        if self._info is None:
            self._info = self._api().request("POST", "/v1/sessions", json=self._create_body())
        return self._info

    async def aensure_session(self) -> Dict[str, Any]:
        """Async twin of `ensure_session`."""
        if self._info is None:
            self._info = await self._api().arequest(
                "POST", "/v1/sessions", json=self._create_body()
            )
        return self._info

    def get_session_info(self) -> Dict[str, Any]:
        """The server's SessionObject: sandbox, execution count, persisted variable names, …"""
        self._info = self._api().request("GET", self._path())
        return self._info

    def _path(self, tail: str = "") -> str:
        return f"/v1/sessions/{self._session_id}{tail}"

    # -- execution -----------------------------------------------------------------------------

    def _execute_body(
        self, code: str, cache_key: Optional[str], timeout: Optional[float]
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {"code": code, "timeout": _whole(timeout or self.timeout)}
        if cache_key is not None:
            body["cache_key"] = cache_key
        return body

    def execute_code(
        self, code: str, cache_key: Optional[str] = None, *, timeout: Optional[float] = None
    ) -> Dict[str, Any]:
        """Runs Python code in the session and returns the server's result.

        Never raises for failing code: the dict says ``success: False`` with ``error``,
        ``error_type`` and ``traceback`` (a timeout has error type ``TimeoutError``). Keys:
        ``success, error, error_type, traceback, stdout, stderr, execution_time, artifacts,
        cache_hit, execution_id, session_id, sandbox_id, restored, persisted, timeout``.

        `cache_key` opts into the server's result cache; the cache is keyed by the code *and* the
        key, so reusing a key with other code runs the new code.
        """
        self.ensure_session()
        body = self._execute_body(code, cache_key, timeout)
        reply = self._api().request(
            "POST", self._path("/execute"), json=body, timeout=body["timeout"] + _HTTP_SLACK
        )
        return _result(reply)

    async def aexecute_code(
        self, code: str, cache_key: Optional[str] = None, *, timeout: Optional[float] = None
    ) -> Dict[str, Any]:
        """Async twin of `execute_code`."""
        await self.aensure_session()
        body = self._execute_body(code, cache_key, timeout)
        reply = await self._api().arequest(
            "POST", self._path("/execute"), json=body, timeout=body["timeout"] + _HTTP_SLACK
        )
        return _result(reply)

    # -- records -------------------------------------------------------------------------------

    def get_execution_stats(self) -> Dict[str, Any]:
        """Counts and times of the session's executions (zeros before the first one)."""
        try:
            reply = self._api().request("GET", self._path("/stats"))
        except SandboxAPIError as e:
            if _not_found(e):
                return _empty_stats(self._session_id)
            raise
        return _result(reply)

    def get_execution_history(self, limit: int = 100) -> List[Dict[str, Any]]:
        """The session's executions, newest first: ``execution_id, timestamp, code,
        code_digest, execution_time, success, cache_hit, error_type, artifacts`` (a count)."""
        try:
            reply = self._api().request("GET", self._path("/history"), params={"limit": limit})
        except SandboxAPIError as e:
            if _not_found(e):
                return []
            raise
        return list((reply or {}).get("data") or [])

    def save_session(self) -> Dict[str, Any]:
        """Forces a snapshot of the session's state (it is also saved after every successful
        execution). Returns ``{"session_id", "saved": [names], "timestamp"}``."""
        self.ensure_session()
        return _result(self._api().request("POST", self._path("/save")))

    def clear_cache(self) -> None:
        """Clears the result and compilation caches of the session's sandbox."""
        try:
            self._api().request("POST", self._path("/cache/clear"))
        except SandboxAPIError as e:
            if not _not_found(e):
                raise

    def cleanup_session(self) -> None:
        """Deletes the session: state, history and artifacts (and the sandbox the server made for
        it). The id can be used again afterwards for a fresh session."""
        try:
            self._api().request("DELETE", self._path())
        except SandboxAPIError as e:
            if not _not_found(e):
                raise
        self._info = None

    # -- artifacts -----------------------------------------------------------------------------

    def list_artifacts(self, execution_id: Optional[str] = None) -> List[Artifact]:
        """The session's artifacts (optionally only one execution's), not yet downloaded."""
        try:
            reply = self._api().request(
                "GET", self._path("/artifacts"), params={"execution_id": execution_id}
            )
        except SandboxAPIError as e:
            if _not_found(e):
                return []
            raise
        return [self.artifact(a) for a in (reply or {}).get("data") or []]

    def artifact(self, info: Dict[str, Any]) -> Artifact:
        """An `Artifact` for one of this session's ArtifactObjects, downloadable by `read()`."""
        return Artifact(info, self._fetch_artifact, self._afetch_artifact)

    def _fetch_artifact(self, artifact_id: str) -> bytes:
        data = self._api().request("GET", self._path(f"/artifacts/{artifact_id}"), raw=True)
        return bytes(data)

    async def _afetch_artifact(self, artifact_id: str) -> bytes:
        data = await self._api().arequest(
            "GET", self._path(f"/artifacts/{artifact_id}"), raw=True
        )
        return bytes(data)

    def cleanup_artifacts(self) -> int:
        """Deletes the session's artifact files and records; returns how many."""
        reply = self._api().request("DELETE", self._path("/artifacts"))
        return int((reply or {}).get("removed") or 0)


def _whole(seconds: float) -> int:
    return max(1, int(round(seconds)))


def _result(reply: Any) -> Dict[str, Any]:
    if not isinstance(reply, dict):
        return {}
    return {k: v for k, v in reply.items() if k != "request_id"}
