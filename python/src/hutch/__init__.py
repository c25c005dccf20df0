"""hutch: the Python SDK of the hutch sandbox server.

Run untrusted Python and JavaScript in isolated sandboxes on your own machine, with persistent
sessions, artifact capture (matplotlib figures, files) and metrics. The API follows the "Enhanced
Sandbox SDK" document (seed 003); the same names are importable from the `sandbox` package, as
that document's examples do::

    from hutch import PythonSandbox

    async with PythonSandbox.create_local(name="demo") as sb:
        result = await sb.run("print('Hello World')")
        print(await result.output())

Local sandboxes use the server named by ``HUTCH_URL``/``HUTCH_API_KEY``, or one the SDK starts for
itself (needs root and the `hutch` binary); remote ones take ``server_url`` and ``api_key``.
"""

from .errors import (
    SandboxAPIError,
    SandboxConnectionError,
    SandboxError,
    SandboxExecutionError,
    SandboxTimeoutError,
)
from .execution import Artifact, CommandExecution, Execution
from .options import SandboxConfig, SandboxOptions, SandboxOptionsBuilder
from .sandbox import BaseSandbox, LocalSandbox, NodeSandbox, PythonSandbox, RemoteSandbox
from .server import LocalServer
from .session import PersistentExecutionContext

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "BaseSandbox",
    "CommandExecution",
    "Execution",
    "LocalSandbox",
    "LocalServer",
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
    "SandboxOptionsBuilder",
    "SandboxTimeoutError",
]
