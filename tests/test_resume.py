"""Crash and resume: the responder killed with SIGKILL at the worst moments, then rerun."""

import json
import os
import signal
import subprocess
import sys

import pytest

from cauterize.sandbox.world import build_world
from cauterize.secret import Secret
from cauterize.stores.dotenv import DotenvStore

pytestmark = pytest.mark.slow


def _respond(world, tmp_path, fault=None):
    env = {**os.environ, **world.env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    env.pop("CAUTERIZE_FAULT", None)
    if fault:
        env["CAUTERIZE_FAULT"] = fault
    # A session of its own: a SIGKILL leaves Prefect's server child holding the pipes, so the test
    # ends the whole group once the responder itself has exited.
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "respond", str(world.runbook), "--yes", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        start_new_session=True,
    )
    reader = {}

    def read():  # read while it runs: a large --json record would otherwise fill the pipe
        reader["out"] = proc.stdout.read()

    import threading

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        proc.wait(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    thread.join(timeout=30)
    stderr = proc.stderr.read()
    stdout = reader.get("out", "")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _minted(world):
    """Service accounts cauterize created, and the live keys among them."""
    accounts = [a for a in world.emulator.service_accounts.values() if a.name.startswith("cauterize-")]
    live = [k for k in world.emulator.keys.values()
            if k.owner_type == "service_account" and world.emulator.is_live(k.value)]
    return accounts, live


@pytest.mark.parametrize("point", ["mint", "rotate"])
def test_killed_after_the_mint_ends_with_exactly_one_live_minted_key(tmp_path, point):
    world = build_world(tmp_path / "w")
    try:
        killed = _respond(world, tmp_path, fault=f"kill-after:{point}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        resumed = _respond(world, tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        record = json.loads(resumed.stdout)
        _, live = _minted(world)
        assert len(live) == 1, f"{len(live)} live minted keys"
        stored = DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read()
        assert stored == Secret(live[0].value) == DotenvStore(world.root / "worker/.env", "OPENAI_API_KEY").read()
        assert record["new_key"]["fingerprint"] == stored.fingerprint
        assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
        if point == "mint":
            assert any("interrupted run minted" in e["message"] for e in record["events"])
    finally:
        world.close()
