"""Honest Prefect states (issue 17, item 5), read back from a real Prefect server.

`cauterize respond` against a server prints the flow run's URL on stderr. An incomplete response
ends its flow run Failed, with a message naming the steps not done, while the CLI still prints the
record and exits 3; each step's task run has its step's state (failed: Failed; blocked: Cancelled,
named Blocked; skipped: Completed, named Skipped). A complete response, a dry run included, ends
Completed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from uuid import UUID

import pytest

from cauterize.sandbox.world import build_world

pytestmark = pytest.mark.slow

URL = re.compile(r"flow run key-compromised-respond: (http://\S+/runs/flow-run/([0-9a-f-]{36}))")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, request):
    from test_deployments import shared_server

    return shared_server(tmp_path_factory, request)


@pytest.fixture
def world(tmp_path):
    world = build_world(tmp_path / "w")
    yield world
    world.close()


def _respond(world, server, tmp_path, *flags: str) -> tuple[subprocess.CompletedProcess, UUID]:
    env = {**server.env(PREFECT_HOME=str(tmp_path / "prefect")), **world.env}
    done = subprocess.run(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "respond", str(world.runbook), "--yes",
         "--json", *flags],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL,
    )
    found = URL.search(done.stderr)
    assert found, done.stderr[-3000:]
    assert found.group(1).startswith(server.api_url.removesuffix("/api")), "the UI of the server in use"
    return done, UUID(found.group(2))


def _states(server, flow_run_id: UUID):
    """The flow run's state and the last task run state of each step."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from test_deployments import prefect_client

    with prefect_client(server) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    steps = {}
    for run in sorted(task_runs, key=lambda r: r.start_time or r.expected_start_time):
        steps[run.name] = run.state
    return flow_run.state, steps


def test_an_incomplete_response_fails_its_flow_run_and_each_task_run_has_its_steps_state(
        world, prefect_server, tmp_path):
    world.emulator.fail_next("POST", "*/service_accounts", status=400, count=10, message="Invalid project.")
    done, run_id = _respond(world, prefect_server, tmp_path)
    assert done.returncode == 3, done.stderr[-3000:]
    record = json.loads(done.stdout)  # the record, read from disk, whatever the flow run's state
    assert record["steps"]["rotate"]["status"] == "failed" and record["steps"]["redeploy"]["status"] == "blocked"
    assert "Traceback" not in done.stderr

    flow_state, steps = _states(prefect_server, run_id)
    assert flow_state.is_failed(), flow_state
    assert "rotate failed" in flow_state.message and "redeploy blocked" in flow_state.message, flow_state.message
    assert steps["rotate"].is_failed(), steps["rotate"]
    assert steps["redeploy"].is_cancelled() and steps["redeploy"].name == "Blocked", steps["redeploy"]
    assert "rotate" in steps["redeploy"].message
    for name in ("intake", "revoke", "locate", "purge", "evidence", "report"):
        assert steps[name].is_completed() and steps[name].name == "Completed", (name, steps[name])


def test_a_dry_run_completes_with_its_skipped_steps_completed_as_skipped(world, prefect_server, tmp_path):
    done, run_id = _respond(world, prefect_server, tmp_path, "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    flow_state, steps = _states(prefect_server, run_id)
    assert flow_state.is_completed(), flow_state
    for name in ("revoke", "rotate", "redeploy", "purge"):
        assert steps[name].is_completed() and steps[name].name == "Skipped", (name, steps[name])
        assert steps[name].message, "the reason it was not needed"
    assert steps["intake"].name == "Completed" and steps["locate"].name == "Completed"
