"""Seed: Metrics and Monitoring."""

import asyncio

from sandbox import LocalSandbox


async def main() -> None:
    async with LocalSandbox.create(name="metrics") as sandbox:
        # Get all metrics
        metrics = await sandbox.metrics.all()

        # Get specific metric
        cpu_usage = await sandbox.metrics.get("cpu_usage")
        memory_usage = await sandbox.metrics.get("memory_usage")
        print(f"running={metrics['running']} cpu={cpu_usage}% memory={memory_usage} MiB")
        assert metrics["running"] and memory_usage > 0


asyncio.run(main())
