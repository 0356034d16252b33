"""A leaked Google service-account key through the response steps, where an organization policy
forbids key creation: under rotate-first the run learns it at intake, before anything is deleted,
and never revokes the key its service depends on; under revoke-first containment comes first and the
mint waits for a person with the right advice (the constraint, not "10 keys per service account")."""

import httpx
import pytest

from cauterize import incident as records
from cauterize import response
from cauterize.providers.base import CONFIRM_WINDOWS_S
from cauterize.sandbox.google import GoogleEmulator

PROJECT = "vertex-prod"


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIRM_WINDOWS_S, "google", 1.0)
    google = GoogleEmulator()
    account = google.add_service_account(PROJECT, "vertex-caller")
    key_id, credentials = google.add_key(PROJECT, account)
    (tmp_path / "leaked.json").write_text(credentials)
    (tmp_path / "app.env").write_text("GOOGLE_APPLICATION_CREDENTIALS_JSON=placeholder\n")
    monkeypatch.setenv("GOOGLE_ADMIN_KEY", google.add_admin_token())
    response.set_manual_input(None)

    def runbook(order: str):
        path = tmp_path / f"{order}.yaml"
        path.write_text(
            f"version: 1\nname: vertex-{order}\nkey: {{provider: google, source: file:leaked.json}}\n"
            f"policy: {{order: {order}}}\n"
            "stores:\n  - {type: dotenv, path: app.env, variable: GOOGLE_APPLICATION_CREDENTIALS_JSON}\n"
            f"report: {{dir: {tmp_path / 'incidents'}}}\n"
        )
        return path

    yield google, credentials, runbook


def _run(directory, transport):
    for step in response.order_of(directory):
        try:
            response.run_step(step, directory, transport=transport)
        except Exception:
            pass
    return records.load(directory)


def test_rotate_first_learns_of_the_org_policy_before_anything_is_deleted(world):
    google, credentials, runbook = world
    google.forbid_key_creation(PROJECT)
    transport = httpx.MockTransport(google)
    directory = response.open_incident(runbook("rotate-first"))
    incident = _run(directory, transport)
    preflight = incident.steps["intake"].details["mint_preflight"]
    assert any(p["blocking"] and "iam.disableServiceAccountKeyCreation" in p["message"] for p in preflight)
    assert any("iam.disableServiceAccountKeyCreation" in item.text for item in incident.action_items)
    rotate = incident.steps["rotate"]
    assert rotate.status == "waiting" and "iam.disableServiceAccountKeyCreation" in rotate.error
    assert "10 keys" not in rotate.error
    assert incident.steps["revoke"].status == "blocked", "the key the service runs on is not revoked"
    assert google.is_live(credentials) and incident.exit_code() == 3
    assert not [c for c in google.requests if c.method == "DELETE" or c.path.endswith(":disable")]


def test_revoke_first_contains_at_once_and_the_mint_waits_with_the_right_advice(world):
    google, credentials, runbook = world
    google.forbid_key_creation(PROJECT, managed=True)
    transport = httpx.MockTransport(google)
    directory = response.open_incident(runbook("revoke-first"))
    incident = _run(directory, transport)
    assert "mint_preflight" not in incident.steps["intake"].details, "containment does not wait for the preflight"
    assert incident.steps["revoke"].status == "ok" and not google.is_live(credentials)
    rotate = incident.steps["rotate"]
    assert rotate.status == "waiting" and "iam.managed.disableServiceAccountKeyCreation" in rotate.error
    assert "10 keys" not in rotate.error and incident.exit_code() == 3
