"""Code execution: `run_code` (`POST /execute`), `run_code_stream` (`/execute/stream`) and the
execution cache (`/cache/*`) — spec §8.1, §9.3, §10.1, §13.6–7; §14 flows 2, 3, 4, 6, 7, 10.

Written against the spec while /execute is being implemented; every test here needs it (or the
cache endpoints).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time

import pytest

from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai.errors import AgentError, CodeExecutionError

from conftest import async_wait_until, wait_until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- flow 2: basics --------------------------------------------------------------------------


def test_print_hi(sandbox):
    r = sandbox.run_code("print('hi')")
    assert r.stdout == "hi\n"
    assert r.stderr == ""
    assert r.exit_code == 0
    assert r.success is True
    assert r.execution_time is not None and r.execution_time >= 0


def test_exception_is_a_failed_result(sandbox):
    r = sandbox.run_code("1/0")
    assert r.success is False
    assert r.exit_code != 0
    assert "ZeroDivisionError" in r.stderr


def test_failing_code_runs_once(sandbox):
    """A failure must be HTTP 200 with success=false: a 5xx would make the SDK run it 3 times."""
    r = sandbox.run_code("open('/workspace/runs.txt', 'a').write('run\\n')\nraise ValueError('boom')")
    assert r.success is False and "ValueError" in r.stderr
    assert sandbox.files.read("/workspace/runs.txt") == "run\n"


def test_bash(sandbox):
    r = sandbox.run_code("echo $((1+2)); echo err >&2", language="bash")
    assert r.stdout == "3\n" and r.stderr == "err\n" and r.exit_code == 0
    r = sandbox.run_code("exit 4", language="bash")
    assert r.exit_code == 4 and r.success is False


def test_javascript(sandbox):
    r = sandbox.run_code("console.log(1 + 2)", language="javascript")
    assert r.stdout == "3\n" and r.exit_code == 0 and r.success is True
    r = sandbox.run_code("throw new Error('js-boom')", language="javascript")
    assert r.success is False and "js-boom" in r.stderr


def test_env_and_working_dir(sandbox):
    r = sandbox.run_code("import os\nprint(os.environ['X'])\nprint(os.getcwd())",
                         env={"X": "1"}, working_dir="/tmp")
    assert r.stdout == "1\n/tmp\n", r


def test_default_working_dir(sandbox):
    assert sandbox.run_code("import os; print(os.getcwd())").stdout == "/workspace\n"


def test_timeout(sandbox):
    started = time.monotonic()
    try:
        r = sandbox.run_code("import time\ntime.sleep(30)\nprint('too late')", timeout=1)
    except CodeExecutionError as e:
        assert e.code == "EXECUTION_TIMEOUT"
    else:
        assert r.success is False and "too late" not in r.stdout
    assert time.monotonic() - started < 15
    # The sandbox (and its interpreter) is usable afterwards.
    assert sandbox.run_code("print('alive')").stdout == "alive\n"


def test_variables_persist_between_calls(sandbox):
    """Stateful kernel (the intended behaviour; the SDK itself does not require it)."""
    sandbox.run_code("x = 41\ndef inc(v):\n    return v + 1")
    assert sandbox.run_code("print(inc(x))").stdout == "42\n"


def test_javascript_state_persists(sandbox):
    sandbox.run_code("var counter = 5; function bump() { return ++counter; }", language="javascript")
    assert sandbox.run_code("console.log(bump())", language="javascript").stdout == "6\n"


def test_kernel_death_is_reported_and_recovered(sandbox):
    sandbox.run_code("kept = 1")
    r = sandbox.run_code("import os; os._exit(3)")
    assert r.success is False and r.exit_code != 0
    r = sandbox.run_code("print('fresh kernel', 'kept' in globals())")
    assert r.success and r.stdout == "fresh kernel False\n"


def test_go(sandbox):
    code = 'package main\nimport "fmt"\nfunc main() { fmt.Println("go", 6*7) }\n'
    r = sandbox.run_code(code, language="go", timeout=60)
    assert r.stdout == "go 42\n" and r.success


def test_large_and_unicode_output(sandbox):
    r = sandbox.run_code("print('x' * 3_000_000)\nprint('ünï ✓ 🐍')")
    assert r.stdout == "x" * 3_000_000 + "\nünï ✓ 🐍\n"


def test_no_stdin(sandbox):
    r = sandbox.run_code("input()", timeout=10)
    assert r.success is False  # fails at once instead of hanging until the timeout


def test_unknown_language_is_rejected(sandbox):
    with pytest.raises(AgentError) as ei:
        sandbox.run_code("print(1)", language="cobol")
    assert ei.value.status_code == 400


async def test_parallel_run_code_on_one_sandbox(async_sandbox):
    outs = await asyncio.gather(*(async_sandbox.run_code(f"print({i} * 2)", timeout_seconds=60) for i in range(6)))
    assert [o.stdout for o in outs] == [f"{i * 2}\n" for i in range(6)]


# --- flow 3: rich output ---------------------------------------------------------------------


def test_matplotlib_png(sandbox):
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3, 4], [1, 4, 9, 16])\n"
        "plt.title('squares')\n"
        "plt.savefig('/workspace/plot.png')\n"
    )
    r = sandbox.run_code(code, timeout=60)
    assert r.success, r.stderr
    assert r.rich_outputs, r
    first = r.rich_outputs[0]
    # SDK surprise: `type` is a plain (non-str) Enum, `Type.image_png`, not the string the docs show.
    assert first.type.value == "image/png"
    assert base64.b64decode(first.data["image/png"]).startswith(PNG_MAGIC)
    # The figure saved by the code is there too.
    assert sandbox.files.read_bytes("/workspace/plot.png").startswith(PNG_MAGIC)


def test_dataframe_html(sandbox):
    r = sandbox.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})", timeout=60)
    assert r.success, r.stderr
    by_type = {o.type.value: o.data for o in r.rich_outputs}
    assert "<table" in by_type["text/html"]["text/html"]


# --- flows 4 and 6: files and env are shared with run_code -----------------------------------


def test_files_shared_with_run_code(sandbox):
    sandbox.files.write("/workspace/in.txt", "from the files API")
    r = sandbox.run_code("print(open('/workspace/in.txt').read())\nopen('/workspace/out.txt','w').write('from code ✓')")
    assert r.stdout == "from the files API\n"
    assert sandbox.files.read("/workspace/out.txt") == "from code ✓"


def test_env_vars_visible_to_run_code(make_sandbox):
    sb = make_sandbox(env_vars={"A": "1"})
    assert sb.run_code("import os; print(os.environ.get('A'))").stdout == "1\n"
    sb.env.set("B", "2")
    assert sb.run_code("import os; print(os.environ.get('B'))").stdout == "2\n"
    r = sb.run_code("import os; print(os.environ.get('B'))", env={"B": "request"})
    assert r.stdout == "request\n"


# --- flow 7: cache ---------------------------------------------------------------------------


def test_cache_stats_and_clear_shapes(sandbox):
    stats = sandbox.cache.stats()
    cache = stats["cache"]
    for key in ("size", "max_size", "total_hits"):
        assert isinstance(cache[key], int), (key, stats)
    assert isinstance(cache["ttl"], str) and cache["ttl"]
    assert stats["timestamp"]
    cleared = sandbox.cache.clear()
    assert isinstance(cleared["message"], str) and cleared["message"]
    after = sandbox.cache.stats()["cache"]
    assert after["size"] == 0 and after["total_hits"] == 0


def test_identical_code_twice_and_cache_clear(sandbox):
    code = "open('/workspace/side.txt', 'a').write('x')\nprint('same')"
    first, second = sandbox.run_code(code), sandbox.run_code(code)
    assert first.stdout == second.stdout == "same\n"
    # Side effects happen each time: the SDK never opts in to cached results.
    assert sandbox.files.read("/workspace/side.txt") == "xx"
    assert isinstance(sandbox.cache.stats()["cache"]["total_hits"], int)
    assert sandbox.cache.clear()["message"]
    after = sandbox.cache.stats()["cache"]
    assert after["size"] == 0 and after["total_hits"] == 0


async def test_async_cache(async_sandbox):
    stats = await async_sandbox.cache.stats()
    assert isinstance(stats["cache"]["size"], int)
    await async_sandbox.cache.clear()
    assert (await async_sandbox.cache.stats())["cache"]["size"] == 0


# --- flow 10: streaming and async ------------------------------------------------------------


async def _collect(gen, timeout=30.0):
    async def go():
        return [m async for m in gen]

    return await asyncio.wait_for(go(), timeout)


def _check_stream(msgs, want_stdout):
    types = [m.get("type") for m in msgs]
    assert types and types[-1] == "complete", types
    assert msgs[-1].get("success") is True
    assert "stdout" in types and types.index("stdout") < types.index("complete")
    assert "".join(m["data"] for m in msgs if m.get("type") == "stdout") == want_stdout
    results = [m for m in msgs if m.get("type") == "result"]
    if results:
        assert results[0]["exit_code"] == 0


async def test_run_code_stream_sync_sandbox(sandbox):
    code = "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\nprint('e', file=sys.stderr)"
    msgs = await _collect(sandbox.run_code_stream(code))
    _check_stream(msgs, "0\n1\n2\n")
    assert "".join(m["data"] for m in msgs if m.get("type") == "stderr") == "e\n"


async def test_run_code_stream_failure(sandbox):
    msgs = await _collect(sandbox.run_code_stream("raise RuntimeError('stream-boom')"))
    assert msgs[-1].get("type") == "complete"
    assert msgs[-1].get("success") is False
    text = "".join(m.get("data", "") + m.get("error", "") for m in msgs)
    assert "stream-boom" in text


async def test_run_code_stream_async_sandbox(async_sandbox):
    msgs = await _collect(async_sandbox.run_code_stream("print(1)"))
    _check_stream(msgs, "1\n")
    msgs = await _collect(async_sandbox.run_code_stream("echo $V", language="bash", env={"V": "vv"}))
    _check_stream(msgs, "vv\n")


async def test_async_run_code(async_sandbox):
    r = await async_sandbox.run_code("print('hi')", timeout_seconds=30)
    assert r.stdout == "hi\n" and r.success is True and r.exit_code == 0
    r = await async_sandbox.run_code("1/0", timeout_seconds=30)
    assert r.success is False and "ZeroDivisionError" in r.stderr
    r = await async_sandbox.run_code("import os; print(os.environ['Y'], os.getcwd())",
                                     env={"Y": "y1"}, working_dir="/tmp", timeout_seconds=30)
    assert r.stdout == "y1 /tmp\n"
    r = await async_sandbox.run_code("console.log('js')", language="javascript", timeout_seconds=30)
    assert r.stdout == "js\n"


async def test_async_run_code_in_context_manager(base_url, api_key):
    async with AsyncSandbox.create(template="code-interpreter", base_url=base_url, api_key=api_key) as sb:
        r = await sb.run_code("print(6*7)", timeout_seconds=30)
        assert r.stdout == "42\n"
        await sb.files.write("/workspace/a.txt", "async files")
        assert await sb.files.read("/workspace/a.txt") == "async files"
        assert (await sb.commands.run("cat /workspace/a.txt", timeout_seconds=30)).stdout == "async files"


async def test_run_code_stream_timeout(sandbox):
    started = time.monotonic()
    msgs = await _collect(sandbox.run_code_stream("import time\nprint('tick', flush=True)\ntime.sleep(30)", timeout=1))
    assert time.monotonic() - started < 10
    assert msgs[-1].get("type") == "complete" and msgs[-1].get("success") is False, msgs
    assert any(m.get("code") == "EXECUTION_TIMEOUT" for m in msgs if m.get("type") == "error"), msgs


async def test_run_code_stream_client_close_stops_the_code(sandbox):
    code = "import time\nn = 0\nwhile True:\n    n += 1\n    open('/workspace/beat.txt', 'w').write(str(n))\n    print(n, flush=True)\n    time.sleep(0.05)"
    gen = sandbox.run_code_stream(code, timeout=120)
    async for m in gen:
        if m.get("type") == "stdout":
            break
    await gen.aclose()
    # The loop stops: the heartbeat file stops changing, and the sandbox runs code again.
    await asyncio.sleep(0.5)
    a = sandbox.files.read("/workspace/beat.txt")
    await asyncio.sleep(0.5)
    assert sandbox.files.read("/workspace/beat.txt") == a
    r = await asyncio.to_thread(sandbox.run_code, "print('free again')", timeout=20)
    assert r.stdout == "free again\n"


async def test_run_code_stream_large_output(sandbox):
    """Frames must stay under the websockets client's 1 MiB limit (else close code 1009)."""
    msgs = await _collect(sandbox.run_code_stream("print('y' * 3_000_000)"), timeout=60)
    _check_stream(msgs, "y" * 3_000_000 + "\n")


# --- run_code_async: webhook delivered inside the sandbox (no host networking needed) ---------

RECEIVER = r'''
import http.server, json, os
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/workspace/hook.tmp", "w") as f:
            json.dump({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": body.decode()}, f)
        os.rename("/workspace/hook.tmp", "/workspace/hook.json")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 9077), Hook).serve_forever()
'''


def _start_receiver(sb):
    sb.files.write("/workspace/recv.py", RECEIVER)
    sb.commands.run("python3 /workspace/recv.py", background=True)
    probe = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 9077), 1)'"
    wait_until(lambda: sb.commands.run(probe).exit_code == 0, timeout=15, what="the webhook receiver")


def test_run_code_async_webhook(sandbox):
    _start_receiver(sandbox)
    r = sandbox.run_code_async(
        "print('async hi')",
        callback_url="http://127.0.0.1:9077/hook",
        callback_headers={"X-Custom": "custom-value"},
        callback_signature_secret="s3cret",
        timeout=60,
    )
    assert r["execution_id"] and r["status"] in ("queued", "running")
    wait_until(lambda: sandbox.files.exists("/workspace/hook.json"), timeout=30, what="the webhook")
    hook = json.loads(sandbox.files.read("/workspace/hook.json"))
    assert hook["path"] == "/hook"
    payload = json.loads(hook["body"])
    assert payload["execution_id"] == r["execution_id"]
    assert payload["status"] == "completed" and payload["exit_code"] == 0
    assert payload["stdout"] == "async hi\n"
    h = hook["headers"]
    assert h["x-custom"] == "custom-value"
    assert re.fullmatch(r"\d+", h["x-hopx-timestamp"])
    sig = h["x-hopx-signature"]
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", sig)
    # The SDK does not define the signed bytes; the raw body (or "timestamp.body") are the usual choices.
    key = b"s3cret"
    candidates = {hmac.new(key, hook["body"].encode(), hashlib.sha256).hexdigest(),
                  hmac.new(key, f'{h["x-hopx-timestamp"]}.{hook["body"]}'.encode(), hashlib.sha256).hexdigest()}
    assert sig.removeprefix("sha256=") in candidates


async def test_async_run_code_async_webhook(async_sandbox, base_url, api_key):
    # The receiver is started through a sync handle on the same sandbox (blocking briefly is fine).
    sync = Sandbox(async_sandbox.sandbox_id, base_url=base_url, api_key=api_key)
    _start_receiver(sync)
    r = await async_sandbox.run_code_async("exit(3)", callback_url="http://127.0.0.1:9077/x")
    assert r["execution_id"]

    async def arrived():
        return await async_sandbox.files.exists("/workspace/hook.json")

    await async_wait_until(arrived, timeout=30, what="the webhook")
    payload = json.loads(json.loads(await async_sandbox.files.read("/workspace/hook.json"))["body"])
    assert payload["status"] == "failed" and payload["exit_code"] == 3
