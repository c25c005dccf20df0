"""Interactive terminal over WebSocket (spec §10.2; §14 flow 10).

Two URL rules are exercised: the sync `Sandbox.terminal` drops the path of `public_host`
(`ws://host:port/terminal`), `AsyncSandbox.terminal` keeps it (§1.2). Both are async APIs.
"""

from __future__ import annotations

import asyncio
import re

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")


async def _read_until(messages, needle: str, *, timeout: float = 15.0) -> str:
    """Collects `output` frames until `needle` appears in the (ANSI-stripped) text."""
    buf = ""

    async def go():
        nonlocal buf
        async for m in messages:
            if m.get("type") == "output":
                buf += m["data"]
                if needle in ANSI.sub("", buf):
                    return
            elif m.get("type") == "exit":
                raise AssertionError(f"terminal exited before {needle!r}: {buf!r}")
        raise AssertionError(f"socket closed before {needle!r}: {buf!r}")

    try:
        await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {needle!r} within {timeout}s; got {ANSI.sub('', buf)!r}") from None
    return ANSI.sub("", buf)


async def _read_exit(messages, *, timeout: float = 10.0) -> dict:
    async def go():
        async for m in messages:
            if m.get("type") == "exit":
                return m
        return None

    return await asyncio.wait_for(go(), timeout)


async def test_sync_sandbox_terminal(sandbox):
    sandbox.env.set("TERMVAR", "from-env-api")
    term = sandbox.terminal
    ws = await term.connect()
    async with ws:
        out = term.iter_output(ws)
        # The computed value proves the shell ran the line (the echo of the input alone won't).
        await term.send_input(ws, "echo hi-$((40+2))\n")
        await _read_until(out, "hi-42")
        await term.send_input(ws, "pwd; echo \"tv=$TERMVAR\"\n")
        text = await _read_until(out, "tv=from-env-api")
        assert "/workspace" in text

        await term.resize(ws, 123, 41)
        await term.send_input(ws, "stty size\n")
        await _read_until(out, "41 123")

        await term.send_input(ws, "exit 3\n")
        ex = await _read_exit(out)
        assert ex is not None and ex.get("code") == 3


async def test_terminal_interrupt_and_isolated_sessions(sandbox):
    term = sandbox.terminal
    ws1 = await term.connect()
    ws2 = await term.connect()
    async with ws1, ws2:
        o1, o2 = term.iter_output(ws1), term.iter_output(ws2)
        await term.send_input(ws1, "A=one; echo a-is-$A\n")
        await _read_until(o1, "a-is-one")
        await term.send_input(ws2, "echo a-is-${A:-unset}\n")
        await _read_until(o2, "a-is-unset")
        # Ctrl-C interrupts a foreground program.
        await term.send_input(ws1, "sleep 100\n")
        await asyncio.sleep(0.3)
        await term.send_input(ws1, "\x03")
        await term.send_input(ws1, "echo after-$((1+1))\n")
        await _read_until(o1, "after-2")


async def test_terminal_closing_kills_its_processes(sandbox):
    term = sandbox.terminal
    ws = await term.connect()
    async with ws:
        out = term.iter_output(ws)
        await term.send_input(ws, "sleep 4321 & echo started-$((2*2))\n")
        await _read_until(out, "started-4")
    # Client went away: the shell and its job are gone.
    for _ in range(50):
        r = sandbox.commands.run("pgrep -f 'slee[p] 4321' || echo none")
        if r.stdout == "none\n":
            break
        await asyncio.sleep(0.1)
    assert r.stdout == "none\n"


async def test_terminal_large_output_and_unicode(sandbox):
    term = sandbox.terminal
    ws = await term.connect()
    async with ws:
        out = term.iter_output(ws)
        await term.send_input(ws, "seq 1 150000 | tail -n 150000 >/dev/tty; echo end-$((9*9))\n")
        text = await _read_until(out, "end-81", timeout=30)
        assert "149999\n150000" in text.replace("\r", "")
        await term.send_input(ws, "echo 'ünï ✓ 🐍'\n")
        await _read_until(out, "ünï ✓ 🐍\n", timeout=10)


async def test_async_sandbox_terminal(async_sandbox):
    term = async_sandbox.terminal
    ws = await term.connect()
    async with ws:
        out = term.iter_output(ws)
        await term.send_input(ws, "echo async-$((5*5))\n")
        await _read_until(out, "async-25")
        await term.resize(ws, 90, 30)
        await term.send_input(ws, "stty size\n")
        await _read_until(out, "30 90")
        await term.send_input(ws, "exit\n")
        ex = await _read_exit(out)
        assert ex is not None and ex.get("code") == 0
