"""`sandbox.command`: running programs in the sandbox (the agent's `POST /commands/run`).

Commands run as argv, without a shell (``run("ls", ["-la"])``); use ``run("bash", ["-c", "…"])``
for shell syntax. The working directory is ``/workspace`` unless given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .errors import SandboxAPIError, SandboxExecutionError, SandboxTimeoutError
from .execution import CommandExecution

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import BaseSandbox

__all__ = ["Command"]

#: The agent's default for a command without a timeout.
DEFAULT_COMMAND_TIMEOUT = 120.0


class Command:
    """Runs commands in one sandbox."""

    def __init__(self, sandbox: "BaseSandbox") -> None:
        self._sandbox = sandbox

    async def run(
        self,
        command: str,
        args: Optional[List[str]] = None,
        timeout: Optional[float] = None,
        *,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> CommandExecution:
        """Runs `command` with `args` and waits for it.

        Returns the result whatever the exit status. Raises `SandboxTimeoutError` when it runs
        past `timeout` seconds (default: the sandbox's timeout, else 120) and is killed, and
        `SandboxExecutionError` when it cannot be started at all (e.g. no such program).
        """
        args = [str(a) for a in (args or [])]
        seconds = timeout or self._sandbox.default_timeout or DEFAULT_COMMAND_TIMEOUT
        body: Dict[str, Any] = {
            "command": command,
            "args": args,
            "timeout": _whole_seconds(seconds),
            "workdir": cwd or "/workspace",
        }
        if env:
            body["env"] = dict(env)
        try:
            reply = await self._sandbox._agent("POST", "/commands/run", json=body, timeout=seconds)
        except SandboxAPIError as e:
            if e.code == "EXECUTION_TIMEOUT":
                raise SandboxTimeoutError(
                    f"command {command!r} timed out after {seconds:g} s", timeout=seconds
                ) from e
            if e.code == "COMMAND_FAILED":
                raise SandboxExecutionError(str(e.args[0]), error_type=e.code) from e
            raise
        return CommandExecution(command, args, reply or {})


def _whole_seconds(seconds: float) -> int:
    """The agent's command timeout is whole seconds; never round a short timeout down to 0."""
    return max(1, int(round(seconds)))
