"""Kill the responder (SIGKILL) after each step in turn and inside rotate and redeploy, rerun, and
check it converges to the same end state: old key dead, exactly one live new key held by every
store, history purged, report complete, no step done twice that must not be (one replacement
minted, one revocation). Then the same for SIGINT and SIGTERM, through the CLI: at every point in
turn on one incident, each run stopping within seconds with the step it was in ``interrupted`` and
the next one not started, each rerun resuming where the last one stopped."""

import os
import signal
import subprocess
import sys

import pytest

from cauterize import incident as records
from cauterize.incident import STEPS
from cauterize.sandbox.world import build_world
from cauterize.secret import Secret
from cauterize.stores.dotenv import DotenvStore

pytestmark = pytest.mark.slow

DRIVER = """
import sys
from cauterize import response
directory = response.open_incident(sys.argv[1])
for step in response.order_of(directory):
    try:
        response.run_step(step, directory)
    except Exception:
        pass
print(directory)
"""


def _respond(world, fault=None):
    env = {**os.environ, **world.env}
    env.pop("CAUTERIZE_FAULT", None)
    if fault:
        env["CAUTERIZE_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", DRIVER, str(world.runbook)], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("point", ["mint", "primary-store", "first-store", *[s for s in STEPS if s != "report"]])
def test_converges_after_a_kill(tmp_path, point):
    world = build_world(tmp_path / "w")
    try:
        killed = _respond(world, f"kill-after:{point}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
        done = _respond(world)
        assert done.returncode == 0, done.stderr[-1500:]
        incident = records.load(done.stdout.strip().splitlines()[-1])
        assert incident.complete, {n: s.status for n, s in incident.steps.items()}
        emulator = world.emulator
        assert not emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
        live = [k for k in emulator.keys.values() if k.owner_type == "service_account" and emulator.is_live(k.value)]
        assert len(live) == 1
        for store in ("deploy/.env", "worker/.env"):
            assert DotenvStore(world.root / store, "OPENAI_API_KEY").read() == Secret(live[0].value)
        minted = [c for c in emulator.calls("POST") if c.path.endswith("/service_accounts")]
        expected = 2 if point == "mint" else 1  # killed right after the mint: that one is revoked, one more made
        assert len(minted) == expected
        assert len(emulator.calls("DELETE", "*/api_keys/*")) == 1, "the leaked key was revoked once"
        assert incident.purge and incident.purge[0]["verified"]
        assert (records.Path(done.stdout.strip().splitlines()[-1]) / "postmortem.md").exists()
    finally:
        world.close()


#: (signal, point) in the order a response passes them; the points inside a step and the step they are in
SIGNAL_POINTS = [("sigint", "intake"), ("sigterm", "revoke"), ("sigint", "mint"), ("sigint", "primary-store"),
                 ("sigint", "rotate"), ("sigterm", "first-store"), ("sigint", "redeploy"), ("sigint", "locate"),
                 ("sigterm", "purge"), ("sigint", "evidence")]
INSIDE = {"mint": "rotate", "primary-store": "rotate", "first-store": "redeploy"}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, request):
    from test_deployments import shared_server

    return shared_server(tmp_path_factory, request)


def _cli(world, server, tmp_path, fault=None):
    """`cauterize respond` against a running Prefect server (the chain below runs it eleven times: an
    ephemeral server each time would cost minutes; tests/test_interrupts.py covers that one)."""
    from test_interrupts import CAUTERIZE, Run

    env = {**server.env(PREFECT_HOME=str(tmp_path / "prefect")), **world.env}
    env.pop("CAUTERIZE_FAULT", None)
    if fault:
        env["CAUTERIZE_FAULT"] = fault
    run = Run([*CAUTERIZE, "respond", str(world.runbook), "--yes", "--json"], env, world)
    run.finish()
    return run


def test_converges_after_a_signal_at_every_point(tmp_path, prefect_server):
    world = build_world(tmp_path / "w")
    try:
        for signame, point in SIGNAL_POINTS:
            run = _cli(world, prefect_server, tmp_path, f"{signame}-after:{point}")
            assert run.proc.returncode == 130, (point, run.stderr[-3000:])
            last = run.stderr.splitlines()[-1]
            assert last.startswith(f"cauterize: interrupted by {signame.upper()}") and "to resume" in last, last
            assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr, run.stderr[-3000:]
            assert run.leftovers == [], (point, run.leftovers)
            [directory] = [p.parent for p in (world.root / "incidents").glob("*/incident.json")]
            statuses = {name: step.status for name, step in records.load(directory).steps.items()}
            if point in INSIDE:
                assert statuses[INSIDE[point]] == "interrupted" and f"during {INSIDE[point]}" in last, (point, statuses)
            else:  # at a step boundary: that step is done and no new step started
                following = STEPS[STEPS.index(point) + 1]
                assert statuses[point] == "ok" and statuses[following] == "pending", (point, statuses)
        done = _cli(world, prefect_server, tmp_path)
        assert done.proc.returncode == 0, done.stderr[-3000:]
        incident = records.load(directory)
        assert incident.complete and incident.exit_code() == 0, {n: s.status for n, s in incident.steps.items()}
        assert len(list((world.root / "incidents").glob("*/incident.json"))) == 1, "one key, one incident"
        emulator = world.emulator
        assert not emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
        live = [k for k in emulator.keys.values() if k.owner_type == "service_account" and emulator.is_live(k.value)]
        assert len(live) == 1, f"{len(live)} live minted keys"
        assert incident.new_key.fingerprint == Secret(live[0].value).fingerprint
        for store in ("deploy/.env", "worker/.env"):
            assert DotenvStore(world.root / store, "OPENAI_API_KEY").read() == Secret(live[0].value)
        minted = [c for c in emulator.calls("POST") if c.path.endswith("/service_accounts")]
        assert len(minted) == 2, "stopped right after the mint: that one is revoked, one more made; no other"
        assert len(emulator.calls("DELETE", "*/api_keys/*")) == 1, "the leaked key was revoked once"
        assert incident.purge and incident.purge[0]["verified"]
    finally:
        world.close()
