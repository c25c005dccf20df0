"""Seed: PythonSandbox, local and remote."""

import asyncio

from sandbox import PythonSandbox


async def main() -> None:
    # Local execution
    async with PythonSandbox.create_local(name="local-py") as sandbox:
        result = await sandbox.run("print('Hello World')")
        print(await result.output())

    # Remote execution
    async with PythonSandbox.create_remote(
        server_url="http://127.0.0.1:5555",
        api_key="your-key",
        name="remote-py"
    ) as sandbox:
        result = await sandbox.run("print('Hello from microVM')")
        print(await result.output())


asyncio.run(main())
