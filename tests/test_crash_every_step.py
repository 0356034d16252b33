"""Kill the responder (SIGKILL) after each step in turn, rerun, and check it converges to the same
end state: old key dead, exactly one live new key held by every store, history purged, report
complete, no step done twice that must not be (one replacement minted, one revocation)."""

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


@pytest.mark.parametrize("point", ["mint", *[s for s in STEPS if s != "report"]])
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
