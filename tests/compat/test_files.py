"""Files through the SDK (spec §9.1, §10.3; §14 flow 4).

Client quirk (§9.1/§13.16): the SDK base64-decodes any download that happens to be valid base64,
so every byte payload read back here contains a byte that is not in the base64 alphabet.
Async file calls put the path into the query without encoding (§3.5): async paths here use only
[A-Za-z0-9/._-].
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from datetime import datetime

import pytest

from hopx_ai.errors import FileNotFoundError

BINARY = bytes(range(256)) * 4 + b"\x00 tail \xff"  # not valid base64 (NUL, space, 0xff, …)
UNICODE = "héllo wörld ✓ — ünïcødé 🐍\nline two\ttab\n"


def _not_base64(b: bytes) -> bool:
    try:
        return base64.b64encode(base64.b64decode(b, validate=True)) != b
    except Exception:
        return True


def test_payloads_avoid_the_base64_quirk():
    assert _not_base64(BINARY)


def test_text_round_trip(sandbox):
    sandbox.files.write("/workspace/hello.txt", UNICODE)
    assert sandbox.files.read("/workspace/hello.txt") == UNICODE
    # Overwrite shrinks the file.
    sandbox.files.write("/workspace/hello.txt", "short")
    assert sandbox.files.read("/workspace/hello.txt") == "short"
    # Empty file.
    sandbox.files.write("/workspace/empty.txt", "")
    assert sandbox.files.read("/workspace/empty.txt") == ""


def test_write_creates_parents_and_applies_mode(sandbox):
    sandbox.files.write("/workspace/a/b/c/run.sh", "#!/bin/sh\necho ran\n", mode="0755")
    r = sandbox.commands.run("stat -c %a /workspace/a/b/c/run.sh && /workspace/a/b/c/run.sh")
    assert r.stdout == "755\nran\n"


def test_binary_round_trip(sandbox):
    sandbox.files.write_bytes("/workspace/blob.bin", BINARY)
    assert sandbox.files.read_bytes("/workspace/blob.bin") == BINARY
    # Stored as real bytes, so code in the sandbox sees the same file.
    r = sandbox.commands.run("stat -c %s /workspace/blob.bin && sha256sum /workspace/blob.bin")
    size, digest = r.stdout.split("\n")[0], r.stdout.split("\n")[1].split()[0]
    assert int(size) == len(BINARY)
    assert digest == hashlib.sha256(BINARY).hexdigest()


def test_files_written_by_commands_are_readable(sandbox):
    sandbox.commands.run("printf 'from the shell\\n' > /workspace/shell.txt; head -c 300 /dev/urandom > /tmp/rand.bin")
    assert sandbox.files.read("/workspace/shell.txt") == "from the shell\n"
    data = sandbox.files.read_bytes("/tmp/rand.bin")
    if _not_base64(data):  # 300 random bytes are essentially never valid base64
        assert len(data) == 300
        digest = sandbox.commands.run("sha256sum /tmp/rand.bin").stdout.split()[0]
        assert hashlib.sha256(data).hexdigest() == digest


def test_upload_download(sandbox, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("uploaded text\nsecond line\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(BINARY)

    sandbox.files.upload(str(text), "/workspace/up/notes.txt")
    sandbox.files.upload(str(blob), "/workspace/up/blob.bin")
    assert sandbox.files.read("/workspace/up/notes.txt") == "uploaded text\nsecond line\n"
    assert sandbox.commands.run("sha256sum < /workspace/up/blob.bin").stdout.split()[0] == hashlib.sha256(BINARY).hexdigest()

    out_text, out_blob = tmp_path / "notes.out", tmp_path / "blob.out"
    sandbox.files.download("/workspace/up/notes.txt", str(out_text))
    sandbox.files.download("/workspace/up/blob.bin", str(out_blob))
    assert out_text.read_text() == "uploaded text\nsecond line\n"
    assert out_blob.read_bytes() == BINARY

    with pytest.raises(FileNotFoundError):
        sandbox.files.download("/workspace/up/missing", str(tmp_path / "x"))


def test_upload_large_file(sandbox, tmp_path):
    big = tmp_path / "big.bin"
    payload = os.urandom(3 * 1024 * 1024) + b" \x00"
    big.write_bytes(payload)
    sandbox.files.upload(str(big), "/workspace/big.bin")
    out = tmp_path / "big.out"
    sandbox.files.download("/workspace/big.bin", str(out))
    assert out.read_bytes() == payload


def test_mkdir_list_exists_remove(sandbox):
    sandbox.files.mkdir("/workspace/proj/src/deep")  # parents created (mkdir -p)
    sandbox.files.mkdir("/workspace/proj/src/deep")  # idempotent
    sandbox.files.write("/workspace/proj/readme.md", "# title\n")
    sandbox.files.write_bytes("/workspace/proj/data.bin", BINARY)

    entries = {f.name: f for f in sandbox.files.list("/workspace/proj")}
    assert set(entries) == {"src", "readme.md", "data.bin"}
    assert entries["src"].is_directory and entries["src"].is_dir and not entries["src"].is_file
    assert entries["readme.md"].is_file and entries["readme.md"].size == len("# title\n")
    assert entries["data.bin"].size == len(BINARY)
    assert entries["readme.md"].path == "/workspace/proj/readme.md"
    mt = entries["readme.md"].modified_time
    assert isinstance(mt, datetime) and mt.tzinfo is not None
    assert entries["readme.md"].permissions  # e.g. "-rw-r--r--"

    # Default listing is /workspace.
    assert "proj" in {f.name for f in sandbox.files.list()}

    assert sandbox.files.exists("/workspace/proj/readme.md") is True
    assert sandbox.files.exists("/workspace/proj/src/deep") is True
    assert sandbox.files.exists("/workspace/proj/nothing") is False

    sandbox.files.remove("/workspace/proj/readme.md")
    assert sandbox.files.exists("/workspace/proj/readme.md") is False
    sandbox.files.remove("/workspace/proj")  # recursive
    assert sandbox.files.exists("/workspace/proj") is False
    assert sandbox.commands.run("test -e /workspace/proj || echo gone").stdout == "gone\n"


def test_paths_with_special_characters_sync(sandbox):
    """The sync client form-encodes queries; the server must decode `+`, spaces, `&`, `#`."""
    for name in ["with space.txt", "plus+sign.txt", "amp&hash#q?.txt", "ünï.txt"]:
        path = f"/workspace/odd/{name}"
        sandbox.files.write(path, f"content of {name}")
        assert sandbox.files.read(path) == f"content of {name}"
        assert sandbox.files.exists(path)
    names = {f.name for f in sandbox.files.list("/workspace/odd")}
    assert names == {"with space.txt", "plus+sign.txt", "amp&hash#q?.txt", "ünï.txt"}


async def _watch_until_event(watch_gen, write_once, *, match, timeout=20.0):
    """Iterates a files.watch() generator while `write_once(i)` keeps creating files until an
    event satisfying `match` arrives (the SDK gives no signal for "watch established")."""
    got: list[dict] = []
    stop = asyncio.Event()

    async def writer():
        i = 0
        while not stop.is_set():
            await write_once(i)
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.3)
            except asyncio.TimeoutError:
                pass

    async def reader():
        async for ev in watch_gen:
            got.append(ev)
            if match(ev):
                return ev

    w = asyncio.create_task(writer())
    try:
        return await asyncio.wait_for(reader(), timeout), got
    finally:
        stop.set()
        await w
        await watch_gen.aclose()


async def test_watch_sync_sandbox(sandbox):
    sandbox.files.mkdir("/workspace/watched")

    async def write_once(i):
        await asyncio.to_thread(sandbox.files.write, f"/workspace/watched/f{i}.txt", "x")

    ev, all_events = await _watch_until_event(
        sandbox.files.watch("/workspace/watched"),
        write_once,
        match=lambda e: e.get("event") == "created",
    )
    assert ev["type"] == "change"
    assert ev["path"].startswith("/workspace/watched/f")
    assert ev.get("timestamp")
    assert all("event" in e for e in all_events), all_events


async def test_watch_sees_modify_and_delete(sandbox):
    sandbox.files.mkdir("/workspace/w2")
    sandbox.files.write("/workspace/w2/target.txt", "v1")
    seen: list[tuple[str, str]] = []

    async def write_once(i):
        # Modify, then delete and re-create, so every kind of event keeps happening.
        await asyncio.to_thread(sandbox.files.write, "/workspace/w2/target.txt", f"v{i + 2}")
        if i % 2:
            await asyncio.to_thread(sandbox.files.remove, "/workspace/w2/target.txt")

    def match(e):
        if e.get("path") == "/workspace/w2/target.txt":
            seen.append(e.get("event"))
        return "modified" in seen and "deleted" in seen

    await _watch_until_event(sandbox.files.watch("/workspace/w2"), write_once, match=match)


async def test_watch_of_a_missing_path_ends(sandbox):
    """An error frame, then the socket closes, so the SDK's loop ends instead of hanging."""

    async def drain():
        return [m async for m in sandbox.files.watch("/workspace/does/not/exist")]

    msgs = await asyncio.wait_for(drain(), 15)
    assert msgs and msgs[-1].get("type") == "error", msgs


# --- async SDK -------------------------------------------------------------------------------


async def test_async_files_round_trip(async_sandbox):
    f = async_sandbox.files
    await f.write("/workspace/async.txt", UNICODE)
    assert await f.read("/workspace/async.txt") == UNICODE
    await f.write_bytes("/workspace/async.bin", BINARY)
    assert await f.read_bytes("/workspace/async.bin") == BINARY
    await f.mkdir("/workspace/adir/sub")
    names = {e.name: e for e in await f.list("/workspace")}
    assert {"async.txt", "async.bin", "adir"} <= set(names)
    assert names["adir"].is_directory and names["async.bin"].size == len(BINARY)
    assert await f.exists("/workspace/async.txt") is True
    assert await f.exists("/workspace/nothing-here") is False
    await f.remove("/workspace/async.txt")
    assert await f.exists("/workspace/async.txt") is False
    with pytest.raises(FileNotFoundError):
        await f.read("/workspace/async.txt")


async def test_watch_async_sandbox(async_sandbox):
    await async_sandbox.files.mkdir("/workspace/awatched")

    async def write_once(i):
        await async_sandbox.files.write(f"/workspace/awatched/g{i}.txt", "y")

    ev, _ = await _watch_until_event(
        async_sandbox.files.watch("/workspace/awatched"),
        write_once,
        match=lambda e: e.get("event") == "created",
    )
    assert ev["path"].startswith("/workspace/awatched/g")
