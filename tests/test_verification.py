"""Verified at the end, whatever the record says: the world wins over the record (verification.py).

Against the sandbox world (OpenAI emulator on a socket, real .env stores, real git), without Prefect:
the runner here is the one the flow follows (every step in order, then ``verify_outcome`` before the
report, then the steps it reopened, then the report)."""

import pytest

from cauterize import incident as records
from cauterize import response
from cauterize.providers.base import CONFIRM_WINDOWS_S
from cauterize.sandbox.world import build_world
from cauterize.secret import Secret
from cauterize.runbook import load_runbook
from cauterize.stores import open_store

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIRM_WINDOWS_S, "openai", 2.0)
    built = build_world(tmp_path)
    for name, value in built.env.items():
        monkeypatch.setenv(name, value)
    yield built
    built.close()


def _steps(directory, only=None):
    for step in response.order_of(directory):
        if step != "report" and (only is None or step in only):
            try:
                response.run_step(step, directory)
            except Exception:
                pass


def _finish(directory):
    """What the flow does after the steps: verify, run what the world contradicts, render."""
    reopened = response.verify_outcome(directory)
    _steps(directory, only=reopened)
    response.run_step("report", directory)
    return reopened, records.load(directory)


def _stores(world):
    loaded = load_runbook(world.runbook)
    return [open_store(config, loaded) for config in loaded.runbook.stores]


def test_a_clean_run_is_verified_and_contained(world):
    directory = response.open_incident(world.runbook, mode="demo")
    _steps(directory)
    reopened, incident = _finish(directory)
    assert reopened == []
    result = incident.verification
    assert result["contained"] is True and result["recovered"] is True
    assert result["old_key"]["state"] == "dead" and result["new_key"]["state"] == "live"
    assert [s["holds_new_key"] for s in result["stores"]] == [True, True]
    assert incident.exit_code() == 0
    text = (directory / "postmortem.md").read_text()
    assert "**Contained.**" in text and "Verified at" in text


def test_a_store_that_lost_the_new_key_is_redeployed_again(world):
    """Between two runs someone put the old key back into the second store: the record says
    redeploy ok, the world says otherwise; redeploy runs again and the report is contained."""
    directory = response.open_incident(world.runbook, mode="demo")
    _steps(directory)
    leaked = Secret(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    worker = _stores(world)[1]
    worker.write(leaked)
    reopened, incident = _finish(directory)
    assert reopened == ["redeploy"]
    assert incident.steps["redeploy"].status == "ok" and incident.steps["redeploy"].details.get("reopened")
    assert worker.read().fingerprint == incident.new_key.fingerprint
    assert incident.verification["recovered"] is True and incident.exit_code() == 0
    assert any("no longer hold" in e.message for e in incident.events)


def test_a_revived_old_key_is_revoked_again(world):
    """The record says revoked; the provider says live (a key restored by hand, a revocation that did
    not stick): revoke runs again instead of the report saying contained."""
    directory = response.open_incident(world.runbook, mode="demo")
    _steps(directory)
    leaked = world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]
    key = next(k for k in world.emulator.keys.values() if k.value == leaked)
    key.deleted = False
    assert world.emulator.is_live(leaked)
    reopened, incident = _finish(directory)
    assert reopened == ["revoke"]
    assert not world.emulator.is_live(leaked)
    assert incident.steps["revoke"].status == "ok" and incident.verification["contained"] is True
    assert incident.exit_code() == 0


def test_a_dead_replacement_is_minted_again_and_redeployed(world):
    """The new key was revoked after the run (by a person, a scanner): the record forgets it, rotate
    mints another, redeploy writes it everywhere."""
    directory = response.open_incident(world.runbook, mode="demo")
    _steps(directory)
    first = records.load(directory).new_key.fingerprint
    new_value = _stores(world)[0].read().reveal()
    minted = next(k for k in world.emulator.keys.values() if k.value == new_value)
    minted.deleted = True
    reopened, incident = _finish(directory)
    assert reopened == ["rotate", "redeploy"]
    assert incident.new_key.fingerprint != first
    assert all(store.read().fingerprint == incident.new_key.fingerprint for store in _stores(world))
    assert world.emulator.is_live(_stores(world)[0].read().reveal())
    assert incident.verification["recovered"] is True and incident.exit_code() == 0


def test_an_unanswerable_provider_is_not_called_contained(world):
    """The provider cannot be asked at the end: nothing to redo, but no 'Contained' and exit 3."""
    directory = response.open_incident(world.runbook, mode="demo")
    _steps(directory)
    world.emulator.fail_next("GET", "/models", 503, count=50)
    reopened, incident = _finish(directory)
    assert reopened == []
    assert incident.verification["contained"] is False and incident.verification["old_key"]["state"] == "unknown"
    assert incident.exit_code() == 3
    assert "**Contained.**" not in (directory / "postmortem.md").read_text()


def test_the_report_step_verifies_when_no_orchestrator_did(world):
    """A runner that only calls the steps still gets a verified record: the report step verifies
    when no verification followed the last step."""
    directory = response.open_incident(world.runbook, mode="demo")
    _steps(directory)
    response.run_step("report", directory)
    incident = records.load(directory)
    assert incident.verification and incident.verification["contained"] is True and incident.exit_code() == 0


def test_a_resumed_cli_run_verifies_and_redoes_what_the_world_undid(tmp_path):
    """Through the CLI and Prefect, as a user does: the responder dies after redeploy; before the
    rerun the old key is put back into a store. The rerun's record said redeploy ok, the world
    said otherwise: redeploy runs again, exit 0, every store holds the live replacement."""
    import json
    import signal

    from test_resume import _respond

    world = build_world(tmp_path / "w")
    try:
        killed = _respond(world, tmp_path, fault="kill-after:redeploy")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        leaked = Secret(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
        _stores(world)[1].write(leaked)
        resumed = _respond(world, tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        record = json.loads(resumed.stdout)
        assert record["verification"]["recovered"] is True and record["verification"]["contained"] is True
        assert record["steps"]["redeploy"]["details"].get("reopened") is True
        new = [store.read() for store in _stores(world)]
        assert new[0] == new[1] and new[0].fingerprint == record["new_key"]["fingerprint"]
        assert world.emulator.is_live(new[0].reveal()) and not world.emulator.is_live(leaked.reveal())
    finally:
        world.close()
