"""Seed: Error Handling (plus the timeout branch made to happen)."""

import asyncio

from sandbox import (
    LocalSandbox,
    SandboxConnectionError,
    SandboxExecutionError,
    SandboxTimeoutError,
)


async def main() -> None:
    async with LocalSandbox.create(name="errors", timeout=2) as sandbox:
        for code in ("invalid python code", "import time; time.sleep(30)"):
            try:
                result = await sandbox.run(code)
            except SandboxExecutionError as e:
                print(f"Execution failed: {e}")
                print(f"Error type: {e.error_type}")
                print(f"Traceback: {e.traceback}")
            except SandboxTimeoutError as e:
                print(f"Execution timed out after {e.timeout} seconds")
            except SandboxConnectionError as e:
                print(f"Connection failed: {e}")


asyncio.run(main())
