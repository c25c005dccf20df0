"""Seed: Session Persistence — a new context with the same session id sees the old state."""

import asyncio

from sandbox import LocalSandbox
from sandbox.core.execution_context import PersistentExecutionContext


async def main() -> None:
    # First session
    sandbox1 = LocalSandbox(name="persistent")
    await sandbox1.start()
    await sandbox1.run("x = 42")
    session_id = sandbox1.session_id

    # Later session with same ID
    context = PersistentExecutionContext(session_id=session_id)
    sandbox2 = LocalSandbox(name="persistent")
    sandbox2._execution_context = context
    await sandbox2.start()
    result = await sandbox2.run("print(x)")  # Prints: 42

    print(result.stdout, end="")
    assert result.stdout == "42\n", result.stdout
    sandbox2.cleanup_session()
    await sandbox2.stop()
    await sandbox1.stop()


asyncio.run(main())
