"""Background code jobs (spec §8.3–8.5, §7; §14 flow 9). `run_code_background` goes to
`/execute/background`, which exists independently of `/execute`."""

from __future__ import annotations

import time

from conftest import async_wait_until, wait_until


def _job(sb, pid):
    return {p.get("process_id"): p for p in sb.list_processes()}.get(pid)


def test_run_code_background_list_kill(sandbox):
    started = time.monotonic()
    r = sandbox.run_code_background(
        "import time\nprint('started', flush=True)\ntime.sleep(60)\n", name="job", timeout=120
    )
    assert time.monotonic() - started < 5
    pid = r["process_id"]
    assert pid and r["status"] == "running"
    assert r.get("execution_id")

    job = _job(sandbox, pid)
    assert job is not None, sandbox.list_processes()
    assert job["status"] == "running"
    assert job["name"] == "job"
    assert job["language"] in ("python", "python3")
    assert job.get("exit_code") is None

    killed = sandbox.kill_process(pid)
    assert isinstance(killed, dict)
    assert wait_until(lambda: (_job(sandbox, pid) or {}).get("status") != "running" and _job(sandbox, pid)["status"],
                      timeout=10, what="the job to be killed") == "killed"


def test_run_code_background_completes(sandbox):
    r = sandbox.run_code_background("print('bg done')", name="quick")
    pid = r["process_id"]
    job = wait_until(lambda: (j := _job(sandbox, pid)) and j["status"] == "completed" and j,
                     timeout=15, what="the quick job to complete")
    assert job["exit_code"] == 0
    # Failing code → failed with its exit code.
    r = sandbox.run_code_background("raise SystemExit(7)", name="bad")
    job = wait_until(lambda: (j := _job(sandbox, r["process_id"])) and j["status"] != "running" and j,
                     timeout=15, what="the failing job to end")
    assert job["status"] == "failed" and job["exit_code"] == 7


def test_run_code_background_env_and_languages(sandbox):
    sandbox.run_code_background("import os\nopen('/workspace/py.txt','w').write(os.environ['JOB_ENV'])",
                                env={"JOB_ENV": "py-env"})
    sandbox.run_code_background("echo -n sh-$JOB_ENV > /workspace/sh.txt", language="bash", env={"JOB_ENV": "e"})
    sandbox.run_code_background("require('fs').writeFileSync('/workspace/js.txt', 'js-' + process.env.JOB_ENV)",
                                language="javascript", env={"JOB_ENV": "e2"})
    for path, want in [("/workspace/py.txt", "py-env"), ("/workspace/sh.txt", "sh-e"), ("/workspace/js.txt", "js-e2")]:
        wait_until(lambda: sandbox.files.exists(path) and sandbox.files.read(path) == want,
                   timeout=15, what=f"{path} == {want!r}")


def test_kill_unknown_process(sandbox):
    from hopx_ai.errors import AgentError

    started = time.monotonic()
    try:
        sandbox.kill_process("no-such-process")
    except AgentError as e:
        assert e.code == "PROCESS_NOT_FOUND"
    else:
        raise AssertionError("killing an unknown process id succeeded")
    assert time.monotonic() - started < 2.5  # 404, not a retried 5xx


async def test_async_background_list_kill(async_sandbox):
    r = await async_sandbox.run_code_background("import time\ntime.sleep(60)", name="ajob")
    pid = r["process_id"]

    async def find():
        return {p.get("process_id"): p for p in await async_sandbox.list_processes()}.get(pid)

    job = await async_wait_until(find, timeout=10, what="the job in GET /processes")
    assert job["status"] == "running"
    await async_sandbox.kill_process(pid)

    async def ended():
        j = await find()
        return j is None or j.get("status") != "running"

    await async_wait_until(ended, timeout=10, what="the async-killed job to end")
