"""Every tool, through the official MCP client, over stdio (`hutch mcp`) and streamable HTTP
(`/mcp`): each test runs once per transport, in the session's own real sandbox."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import call, call_error, call_invalid

pytestmark = pytest.mark.anyio

TOOLS = {
    "execute",
    "shell_execute",
    "list_artifacts",
    "cleanup_artifacts",
    "get_execution_info",
    "start_web_app",
    "create_manim_animation",
    "sandbox_create",
    "sandbox_list",
    "sandbox_kill",
    "file_read",
    "file_write",
    "file_list",
}

FLASK_APP = """
from flask import Flask, jsonify

app = Flask(__name__)

@app.route("/")
def index():
    return "hello from flask in a sandbox"

@app.route("/api/square/<int:n>")
def square(n):
    return jsonify(n=n, square=n * n)
"""


async def test_lists_every_tool_with_a_schema(mcp):
    tools = {t.name: t for t in (await mcp.list_tools()).tools}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t.description and len(t.description) > 40, t.name
        assert t.input_schema["type"] == "object", t.name
    execute = tools["execute"].input_schema
    assert execute["required"] == ["code"]
    assert {"code", "language", "timeout", "sandbox_id"} <= set(execute["properties"])
    assert tools["sandbox_kill"].input_schema["required"] == ["sandbox_id"]


async def test_execute_returns_output_and_keeps_state(mcp):
    r = await call(mcp, "execute", {"code": "x = 6 * 7\nprint(x)\nx + 1"})
    assert r["success"] is True
    assert r["stdout"] == "42\n"
    assert r["result"] == "43"
    assert r["error"] is None
    assert r["stderr"] == ""
    assert isinstance(r["execution_time"], (int, float))
    assert r["artifacts"] == []
    sandbox = r["sandbox_id"]
    # Same sandbox, same interpreter: the variable is still there.
    again = await call(mcp, "execute", {"code": "print(x * 2)"})
    assert again["stdout"] == "84\n"
    assert again["sandbox_id"] == sandbox
    # Other languages run in the same sandbox.
    js = await call(mcp, "execute", {"code": "console.log(1 + 2)", "language": "javascript"})
    assert js["stdout"] == "3\n" and js["success"] is True
    sh = await call(mcp, "execute", {"code": "echo $((2 + 3))", "language": "bash"})
    assert sh["stdout"] == "5\n"


async def test_failing_code_is_a_result_not_an_error(mcp):
    r = await call(mcp, "execute", {"code": "print('before')\n1 / 0"})
    assert r["success"] is False
    assert r["stdout"] == "before\n"
    assert "ZeroDivisionError" in r["error"]
    t = await call(mcp, "execute", {"code": "import time\nprint('start', flush=True)\ntime.sleep(30)", "timeout": 2})
    assert t["success"] is False and t["timed_out"] is True
    assert t["stdout"] == "start\n"


async def test_invalid_input_is_a_protocol_error(mcp):
    e = await call_invalid(mcp, "execute", {"code": "1", "language": "cobol"})
    assert "unknown language" in str(e) and "python" in str(e)
    e = await call_invalid(mcp, "execute", {"code": "   "})
    assert "code must not be empty" in str(e)
    e = await call_invalid(mcp, "execute", {"code": "1", "timeout": 0})
    assert "timeout" in str(e)
    e = await call_invalid(mcp, "execute", {"language": "python"})  # no code at all
    assert "missing field `code`" in str(e)
    e = await call_invalid(mcp, "shell_execute", {"command": "true", "timeout": "soon"})
    assert "invalid arguments" in str(e)
    e = await call_invalid(mcp, "start_web_app", {"app_type": "flask"})
    assert "needs `code`" in str(e)
    e = await call_invalid(mcp, "start_web_app", {"app_type": "django", "code": "x"})
    assert "unknown app_type" in str(e)
    e = await call_invalid(mcp, "file_read", {"path": "/x", "encoding": "latin1"})
    assert "encoding" in str(e)


async def test_matplotlib_plot_becomes_an_artifact(mcp):
    probe = await mcp.call_tool("list_artifacts", {})
    if probe.is_error and "no artifacts API" in probe.content[0].text:
        pytest.skip("this build's agent has no artifacts API yet")
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 3, 2])\nplt.title('mcp')\nplt.show()\nprint('plotted')"
    )
    r = await call(mcp, "execute", {"code": code})
    assert r["success"] is True and r["stdout"] == "plotted\n", r
    assert len(r["artifacts"]) >= 1, r
    art = r["artifacts"][0]
    assert art["type"] == "image/png" and art["category"] == "plots", art
    assert art["path"].startswith("/workspace/artifacts/plots/") and art["size"] > 0
    assert art["execution_id"] == r["execution_id"]

    listed = await call(mcp, "list_artifacts", {})
    assert art["id"] in {a["id"] for a in listed["artifacts"]}
    only = await call(mcp, "list_artifacts", {"execution_id": r["execution_id"]})
    assert [a["id"] for a in only["artifacts"]] == [a["id"] for a in r["artifacts"]]
    png = await call(mcp, "file_read", {"path": art["path"], "encoding": "base64"})
    assert base64.b64decode(png["content"]).startswith(b"\x89PNG")

    cleaned = await call(mcp, "cleanup_artifacts", {})
    assert cleaned["removed"] >= 1
    assert (await call(mcp, "list_artifacts", {}))["artifacts"] == []


async def test_shell_execute(mcp):
    r = await call(mcp, "shell_execute", {"command": "echo hello | tr a-z A-Z; pwd"})
    assert r["stdout"] == "HELLO\n/workspace\n"
    assert r["exit_code"] == 0 and r["success"] is True and r["timed_out"] is False
    r = await call(mcp, "shell_execute", {"command": "pwd; echo oops >&2; exit 3", "working_directory": "/tmp"})
    assert r["stdout"] == "/tmp\n" and r["stderr"] == "oops\n"
    assert r["exit_code"] == 3 and r["success"] is False
    r = await call(mcp, "shell_execute", {"command": "echo start; sleep 30", "timeout": 1})
    assert r["timed_out"] is True and r["success"] is False
    assert "start" in r["stdout"]


async def test_file_tools(mcp):
    w = await call(mcp, "file_write", {"path": "/workspace/notes/a.txt", "content": "line 1\nline 2\n"})
    assert w["size"] == 14
    r = await call(mcp, "file_read", {"path": "/workspace/notes/a.txt"})
    assert r["content"] == "line 1\nline 2\n" and r["encoding"] == "utf-8"
    # Relative paths are under /workspace; the code sees the same files.
    r = await call(mcp, "file_read", {"path": "notes/a.txt"})
    assert r["content"].startswith("line 1")
    out = await call(mcp, "execute", {"code": "print(open('/workspace/notes/a.txt').read().count('line'))"})
    assert out["stdout"] == "2\n"
    raw = bytes(range(256))
    await call(mcp, "file_write", {"path": "notes/b.bin", "content": base64.b64encode(raw).decode(), "encoding": "base64"})
    b = await call(mcp, "file_read", {"path": "notes/b.bin", "encoding": "base64"})
    assert base64.b64decode(b["content"]) == raw
    listing = await call(mcp, "file_list", {"path": "/workspace/notes"})
    names = {e["name"]: e for e in listing["entries"]}
    assert set(names) == {"a.txt", "b.bin"}
    assert names["b.bin"]["size"] == 256 and names["a.txt"]["is_directory"] is False
    top = await call(mcp, "file_list", {})
    assert top["path"] == "/workspace"
    assert any(e["name"] == "notes" and e["is_directory"] for e in top["entries"])
    text = await call_error(mcp, "file_read", {"path": "/workspace/missing.txt"})
    assert "missing.txt" in text


async def test_start_web_app_flask_through_the_preview_url(mcp, hutch):
    r = await call(mcp, "start_web_app", {"code": FLASK_APP, "app_type": "flask", "port": 5000})
    sandbox = r["sandbox_id"]
    assert r["url"] == f"http://5000-{sandbox}.localhost:{hutch.port}/"
    assert r["port"] == 5000 and r["app_type"] == "flask" and r["process_id"]
    assert r["status_code"] == 200
    status, body = hutch.fetch_preview(r["url"])
    assert (status, body) == (200, b"hello from flask in a sandbox")
    status, body = hutch.fetch_preview(r["url"], "/api/square/12")
    assert status == 200 and json.loads(body) == {"n": 12, "square": 144}
    # The port is taken now.
    text = await call_error(mcp, "start_web_app", {"code": FLASK_APP, "port": 5000})
    assert "already in use" in text


async def test_start_web_app_with_a_command(mcp, hutch):
    await call(mcp, "file_write", {"path": "/workspace/site/index.html", "content": "<h1>static</h1>"})
    r = await call(
        mcp,
        "start_web_app",
        {"command": "cd /workspace/site && exec python3 -m http.server $PORT --bind 127.0.0.1", "port": 8123},
    )
    assert r["app_type"] == "command"
    status, body = hutch.fetch_preview(r["url"], "/index.html")
    assert (status, body) == (200, b"<h1>static</h1>")


async def test_start_web_app_reports_a_crashing_app(mcp):
    text = await call_error(
        mcp,
        "start_web_app",
        {"command": "echo about to fail >&2; exit 7", "port": 8124, "wait_seconds": 20},
    )
    assert "exited" in text and "about to fail" in text


async def test_manim_fails_clearly_without_manim(mcp):
    scene = "from manim import *\n\nclass Dot1(Scene):\n    def construct(self):\n        self.add(Dot())\n"
    e = await call_invalid(mcp, "create_manim_animation", {"code": scene, "quality": "low_quality"})
    msg = str(e)
    assert "manim is not installed" in msg and "code-interpreter" in msg, msg
    e = await call_invalid(mcp, "create_manim_animation", {"code": scene, "quality": "ultra"})
    assert "unknown quality" in str(e)


async def test_get_execution_info(mcp):
    await call(mcp, "execute", {"code": "print('counted')"})
    info = await call(mcp, "get_execution_info", {"history_limit": 5})
    assert info["status"] == "running"
    assert info["template"] == "code-interpreter"
    assert info["session_sandbox"] is True and info["owned_by_session"] is True
    assert info["resources"]["memory_mb"] > 0 and info["resources"]["vcpu"] >= 1
    assert info["preview_url"] == f"http://{{port}}-{info['sandbox_id']}.localhost:{info['preview_url'].split(':')[-1]}"
    assert info["stats"]["total_executions"] >= 1
    assert info["history"] and info["history"][0]["execution_id"], info["history"]
    e = await call_invalid(mcp, "get_execution_info", {"history_limit": 1000})
    assert "history_limit" in str(e)


async def test_sandbox_lifecycle_tools(mcp, hutch):
    own = (await call(mcp, "execute", {"code": "print('mine')"}))["sandbox_id"]
    made = await call(mcp, "sandbox_create", {"timeout": 600})
    extra = made["sandbox_id"]
    assert extra != own and made["status"] == "running" and made["deleted_with_session"] is True
    assert made["preview_url"] == f"http://{{port}}-{extra}.localhost:{hutch.port}/"

    listed = {s["sandbox_id"]: s for s in (await call(mcp, "sandbox_list"))["sandboxes"]}
    assert listed[own]["session_sandbox"] is True
    assert listed[extra]["session_sandbox"] is False and listed[extra]["owned_by_session"] is True

    # Tools work in a named sandbox, and the two do not share files.
    await call(mcp, "file_write", {"path": "where.txt", "content": "extra", "sandbox_id": extra})
    r = await call(mcp, "shell_execute", {"command": "cat where.txt", "sandbox_id": extra})
    assert r["stdout"] == "extra" and r["sandbox_id"] == extra
    text = await call_error(mcp, "file_read", {"path": "where.txt"})
    assert "where.txt" in text

    killed = await call(mcp, "sandbox_kill", {"sandbox_id": extra})
    assert killed == {"sandbox_id": extra, "killed": True}
    assert extra not in hutch.sandbox_ids()
    assert "not found" in await call_error(mcp, "sandbox_kill", {"sandbox_id": extra})
    assert "not found" in await call_error(mcp, "execute", {"code": "1", "sandbox_id": "nosuchsandbox"})

    # Killing the session's own sandbox is allowed: the next call gets a fresh one.
    await call(mcp, "sandbox_kill", {"sandbox_id": own})
    fresh = (await call(mcp, "execute", {"code": "print('again')"}))["sandbox_id"]
    assert fresh != own
