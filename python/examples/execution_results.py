"""Seed: Execution and CommandExecution results."""

import asyncio

from sandbox import LocalSandbox


async def main() -> None:
    async with LocalSandbox.create(name="results") as sandbox:
        result = await sandbox.run("print('Hello')")

        # Access properties
        stdout = result.stdout
        stderr = result.stderr
        artifacts = result.artifacts
        exception = result.exception

        # Get combined output
        output = await result.output()
        print(repr(stdout), repr(stderr), artifacts, exception, repr(output))
        assert output == "Hello\n" and exception is None

        cmd_result = await sandbox.command.run("ls", ["-la"])
        output = await cmd_result.output()
        exit_code = cmd_result.exit_code
        print(output, exit_code)
        assert exit_code == 0


asyncio.run(main())
