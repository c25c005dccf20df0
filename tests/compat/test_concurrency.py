"""Concurrent SDK use: parallel creates (warm pool drained and refilled) and parallel agent calls
on one sandbox."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from hopx_ai import Sandbox


async def test_parallel_async_creates_and_calls(make_async_sandbox):
    sbs = await asyncio.gather(*(make_async_sandbox() for _ in range(6)))
    assert len({s.sandbox_id for s in sbs}) == 6
    outs = await asyncio.gather(*(s.commands.run(f"echo n{i}", timeout_seconds=30) for i, s in enumerate(sbs)))
    assert [o.stdout for o in outs] == [f"n{i}\n" for i in range(6)]
    # Each sandbox has its own /workspace.
    await asyncio.gather(*(s.files.write("/workspace/id.txt", s.sandbox_id) for s in sbs))
    got = await asyncio.gather(*(s.files.read("/workspace/id.txt") for s in sbs))
    assert got == [s.sandbox_id for s in sbs]


async def test_parallel_calls_on_one_sandbox(async_sandbox):
    cmds = [async_sandbox.commands.run(f"sleep 0.3; echo c{i}", timeout_seconds=30) for i in range(8)]
    outs = await asyncio.gather(*cmds)
    assert sorted(o.stdout for o in outs) == sorted(f"c{i}\n" for i in range(8))


def test_threads_with_sync_sandboxes(base_url, api_key):
    def one(i):
        with Sandbox.create(template="code-interpreter", base_url=base_url, api_key=api_key) as sb:
            sb.files.write(f"/workspace/t{i}.txt", f"thread {i}")
            return sb.commands.run(f"cat /workspace/t{i}.txt").stdout

    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(one, range(4))) == [f"thread {i}" for i in range(4)]
