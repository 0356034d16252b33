"""People in the loop: a paused Anthropic rotation against a real Prefect server.

Anthropic has no API that mints keys, so the key-compromised flow pauses with a pause form for the
replacement. The first run's form expires: the rotate step stays waiting (exit 3). The rerun pauses
again; this test process, playing the person, creates the key in the emulator and resumes the run
with it through the Prefect client. The run completes, the key is in the store, and no table of
Prefect's database holds it afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from test_deployments import _stop_group, _wait_for, prefect_client, shared_server

from cauterize.sandbox.anthropic import AnthropicEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import fingerprint_of
from cauterize.stores.dotenv import DotenvStore

RUN = textwrap.dedent("""
    import json, sys
    from cauterize.flows.runner import configure_prefect
    configure_prefect()
    from cauterize.flows.key_compromised import key_compromised
    from cauterize.tasks.states import result_of
    state = key_compromised(runbook=sys.argv[1], pause_timeout_s=int(sys.argv[2]), return_state=True)
    print(json.dumps({**result_of(state), "state": state.type.value, "message": state.message}))
""")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, request):
    return shared_server(tmp_path_factory, request)


@pytest.fixture
def anthropic(tmp_path):
    emulator = AnthropicEmulator()
    admin = emulator.add_admin_key()
    workspace = emulator.add_workspace("assistant")
    _, leaked = emulator.add_key(name="assistant prod", workspace_id=workspace)
    with serve(emulator) as app:
        (tmp_path / "app").mkdir()
        runbook = tmp_path / "runbook.yaml"
        runbook.write_text(textwrap.dedent(f"""
            version: 1
            name: anthropic-pause
            key: {{provider: anthropic, source: env:LEAKED_ANTHROPIC_KEY}}
            providers:
              anthropic: {{admin_key: env:ANTHROPIC_ADMIN_KEY, base_url: "{app.url}", mint: manual}}
            stores:
              - {{type: dotenv, path: app/.env, variable: ANTHROPIC_API_KEY}}
            report: {{dir: incidents}}
        """))
        yield emulator, runbook, {"ANTHROPIC_ADMIN_KEY": admin, "LEAKED_ANTHROPIC_KEY": leaked}, workspace


def _flow(server, runbook, env, timeout_s, tmp_path):
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(runbook), str(timeout_s)],
        env=server.env(PREFECT_HOME=str(tmp_path / "client-home"), **env), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
    )


def _paused_runs(server) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with prefect_client(server) as client:
        paused = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(state=paused))


@pytest.mark.slow
def test_a_paused_anthropic_rotation_resumes_with_a_key_from_another_process(prefect_server, anthropic, tmp_path):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    emulator, runbook, env, workspace = anthropic

    # 1. Nobody answers: the form expires, rotate stays waiting, the rest of the response is done.
    first = _flow(prefect_server, runbook, env, 3, tmp_path)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["exit_code"] == 3
    assert result["state"] == "FAILED" and "rotate waiting" in result["message"], "Prefect says it is incomplete"
    assert result["steps"]["revoke"] == "ok" and result["steps"]["rotate"] == "waiting"
    assert result["steps"]["redeploy"] == "blocked" and result["steps"]["report"] == "ok"
    incident = result["incident"]
    record = json.loads((tmp_path / incident / "incident.json").read_text())
    assert any("nobody answered the pause form" in e["message"] for e in record["events"])
    assert not emulator.is_live(env["LEAKED_ANTHROPIC_KEY"]), "containment did not wait for a person"

    # 2. The rerun resumes the same incident and pauses again; a person creates the key and resumes.
    second = _flow(prefect_server, runbook, env, 120, tmp_path)
    try:
        [run] = _wait_for(lambda: _paused_runs(prefect_server), 90, "the paused flow run", second)
        _, new_key = emulator.add_key(name="cauterize replacement", workspace_id=workspace)
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
            # pasted the way a tired person copies it from a .env: the one parser reads the bare key
            resume_flow_run(run.id, run_input={"key": f'ANTHROPIC_API_KEY="{new_key}"\r\n'})
        out, err = second.communicate(timeout=120)
    finally:
        _stop_group(second)
    assert second.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["incident"] == incident, "the rerun resumed the waiting incident"
    assert result["exit_code"] == 0 and result["state"] == "COMPLETED", result
    assert DotenvStore(tmp_path / "app/.env", "ANTHROPIC_API_KEY").read().fingerprint == fingerprint_of(new_key)
    record = json.loads((tmp_path / incident / "incident.json").read_text())
    assert record["new_key"]["fingerprint"] == fingerprint_of(new_key)
    assert record["steps"]["rotate"]["details"].get("manual") is True
    assert not [a for a in record["action_items"] if "interrupted while minting" in a["text"]], "no orphan to look for"

    # 3. The answer was deleted: no flow-run input, and no row of any table, holds the key.
    with prefect_client(prefect_server) as client:
        state = client.read_flow_run(run.id).state
        inputs = client.filter_flow_run_input(flow_run_id=run.id, key_prefix="paused", limit=100, exclude_keys=set())
    assert state.is_completed(), state
    assert inputs and all(new_key not in item.value for item in inputs)
    assert not [item.key for item in inputs if item.key.endswith("-response")]
    dump = "\n".join(sqlite3.connect(prefect_server.database).iterdump())
    assert new_key not in dump and env["LEAKED_ANTHROPIC_KEY"] not in dump


@pytest.mark.slow
def test_a_push_the_runbook_does_not_pre_approve_waits_for_an_approval(prefect_server, tmp_path):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cauterize.sandbox.world import build_world

    world = build_world(tmp_path / "world")
    try:
        world.runbook.write_text(world.runbook.read_text().replace("purge: push", "purge: ask"))
        flow = _flow(prefect_server, world.runbook, world.env, 120, tmp_path)
        try:
            [run] = _wait_for(lambda: _paused_runs(prefect_server), 120, "the paused flow run", flow)
            with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
                resume_flow_run(run.id, run_input={"decision": "approve", "reason": "reviewed the rewrite plan"})
            out, err = flow.communicate(timeout=120)
        finally:
            _stop_group(flow)
        assert flow.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["steps"]["purge"] == "ok" and result["exit_code"] == 0, result
        record = json.loads((tmp_path / result["incident"] / "incident.json").read_text())
        assert record["purge"][0]["pushed"] and record["purge"][0]["verified"]
        assert any("approved by a person: reviewed the rewrite plan" in e["message"] for e in record["events"])
    finally:
        world.close()


def test_no_pause_without_a_server_people_can_reach():
    """A one-off `cauterize respond` runs on Prefect's ephemeral server: no form could be opened, so
    the flow does not pause (the step waits, exit 3) instead of blocking for an hour."""
    from cauterize.flows.key_compromised_pause import people_can_answer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: None}):
        assert people_can_answer() is False
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert people_can_answer() is True
