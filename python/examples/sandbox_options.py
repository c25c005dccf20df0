"""Seed: SandboxOptions builder, used with a sandbox type."""

import asyncio

from sandbox import LocalSandbox, SandboxOptions

config = (SandboxOptions.builder()
    .name("configured-sandbox")
    .memory(1024)
    .cpus(2.0)
    .timeout(300.0)
    .env("DEBUG", "true")
    .env("LOG_LEVEL", "info")
    .build())

# Use with any sandbox type
sandbox = LocalSandbox.create(**config.__dict__)


async def main() -> None:
    async with sandbox:
        result = await sandbox.run("import os; print(os.environ['DEBUG'], os.environ['LOG_LEVEL'])")
        print(await result.output())
        assert result.stdout == "true info\n", result.stdout


asyncio.run(main())
