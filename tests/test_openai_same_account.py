"""A leaked OpenAI service-account key, through the response steps: only that key dies, the
service account and its other key keep working, and the replacement is a new key on the same
account with the leaked key's scopes (the sandbox world, its leaked key handed to a service account)."""

import json

import pytest

from cauterize import incident as records
from cauterize import response
from cauterize.errors import StoreError
from cauterize.providers.base import CONFIRM_WINDOWS_S
from cauterize.sandbox.world import build_world
from cauterize.stores.dotenv import DotenvStore

pytestmark = pytest.mark.slow

SCOPES = ["api.model.request", "api.responses.write"]  # what build_world restricts the leaked key to


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIRM_WINDOWS_S, "openai", 1.0)
    built = build_world(tmp_path)
    for name, value in built.env.items():
        monkeypatch.setenv(name, value)
    emulator = built.emulator
    leaked = emulator.keys[built.leaked_key_id]
    account = emulator.add_service_account(leaked.project_id, "support bot")
    leaked.owner_type, leaked.owner_id = "service_account", account  # a service account owns the leaked key
    built.sibling = emulator.add_service_account_key(leaked.project_id, account, name="nightly batch")[1]
    built.account = account
    yield built
    built.close()


def _run(directory, *steps):
    for step in steps or response.order_of(directory):
        try:
            response.run_step(step, directory)
        except Exception:
            pass
    return records.load(directory)


def test_only_the_leaked_key_dies_and_the_replacement_joins_its_account(world):
    emulator = world.emulator
    directory = response.open_incident(world.runbook)
    incident = _run(directory)

    assert incident.steps["revoke"].status == incident.steps["rotate"].status == "ok"
    assert incident.steps["revoke"].details["action"] == "deleted-key"
    assert not emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
    assert emulator.is_live(world.sibling) and not emulator.service_accounts[world.account].deleted
    new = DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read()
    minted = next(k for k in emulator.keys.values() if k.value == new.reveal())
    assert (minted.owner_type, minted.owner_id, minted.scopes) == ("service_account", world.account, SCOPES)
    assert incident.new_key.identity["owner_id"] == world.account and incident.new_key.scopes == SCOPES
    assert not emulator.calls("POST", "*/service_accounts"), "no new service account"
    (mint,) = emulator.calls("POST", "*/service_accounts/*/api_keys")
    assert json.loads(mint.body)["scopes"] == SCOPES


def test_a_replacement_no_store_took_is_taken_back_without_its_account(world, monkeypatch):
    def refuse(self, value):
        raise StoreError("the primary store refused the write")

    emulator = world.emulator
    directory = response.open_incident(world.runbook)
    _run(directory, "intake", "revoke")
    monkeypatch.setattr(DotenvStore, "write", refuse)
    incident = _run(directory, "rotate")

    assert incident.steps["rotate"].status == "failed" and incident.new_key is None
    (minted,) = [k for k in emulator.keys.values() if k.owner_id == world.account and k.name.startswith("cauterize-")]
    assert minted.deleted and not emulator.is_live(minted.value)
    assert emulator.is_live(world.sibling) and not emulator.service_accounts[world.account].deleted


def test_rotate_first_on_an_older_api_converges_through_the_end_verification(world):
    """Rotate-first on an API that refuses single service-account key deletes: the replacement is
    minted on the leaked key's account and deployed, then the revocation falls back to deleting the
    account, which takes the replacement with it. The end verification sees the dead replacement,
    rotate and redeploy run again (on a new account), and the run ends verified."""
    world.emulator.legacy_service_account_delete = True
    world.runbook.write_text(world.runbook.read_text().replace("order: revoke-first", "order: rotate-first"))
    directory = response.open_incident(world.runbook)
    first = _run(directory, *[s for s in response.order_of(directory) if s != "report"])
    assert first.steps["revoke"].details["action"] == "deleted-service-account"
    assert not world.emulator.is_live(DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read().reveal())
    reopened = response.verify_outcome(directory)
    assert reopened == ["rotate", "redeploy"]
    incident = _run(directory, *reopened, "report")
    new = DotenvStore(world.root / "deploy/.env", "OPENAI_API_KEY").read()
    assert world.emulator.is_live(new.reveal()) and incident.new_key.fingerprint == new.fingerprint
    assert incident.verification["recovered"] is True and incident.exit_code() == 0
    assert not world.emulator.is_live(world.env["CAUTERIZE_SANDBOX_LEAKED_KEY"])
