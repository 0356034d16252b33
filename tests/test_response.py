"""The response steps without Prefect, against the sandbox world (emulator on a socket, real git)."""

import pytest

from cauterize import incident as records
from cauterize import response
from cauterize.providers.base import CONFIRM_WINDOWS_S
from cauterize.errors import AdminAuthError, StoreError
from cauterize.sandbox.world import build_world
from cauterize.secret import Secret
from cauterize.stores.dotenv import DotenvStore

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIRM_WINDOWS_S, "openai", 1.0)  # a failed confirmation gives up after 1 s
    built = build_world(tmp_path)
    for name, value in built.env.items():
        monkeypatch.setenv(name, value)
    yield built
    built.close()


def _run_all(directory):
    for step in response.order_of(directory):
        try:
            response.run_step(step, directory)
        except Exception:
            pass
    return records.load(directory)


def test_every_step_ok_and_the_world_is_healed(world):
    directory = response.open_incident(world.runbook, mode="demo")
    incident = _run_all(directory)
    assert {name: s.status for name, s in incident.steps.items()} == {name: "ok" for name in records.STEPS}
    leaked = Secret(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert not world.emulator.is_live(leaked.reveal())
    new = DotenvStore(world.root / "worker/.env", "OPENAI_API_KEY").read()
    assert new.fingerprint == incident.new_key.fingerprint != leaked.fingerprint
    assert world.emulator.is_live(new.reveal())
    assert incident.exposure_start is not None and abs((incident.exposure_start - world.leaked_at).total_seconds()) < 1
    assert incident.findings and all(f["source"] == "git" for f in incident.findings)
    assert incident.purge[0]["pushed"] and incident.purge[0]["verified"]
    assert incident.evidence["anomalous_buckets"] > 0
    assert incident.exit_code() == 0
    assert (directory / "postmortem.md").read_text().count(leaked.fingerprint) >= 1


def test_the_replacement_carries_the_leaked_keys_scopes(world):
    """The world's leaked key was restricted in the console: scopes read at intake (before the
    revocation) are given to the replacement, and the post-mortem says so."""
    directory = response.open_incident(world.runbook)
    incident = _run_all(directory)
    wanted = ["api.model.request", "api.responses.write"]
    assert incident.old_key.scopes["scopes"] == wanted and incident.old_key.scopes["source"].startswith("audit log")
    new = DotenvStore(world.root / "worker/.env", "OPENAI_API_KEY").read()
    minted = next(k for k in world.emulator.keys.values() if k.value == new.reveal())
    assert minted.scopes == wanted and minted.owner_type == "service_account"
    assert incident.new_key.scopes == wanted
    assert world.emulator.service_accounts[minted.owner_id].role == "member"
    report = (directory / "postmortem.md").read_text()
    assert "carries the revoked key's scopes: api.model.request, api.responses.write" in report
    assert "`api.model.request`, `api.responses.write`" in report  # the impact's permissions row


def test_rerun_resumes_without_doing_steps_twice(world):
    directory = response.open_incident(world.runbook)
    for step in ("intake", "revoke", "rotate"):
        response.run_step(step, directory)
    minted = records.load(directory).new_key.fingerprint
    assert response.open_incident(world.runbook) == directory, "the unfinished incident is resumed"
    incident = _run_all(directory)
    assert incident.complete and incident.new_key.fingerprint == minted
    created = [c for c in world.emulator.calls("POST", "*/service_accounts") if c.method == "POST"]
    assert len(created) == 1, "the replacement was minted once"


def test_a_wrong_admin_key_fails_intake_and_blocks_dependents(world, monkeypatch, make_key):
    monkeypatch.setenv("OPENAI_ADMIN_KEY", make_key("sk-admin-"))
    directory = response.open_incident(world.runbook)
    with pytest.raises(AdminAuthError):
        response.run_step("intake", directory)
    incident = _run_all(directory)
    assert incident.steps["intake"].status == "failed" and "admin" in incident.steps["intake"].error.lower()
    for step in ("revoke", "rotate", "locate", "evidence"):
        assert incident.steps[step].status == "blocked" and incident.steps[step].details["blocked_by"] == ["intake"]
    assert incident.steps["report"].status == "ok"
    assert incident.exit_code() == 3
    assert world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]), "nothing was done at the provider"


def test_redeploy_failure_rolls_back_the_stores_it_wrote(world):
    text = world.runbook.read_text().replace(
        "  - {type: dotenv, path: worker/.env, variable: OPENAI_API_KEY}\n",
        "  - {type: dotenv, path: worker/.env, variable: OPENAI_API_KEY}\n"
        "  - {type: dotenv, path: blocked/.env, variable: OPENAI_API_KEY}\n",
    )
    world.runbook.write_text(text)
    (world.root / "blocked").write_text("a file where a directory should be\n")
    worker = world.root / "worker/.env"
    before = worker.read_bytes()
    directory = response.open_incident(world.runbook)
    for step in ("intake", "revoke", "rotate"):
        response.run_step(step, directory)
    with pytest.raises(StoreError):
        response.run_step("redeploy", directory)
    incident = records.load(directory)
    assert incident.steps["redeploy"].status == "failed"
    assert "blocked/.env" in incident.steps["redeploy"].error
    assert worker.read_bytes() == before, "the store written before the failure was rolled back"
    assert any("rolled back 1 store" in event.message for event in incident.events)
    assert incident.exit_code() == 3


def test_dry_run_changes_nothing(world):
    directory = response.open_incident(world.runbook, dry_run=True)
    incident = _run_all(directory)
    assert world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert incident.steps["revoke"].status == "skipped" and incident.steps["revoke"].summary.startswith("dry run")
    assert incident.new_key is None
    assert incident.purge and not incident.purge[0]["pushed"]
    assert "OPENAI_API_KEY" in (world.root / "deploy/.env").read_text()
    assert Secret(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]) == DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read()


def _manual_runbook(world):
    world.runbook.write_text(world.runbook.read_text().replace("mint: service-account", "mint: manual"))


def test_manual_mint_waits_for_a_person_when_nobody_can_answer(world):
    _manual_runbook(world)
    response.set_manual_input(None)
    directory = response.open_incident(world.runbook)
    incident = _run_all(directory)
    assert incident.steps["rotate"].status == "waiting"
    assert incident.steps["redeploy"].status == "blocked"
    assert any(item.step == "rotate" for item in incident.action_items)
    assert incident.exit_code() == 3


def test_manual_mint_takes_a_pasted_key_after_checking_it(world):
    _manual_runbook(world)
    project = next(iter(world.emulator.projects))
    _, created_by_hand = world.emulator.add_user_key(project, name="made in the console")
    asked = []
    response.set_manual_input(lambda text: asked.append(text) or Secret(created_by_hand))
    try:
        directory = response.open_incident(world.runbook)
        incident = _run_all(directory)
    finally:
        response.set_manual_input(None)
    assert asked and incident.steps["rotate"].status == "ok" and incident.steps["rotate"].details["manual"]
    assert incident.new_key.fingerprint == Secret(created_by_hand).fingerprint
    assert DotenvStore(world.root / "worker/.env", "OPENAI_API_KEY").read() == Secret(created_by_hand)


def test_pasting_the_leaked_key_back_is_refused(world):
    _manual_runbook(world)
    response.set_manual_input(lambda text: Secret(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"]))
    try:
        directory = response.open_incident(world.runbook)
        incident = _run_all(directory)
    finally:
        response.set_manual_input(None)
    assert incident.steps["rotate"].status == "failed" and "leaked key itself" in incident.steps["rotate"].error


def test_without_the_scoped_key_endpoint_the_replacement_is_unrestricted_and_said_so(world):
    """A server (or proxy) that refuses POST .../service_accounts/{id}/api_keys: the service still
    gets a working key; the record, an action item and the post-mortem say it is unrestricted."""
    world.emulator.fail_next("POST", "/v1/organization/projects/*/service_accounts/*/api_keys", status=404, count=5)
    directory = response.open_incident(world.runbook)
    incident = _run_all(directory)
    assert incident.steps["rotate"].status == "ok" and incident.complete
    new = DotenvStore(world.root / "worker/.env", "OPENAI_API_KEY").read()
    minted = next(k for k in world.emulator.keys.values() if k.value == new.reveal())
    assert minted.scopes == [] and incident.new_key.scopes == []
    accounts = [sa for sa in world.emulator.service_accounts.values() if sa.name.startswith("cauterize-")]
    assert len(accounts) == 2 and [sa.id for sa in accounts if not sa.deleted] == [minted.owner_id], \
        "the keyless account of the refused attempt is gone"
    assert any("could not be given the revoked key's scopes" in a.text for a in incident.action_items)
    assert "could not be given the revoked key's scopes" in (directory / "postmortem.md").read_text()


def test_a_provider_outage_at_revoke_fails_that_step_only_and_the_record_says_so(world):
    """Every DELETE of the leaked key answers 503: revoke fails after bounded retries with a
    remediation; the steps that do not need it still run; exit 3; nothing claims the key is dead."""
    world.emulator.fail_next("DELETE", "/v1/organization/projects/*/api_keys/*", status=503, count=50)
    directory = response.open_incident(world.runbook)
    incident = _run_all(directory)
    revoke = incident.steps["revoke"]
    assert revoke.status == "failed" and "503" in revoke.error and revoke.remediation
    assert 1 < len(world.emulator.calls("DELETE", "/v1/organization/projects/*/api_keys/*")) <= 6, "bounded retries"
    assert {name: incident.steps[name].status for name in ("intake", "rotate", "redeploy", "locate", "evidence",
                                                            "report")} == dict.fromkeys(
        ("intake", "rotate", "redeploy", "locate", "evidence", "report"), "ok")
    assert incident.exit_code() == 3 and not incident.complete and incident.revoked_at is None
    assert world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    report = (directory / "postmortem.md").read_text()
    assert "revoke (failed)" in report or "| revoke | failed |" in report


def test_rotate_first_never_revokes_before_the_replacement_is_everywhere(world):
    """Under rotate-first a failed mint leaves the old key live and says so: revoking it would take
    the service down, which is what the policy promises not to do."""
    world.runbook.write_text(world.runbook.read_text().replace("order: revoke-first", "order: rotate-first"))
    assert "rotate-first" in world.runbook.read_text()
    world.emulator.fail_next("POST", "/v1/organization/projects/*/service_accounts*", status=400, count=50)
    directory = response.open_incident(world.runbook)
    incident = _run_all(directory)
    assert incident.steps["rotate"].status == "failed"
    assert incident.steps["revoke"].status == "blocked"
    assert incident.steps["revoke"].details["blocked_by"] == ["rotate", "redeploy"]
    assert world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert incident.exit_code() == 3 and not incident.verified
    assert "Contained." not in (directory / "postmortem.md").read_text()


def test_an_admin_key_without_usage_scope_limits_evidence_only(world):
    """A restricted admin key that may manage keys but not read usage: containment and healing go
    on; evidence records the missing scope as a limitation (record, post-mortem, action item), and
    the response is complete."""
    admin = next(iter(world.emulator.admin_keys.values()))
    admin.scopes = ["api.management.read", "api.management.write", "api.audit_logs.read"]
    directory = response.open_incident(world.runbook, mode="demo")
    incident = _run_all(directory)
    assert {name: s.status for name, s in incident.steps.items()} == {name: "ok" for name in records.STEPS}
    evidence = incident.steps["evidence"]
    assert evidence.summary.startswith("limited:") and evidence.details["limitation"]["permission"] == "api.usage.read"
    assert any("api.usage.read" in item.text for item in incident.action_items if item.step == "evidence")
    assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert incident.exit_code() == 0
    report = (directory / "postmortem.md").read_text()
    assert "api.usage.read" in report


def test_an_admin_key_that_may_not_mint_hands_the_rotation_to_a_person(world):
    """The admin key may revoke but every service-account call to mint is refused with OpenAI's
    "Missing scopes" 403: rotate waits for a person (the limitation named), revoke is unaffected."""
    world.emulator.fail_next("POST", "/v1/organization/projects/*/service_accounts*", status=403, count=50,
                             message="You have insufficient permissions for this operation. Missing scopes: "
                                     "api.management.write.")
    response.set_manual_input(None)
    directory = response.open_incident(world.runbook, mode="demo")
    incident = _run_all(directory)
    rotate = incident.steps["rotate"]
    assert rotate.status == "waiting", rotate.error
    assert rotate.details["limitation"]["permission"] == "api.management.write"
    assert "api.management.write" in rotate.error
    assert incident.steps["revoke"].status == "ok" and incident.exit_code() == 3
