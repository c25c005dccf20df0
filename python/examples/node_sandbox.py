"""Seed: NodeSandbox."""

import asyncio

from sandbox import NodeSandbox


async def main() -> None:
    async with NodeSandbox.create(
        server_url="http://127.0.0.1:5555",
        api_key="your-key",
        name="node-env"
    ) as sandbox:
        result = await sandbox.run("console.log('Hello from Node.js')")
        print(await result.output())


asyncio.run(main())
