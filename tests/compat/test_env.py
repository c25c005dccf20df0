"""Environment variables (spec §9.2; §14 flow 6). Runs `run_code`-free: the run_code side of
flow 6 is in test_code.py."""

from __future__ import annotations


def test_create_time_env_vars(make_sandbox):
    sb = make_sandbox(env_vars={"A": "1", "GREETING": "hello world"})
    assert sb.env.get("A") == "1"
    assert sb.env.get("GREETING") == "hello world"
    assert sb.commands.run('echo "$A|$GREETING"').stdout == "1|hello world\n"


def test_env_operations(sandbox):
    env = sandbox.env
    assert env.get("NOPE") is None
    assert env.get("NOPE", "dflt") == "dflt"

    after_set = env.set("B", "2")
    assert after_set.get("B") == "2"
    assert env.get("B") == "2"

    after_update = env.update({"C": "3", "D": "4"})
    assert {"B": "2", "C": "3", "D": "4"}.items() <= after_update.items()
    all_vars = env.get_all()
    assert {"B": "2", "C": "3", "D": "4"}.items() <= all_vars.items()

    env.delete("B")
    assert env.get("B") is None
    assert env.get("C") == "3"
    env.delete("B")  # deleting again is a no-op

    replaced = env.set_all({"X": "9"})
    assert replaced.get("X") == "9"
    now = env.get_all()
    assert now.get("X") == "9"
    assert "C" not in now and "D" not in now

    # Commands see the current set (and not the replaced variables).
    assert sandbox.commands.run('echo "X=$X C=${C:-unset}"').stdout == "X=9 C=unset\n"


def test_deleting_the_last_variable(sandbox):
    """`env.delete` of the only variable makes the SDK send `PUT /env {"env_vars": {}}`."""
    sandbox.env.set("ONLY", "1")
    sandbox.env.delete("ONLY")
    assert sandbox.env.get_all() == {}
    sandbox.env.set("EMPTY", "")
    assert sandbox.env.get("EMPTY") == ""
    assert sandbox.commands.run('echo "[${EMPTY-unset}]"').stdout == "[]\n"


def test_values_are_exact_and_not_masked(sandbox):
    tricky = "a b 'c' \"d\" $HOME `x` ü \\n"
    sandbox.env.update({"TRICKY": tricky, "API_KEY": "sk-test-123", "MY_SECRET": "s3cr3t"})
    assert sandbox.env.get("TRICKY") == tricky
    # Not masked (§9.2): env.delete() writes back what it read, so masks would destroy values.
    assert sandbox.env.get("API_KEY") == "sk-test-123"
    sandbox.env.delete("MY_SECRET")
    assert sandbox.env.get("API_KEY") == "sk-test-123"
    assert sandbox.commands.run('printf %s "$TRICKY"').stdout == tricky


def test_per_call_env_overrides_global(sandbox):
    sandbox.env.set("LAYER", "global")
    assert sandbox.commands.run("echo $LAYER").stdout == "global\n"
    assert sandbox.commands.run("echo $LAYER", env={"LAYER": "request"}).stdout == "request\n"
    assert sandbox.env.get("LAYER") == "global"


def test_background_jobs_see_env(sandbox):
    sandbox.env.set("JOBVAR", "job-sees-it")
    sandbox.commands.run("echo $JOBVAR > /workspace/jobvar.txt", background=True)
    from conftest import wait_until

    wait_until(lambda: sandbox.files.exists("/workspace/jobvar.txt")
               and sandbox.files.read("/workspace/jobvar.txt") == "job-sees-it\n",
               timeout=10, what="the background job's file")


async def test_async_env(make_async_sandbox):
    sb = await make_async_sandbox(env_vars={"AA": "11"})
    assert await sb.env.get("AA") == "11"
    await sb.env.set("BB", "22")
    merged = await sb.env.update({"CC": "33"})
    assert {"AA": "11", "BB": "22", "CC": "33"}.items() <= merged.items()
    await sb.env.delete("AA")
    assert await sb.env.get("AA") is None
    await sb.env.set_all({"ONLY": "1"})
    assert (await sb.env.get_all()).get("ONLY") == "1"
    assert "BB" not in await sb.env.get_all()
    r = await sb.commands.run("echo ${ONLY}${BB:-x}", timeout_seconds=30)
    assert r.stdout == "1x\n"
