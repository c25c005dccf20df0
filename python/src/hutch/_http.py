"""HTTP transport: one server (base URL + API key), sync and async, with error mapping.

hutch serves two surfaces on one port (see the HopX protocol spec): the control plane
(`/v1/...`, authenticated with the API key in `X-API-Key`) and the sandbox agents (every other
path, routed by the server's gateway to the sandbox whose token is in `Authorization: Bearer`).
`Api.request` does both: pass `token=` for an agent call.

Both a sync and an async client exist because the seed's API mixes them: `await sandbox.run()`
next to plain `sandbox.get_performance_stats()` and `context.execute_code()`. Each is created on
first use and keeps its connections open (the "connection pooling" the seed promises). An async
client belongs to the event loop it was created on; when called from another loop (a second
`asyncio.run`) a fresh one is made rather than failing.

Nothing here retries: executions and commands have side effects, and the server never answers a
user-level failure with a status worth retrying.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Mapping, Optional, Tuple

import httpx

from .errors import SandboxAPIError, SandboxConnectionError

__all__ = ["Api", "DEFAULT_TIMEOUT"]

#: Seconds any request may take unless the caller asks for more (executions do).
DEFAULT_TIMEOUT = 60.0
_CONNECT_TIMEOUT = 10.0
_USER_AGENT = "hutch-python"


class Api:
    """A hutch server: its base URL and API key, and HTTP clients on it."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._client: Optional[httpx.Client] = None
        self._aclient: Optional[httpx.AsyncClient] = None
        self._aclient_loop: Optional[asyncio.AbstractEventLoop] = None

    def __repr__(self) -> str:
        return f"Api({self.base_url!r})"

    # -- clients ---------------------------------------------------------------------------------

    def _sync(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, headers=_base_headers())
        return self._client

    def _async(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            # A client from a finished loop cannot be closed from here; it is dropped.
            self._aclient = httpx.AsyncClient(base_url=self.base_url, headers=_base_headers())
            self._aclient_loop = loop
        return self._aclient

    def close(self) -> None:
        """Closes the sync client (the async one is closed by `aclose`)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Closes both clients."""
        self.close()
        if self._aclient is not None:
            client, self._aclient = self._aclient, None
            if self._aclient_loop is asyncio.get_running_loop():
                await client.aclose()
            self._aclient_loop = None

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        raw: bool = False,
    ) -> Any:
        """Sends a request and returns the decoded JSON body (or the bytes when `raw`).

        `token` makes it an agent call (the sandbox's bearer token) instead of a control-plane
        call (the API key). Raises `SandboxAPIError` for an error status and
        `SandboxConnectionError` when the server cannot be reached.
        """
        kwargs = self._kwargs(method, path, json, params, token, timeout)
        try:
            response = self._sync().request(**kwargs)
        except httpx.TransportError as e:
            raise _transport_error(self.base_url, method, path, e) from e
        return _decode(response, raw)

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        raw: bool = False,
    ) -> Any:
        """Async twin of `request`."""
        kwargs = self._kwargs(method, path, json, params, token, timeout)
        try:
            response = await self._async().request(**kwargs)
        except httpx.TransportError as e:
            raise _transport_error(self.base_url, method, path, e) from e
        return _decode(response, raw)

    def _kwargs(
        self,
        method: str,
        path: str,
        json: Any,
        params: Optional[Mapping[str, Any]],
        token: Optional[str],
        timeout: Optional[float],
    ) -> Dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {"X-API-Key": self.api_key}
        seconds = self.timeout if timeout is None else timeout
        kwargs: Dict[str, Any] = {
            "method": method,
            "url": path,
            "headers": headers,
            "timeout": httpx.Timeout(seconds, connect=min(seconds, _CONNECT_TIMEOUT)),
        }
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        return kwargs


def _base_headers() -> Dict[str, str]:
    return {"User-Agent": _USER_AGENT, "Accept": "application/json"}


def _transport_error(base: str, method: str, path: str, e: Exception) -> SandboxConnectionError:
    kind = "timed out" if isinstance(e, httpx.TimeoutException) else "failed"
    return SandboxConnectionError(f"{method} {base}{path} {kind}: {e or type(e).__name__}")


def _decode(response: httpx.Response, raw: bool) -> Any:
    if response.status_code >= 400:
        raise api_error(response)
    if raw:
        return response.content
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def api_error(response: httpx.Response) -> SandboxAPIError:
    """Builds the exception for an error reply.

    Understands both error shapes hutch uses: the control plane's
    ``{"error": {"message", "code", "request_id", "details"}}`` and the agent's
    ``{"error": "<message>", "code", "details"}``.
    """
    message, code, request_id, details = _parse_error(response)
    return SandboxAPIError(
        message,
        status_code=response.status_code,
        code=code,
        request_id=request_id or response.headers.get("x-request-id"),
        details=details,
    )


def _parse_error(
    response: httpx.Response,
) -> Tuple[str, Optional[str], Optional[str], Dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip() or response.reason_phrase
        return text, None, None, {}
    if not isinstance(body, dict):
        return str(body), None, None, {}
    err = body.get("error")
    if isinstance(err, dict):
        details = err.get("details")
        return (
            str(err.get("message") or response.reason_phrase),
            _opt_str(err.get("code") or body.get("code")),
            _opt_str(err.get("request_id") or body.get("request_id")),
            details if isinstance(details, dict) else {},
        )
    message = err if isinstance(err, str) else body.get("message")
    details = body.get("details")
    return (
        str(message or response.reason_phrase),
        _opt_str(body.get("code")),
        _opt_str(body.get("request_id")),
        details if isinstance(details, dict) else {},
    )


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)
