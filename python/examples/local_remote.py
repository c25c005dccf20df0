"""Seed: LocalSandbox / RemoteSandbox."""

import asyncio

from sandbox import LocalSandbox, RemoteSandbox


async def main() -> None:
    # Local sandbox
    async with LocalSandbox.create(name="local") as sandbox:
        result = await sandbox.run("import sys; print(sys.version)")
        print(await result.output())

    # Remote sandbox
    async with RemoteSandbox.create(
        server_url="http://127.0.0.1:5555",
        api_key="your-key"
    ) as sandbox:
        result = await sandbox.run("import sys; print(sys.version)")
        print(await result.output())


asyncio.run(main())
