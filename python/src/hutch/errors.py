"""The SDK's exceptions.

Three families, matching the seed document's `except` clauses:

* `SandboxExecutionError` — the user's code (or command) ran and failed: an exception was raised
  inside the sandbox, or a command could not be started. Carries the remote exception's type and
  traceback, and the `Execution` with whatever was printed before the failure.
* `SandboxTimeoutError` — the code ran longer than its timeout and was interrupted. Deliberately
  *not* a subclass of `SandboxExecutionError`, so that the seed's ordering (`except
  SandboxExecutionError` first, then `except SandboxTimeoutError`) reaches the timeout branch. It is
  also a builtin `TimeoutError`, so generic timeout handling catches it.
* `SandboxConnectionError` — the sandbox service could not be used: unreachable server, a local
  server that failed to start, or the server refusing a request (`SandboxAPIError`: bad API key,
  unknown sandbox, invalid request). What went wrong is on the caller's side of the sandbox, not
  in the user's code.

All derive from `SandboxError`, so `except SandboxError` catches everything the SDK raises on
purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from .execution import Execution

__all__ = [
    "SandboxError",
    "SandboxExecutionError",
    "SandboxTimeoutError",
    "SandboxConnectionError",
    "SandboxAPIError",
]


class SandboxError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class SandboxExecutionError(SandboxError):
    """Code raised an exception inside the sandbox (or a command could not start).

    Attributes:
        error_type: The remote exception's class name, e.g. ``"ZeroDivisionError"`` (for a command
            that could not start, the server's error code, e.g. ``"COMMAND_FAILED"``).
        traceback: The remote traceback as text (``None`` when the server had none).
        execution: The failed `Execution`, with the output printed before the failure (``None``
            for commands).
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: Optional[str] = None,
        traceback: Optional[str] = None,
        execution: Optional["Execution"] = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback
        self.execution = execution


class SandboxTimeoutError(SandboxError, TimeoutError):
    """Code or a command ran past its timeout and was interrupted.

    Attributes:
        timeout: The timeout that was exceeded, in seconds.
        execution: What ran until the interruption (output printed so far), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: Optional[float] = None,
        execution: Optional["Execution"] = None,
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.execution = execution


class SandboxConnectionError(SandboxError):
    """The sandbox service could not be reached or used (network, start-up, refused request)."""


class SandboxAPIError(SandboxConnectionError):
    """The server answered a request with an error status.

    A subclass of `SandboxConnectionError` so that code written against the seed's three
    exception types still catches it.

    Attributes:
        status_code: The HTTP status.
        code: The server's machine-readable error code, e.g. ``"RESOURCE_NOT_FOUND"``.
        request_id: The server's request id, to find the request in its log.
        details: Extra structured details the server sent (may be empty).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.details: Dict[str, Any] = details or {}

    def __str__(self) -> str:
        base = super().__str__()
        extra = ", ".join(
            p for p in (f"HTTP {self.status_code}", self.code, self.request_id) if p
        )
        return f"{base} ({extra})"
