"""Seed: LocalSandbox and its enhanced methods."""

import asyncio

from sandbox import LocalSandbox


async def main() -> None:
    sandbox = LocalSandbox(name="my-sandbox")
    await sandbox.start()

    await sandbox.run("x = 1 + 1")

    stats = sandbox.get_performance_stats()
    print(stats)

    history = sandbox.get_execution_history(limit=20)
    print(history)

    sandbox.clear_cache()

    sandbox.save_session()

    session_id = sandbox.session_id
    print(session_id)

    sandbox.cleanup_session()

    assert stats["total_executions"] >= 1 and len(history) >= 1 and session_id
    await sandbox.stop()


asyncio.run(main())
