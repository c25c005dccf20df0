"""Results: `Execution` (code), `CommandExecution` (commands) and `Artifact` (files they made).

Both results are plain values built from the server's reply; the seed's `await result.output()`
is kept as a coroutine for compatibility although nothing is left to fetch by then. Artifacts are
the exception: their bytes stay on the server until `read()` (the seed's "lazy loading").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

from .errors import SandboxError, SandboxExecutionError, SandboxTimeoutError

__all__ = ["Artifact", "Execution", "CommandExecution"]

#: Fetches an artifact's bytes by id (sync and async variants).
Fetch = Callable[[str], bytes]
AFetch = Callable[[str], Awaitable[bytes]]


class Artifact:
    """A file an execution produced (a figure, an image, a data file), listed but not downloaded.

    Attributes mirror the server's ArtifactObject: `id`, `name`, `path` (absolute, inside the
    sandbox), `type` (MIME type), `category` (``plots``, ``images``, ``data``, …), `size` (bytes),
    `execution_id`, `created_at`.
    """

    __slots__ = (
        "id", "name", "path", "type", "category", "size", "execution_id", "created_at",
        "_fetch", "_afetch",
    )  # fmt: skip

    def __init__(
        self, info: Dict[str, Any], fetch: Optional[Fetch] = None, afetch: Optional[AFetch] = None
    ) -> None:
        self.id: str = str(info.get("id", ""))
        self.name: str = str(info.get("name", ""))
        self.path: str = str(info.get("path", ""))
        self.type: str = str(info.get("type", "application/octet-stream"))
        self.category: str = str(info.get("category", "other"))
        self.size: int = int(info.get("size") or 0)
        self.execution_id: Optional[str] = info.get("execution_id")
        self.created_at: Optional[str] = info.get("created_at")
        self._fetch = fetch
        self._afetch = afetch

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, {self.type}, {self.size} bytes, id={self.id!r})"

    def to_dict(self) -> Dict[str, Any]:
        """The server's description of the artifact, as a dict."""
        return {k: getattr(self, k) for k in self.__slots__ if not k.startswith("_")}

    def read(self) -> bytes:
        """Downloads the file's bytes."""
        if self._fetch is None:
            raise SandboxError(f"artifact {self.id} cannot be fetched (no server attached)")
        return self._fetch(self.id)

    async def aread(self) -> bytes:
        """Downloads the file's bytes without blocking the event loop."""
        if self._afetch is None:
            raise SandboxError(f"artifact {self.id} cannot be fetched (no server attached)")
        return await self._afetch(self.id)

    def save(self, dest: Union[str, Path]) -> Path:
        """Downloads the file to `dest` (a file, or a directory to put `name` in)."""
        target = Path(dest)
        if target.is_dir():
            target = target / self.name
        target.write_bytes(self.read())
        return target


def _traceback_text(body: Dict[str, Any]) -> Optional[str]:
    tb = body.get("traceback")
    if isinstance(tb, str) and tb:
        return tb
    exc = body.get("exception")
    if isinstance(exc, dict):
        lines = exc.get("traceback")
        if isinstance(lines, list) and lines:
            return "\n".join(str(line) for line in lines)
        if isinstance(lines, str) and lines:
            return lines
    return None


def _error_type(body: Dict[str, Any]) -> Optional[str]:
    if body.get("error_type"):
        return str(body["error_type"])
    exc = body.get("exception")
    if isinstance(exc, dict) and exc.get("name"):
        return str(exc["name"])
    return None


def _timed_out(body: Dict[str, Any]) -> bool:
    """Whether the reply describes a run stopped by its timeout.

    Both the agent and the session API say so in `timed_out` (the agent also in `status`); an
    error type of ``TimeoutError`` alone is not enough, since user code can raise one.
    """
    return bool(body.get("timed_out")) or body.get("status") == "timed_out"


class Execution:
    """The result of running code.

    Attributes:
        stdout, stderr: What the code printed.
        success: Whether it ran to the end without raising.
        exception: ``None``, or the `SandboxExecutionError` / `SandboxTimeoutError` describing the
            failure (what `run()` raises unless called with ``raise_on_error=False``).
        error_type, traceback: The remote exception's type name and traceback text, if any.
        artifacts: `Artifact`s the code produced (figures, files under ``/workspace``).
        result: Text of the value of the last expression (as an interactive prompt shows it).
        outputs: Rich outputs (``{"type": mime, "data": {mime: value}}``), e.g. PNG figures.
        execution_time: Seconds the code ran, measured in the sandbox.
        execution_id, language, exit_code, cache_hit: As reported by the server.
        session_id, sandbox_id, restored, persisted: For session executions: the session, the
            sandbox it ran in, which names were restored into a fresh interpreter (and which were
            dropped, with reasons), and which were saved after the run.
        timeout: The timeout the run had, in seconds.
        raw: The server's whole reply.
    """

    def __init__(
        self,
        body: Dict[str, Any],
        *,
        artifacts: Optional[List[Artifact]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.raw = body
        self.stdout: str = str(body.get("stdout") or "")
        self.stderr: str = str(body.get("stderr") or "")
        self.success: bool = bool(body.get("success", True))
        self.exit_code: int = int(body.get("exit_code") or (0 if self.success else 1))
        self.execution_time: float = float(body.get("execution_time") or 0.0)
        self.execution_id: Optional[str] = body.get("execution_id")
        self.language: Optional[str] = body.get("language")
        self.result: Optional[str] = body.get("result")
        self.outputs: List[Dict[str, Any]] = list(body.get("outputs") or [])
        self.cache_hit: bool = bool(body.get("cache_hit", False))
        self.session_id: Optional[str] = body.get("session_id")
        self.sandbox_id: Optional[str] = body.get("sandbox_id")
        self.restored: Optional[Dict[str, Any]] = body.get("restored")
        self.persisted: Optional[Dict[str, Any]] = body.get("persisted")
        self.timeout: Optional[float] = body.get("timeout", timeout)
        self.artifacts: List[Artifact] = artifacts or []
        self.error_type: Optional[str] = _error_type(body)
        self.traceback: Optional[str] = _traceback_text(body)
        self.exception: Optional[SandboxError] = None
        if _timed_out(body):
            self.success = False
            seconds = self.timeout
            self.exception = SandboxTimeoutError(
                str(body.get("message") or body.get("error") or f"timed out after {seconds} s"),
                timeout=seconds,
                execution=self,
            )
        elif not self.success:
            message = body.get("error") or self.error_type or "execution failed"
            self.exception = SandboxExecutionError(
                str(message),
                error_type=self.error_type,
                traceback=self.traceback,
                execution=self,
            )

    def __repr__(self) -> str:
        state = "ok" if self.success else (self.error_type or "failed")
        return f"Execution({state}, stdout={self.stdout[:40]!r}, artifacts={len(self.artifacts)})"

    def has_error(self) -> bool:
        """Whether the code failed (raised, or timed out)."""
        return not self.success

    async def output(self) -> str:
        """Everything the code printed: stdout, then stderr."""
        return self.stdout + self.stderr

    async def error(self) -> str:
        """What the code printed on stderr."""
        return self.stderr

    def raise_for_error(self) -> "Execution":
        """Raises `exception` if the code failed; returns the execution otherwise."""
        if self.exception is not None:
            raise self.exception
        return self


class CommandExecution:
    """The result of a command run with `sandbox.command.run(cmd, args)`.

    A non-zero exit status is a result, not an exception: look at `exit_code` / `success`.

    Attributes:
        command, args: What ran.
        stdout, stderr: Its output.
        exit_code: Its exit status (137 when killed, e.g. at its timeout).
        success: ``exit_code == 0``.
        execution_time: Seconds it ran.
        raw: The server's whole reply.
    """

    def __init__(self, command: str, args: List[str], body: Dict[str, Any]) -> None:
        self.raw = body
        self.command = command
        self.args = list(args)
        self.stdout: str = str(body.get("stdout") or "")
        self.stderr: str = str(body.get("stderr") or "")
        self.exit_code: int = int(body.get("exit_code") or 0)
        self.success: bool = self.exit_code == 0
        self.execution_time: float = float(body.get("execution_time") or 0.0)

    def __repr__(self) -> str:
        return f"CommandExecution({self.command!r}, exit_code={self.exit_code})"

    async def output(self) -> str:
        """Everything the command printed: stdout, then stderr."""
        return self.stdout + self.stderr

    async def error(self) -> str:
        """What the command printed on stderr."""
        return self.stderr
