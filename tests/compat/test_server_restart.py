"""The server restarts under a live SDK session (DESIGN: "the server can restart without losing
a sandbox, a file written in one"). SDK objects keep their agent URL and token across it."""

from __future__ import annotations

from hopx_ai import Sandbox


def test_sdk_objects_survive_a_server_restart(hutch, make_sandbox, base_url, api_key):
    sb = make_sandbox(timeout_seconds=600)
    paused = make_sandbox()
    sb.files.write("/workspace/keep.txt", "still here")
    sb.env.set("KEPT", "yes")
    job = sb.run_code_background("import time\ntime.sleep(120)", name="survivor")
    paused.pause()
    expires_before = sb.get_info().expires_at

    hutch.restart_server()

    # Same Sandbox object: cached agent client and token.
    assert sb.files.read("/workspace/keep.txt") == "still here"
    assert sb.commands.run("echo $KEPT").stdout == "yes\n"
    procs = {p["process_id"]: p for p in sb.list_processes()}
    assert procs[job["process_id"]]["status"] == "running"
    info = sb.get_info()
    assert info.status == "running" and info.expires_at == expires_before
    assert paused.get_info().status == "paused"
    paused.resume()
    assert paused.commands.run("echo resumed").stdout == "resumed\n"
    # New objects and new sandboxes work too.
    assert sb.sandbox_id in [s.sandbox_id for s in Sandbox.list(base_url=base_url, api_key=api_key)]
    fresh = make_sandbox()
    assert fresh.commands.run("echo fresh").stdout == "fresh\n"
