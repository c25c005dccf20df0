"""The seed document's import names (``from sandbox import LocalSandbox, ...``).

A thin alias of `hutch`: every name is the same object as in `hutch`, so code written against the
"Enhanced Sandbox SDK" document runs unchanged on hutch.
"""

from hutch import (
    Artifact,
    CommandExecution,
    Execution,
    LocalSandbox,
    NodeSandbox,
    PersistentExecutionContext,
    PythonSandbox,
    RemoteSandbox,
    SandboxAPIError,
    SandboxConfig,
    SandboxConnectionError,
    SandboxError,
    SandboxExecutionError,
    SandboxOptions,
    SandboxTimeoutError,
)

__all__ = [
    "Artifact",
    "CommandExecution",
    "Execution",
    "LocalSandbox",
    "NodeSandbox",
    "PersistentExecutionContext",
    "PythonSandbox",
    "RemoteSandbox",
    "SandboxAPIError",
    "SandboxConfig",
    "SandboxConnectionError",
    "SandboxError",
    "SandboxExecutionError",
    "SandboxOptions",
    "SandboxTimeoutError",
]
