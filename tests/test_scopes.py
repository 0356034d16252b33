"""What a replacement carries over from the revoked key: OpenAI scopes (from the audit log) and the
service account's role, the Anthropic workspace; against the emulators through MockTransport."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from cauterize.errors import ProviderUnavailable
from cauterize.providers.anthropic import AnthropicProvider
from cauterize.providers.base import KeyIdentity, ProviderSettings
from cauterize.providers.openai import OpenAIProvider
from cauterize.sandbox.anthropic import AnthropicEmulator
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.scopes import CarriedScopes, carried_scopes
from cauterize.secret import Secret

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def openai():
    emulator = OpenAIEmulator(now=lambda: NOW)
    provider = OpenAIProvider(ProviderSettings(admin_key=Secret(emulator.add_admin_key()),
                                               transport=httpx.MockTransport(emulator)), sleep=lambda _: None)
    yield emulator, provider
    provider.close()


def test_openai_scopes_come_from_the_newest_audit_event_and_the_role_survives_revocation(openai):
    emulator, provider = openai
    project = emulator.add_project("prod")
    created = provider.admin.create_project_service_account(project, "worker")
    key_id, sa_id = created["api_key"]["id"], created["id"]
    emulator.restrict_key(key_id, ["api.model.request"])  # a person restricts it in the console
    identity = KeyIdentity("openai", key_id, project, "service_account", sa_id)

    carried = carried_scopes(provider, identity)
    assert carried.scopes == ("api.model.request",) and carried.role == "member" and carried.known
    assert carried.source.startswith("audit log api_key.updated")
    assert "api.model.request" in carried.summary() and "role member" in carried.summary()

    provider.revoke(identity)  # the service account is deleted: its role is read from the audit log
    assert carried_scopes(provider, identity).role == "member"
    assert CarriedScopes.from_dict(carried.to_dict()) == carried


def test_an_unrestricted_key_and_a_key_without_history(openai):
    emulator, provider = openai
    project = emulator.add_project("prod")
    created = provider.admin.create_project_service_account(project, "worker")  # audit: scopes []
    minted = carried_scopes(provider, KeyIdentity("openai", created["api_key"]["id"], project, "service_account",
                                                  created["id"]))
    assert minted.scopes == () and "all permissions" in minted.summary()

    key_id, _ = emulator.add_user_key(project)  # made before audit logging: no event
    old = carried_scopes(provider, KeyIdentity("openai", key_id, project, "user"))
    assert old.scopes is None and not old.known
    assert any("audit log holds no" in note for note in old.notes) and any("project role" in n for n in old.notes)
    assert "could not be read" in old.summary()


def test_an_unreadable_audit_log_is_a_note_not_a_failure(openai):
    emulator, provider = openai
    project = emulator.add_project("prod")
    key_id, _ = emulator.add_user_key(project)
    emulator.fail_next("GET", "/v1/organization/audit_logs", status=404, message="Audit logging is not enabled.")
    carried = carried_scopes(provider, KeyIdentity("openai", key_id, project, "user"))
    assert carried.scopes is None and any("audit log could not be read" in note for note in carried.notes)


def test_anthropic_carries_the_workspace():
    emulator = AnthropicEmulator(now=lambda: NOW)
    provider = AnthropicProvider(ProviderSettings(admin_key=Secret(emulator.add_admin_key()),
                                                  transport=httpx.MockTransport(emulator)))
    try:
        workspace = emulator.add_workspace("prod")
        key_id, _ = emulator.add_key(workspace_id=workspace)
        carried = carried_scopes(provider, KeyIdentity("anthropic", key_id, workspace))
        assert carried.workspace == workspace and carried.known and workspace in carried.summary()
        default_key, _ = emulator.add_key()
        assert carried_scopes(provider, KeyIdentity("anthropic", default_key)).workspace == emulator.default_workspace
    finally:
        provider.close()


def test_providers_that_keep_the_reach_by_construction():
    carried = carried_scopes(object(), KeyIdentity("google", "abc", "demo-project", "service_account", "sa@x"))
    assert carried.known and carried.scopes is None and "by construction" in carried.summary()


def test_the_replacement_carries_the_scopes_and_the_role(openai):
    emulator, provider = openai
    project = emulator.add_project("prod")
    created = provider.admin.create_project_service_account(project, "worker")
    key_id, sa_id = created["api_key"]["id"], created["id"]
    provider.admin.update_project_service_account(project, sa_id, role="owner")
    emulator.restrict_key(key_id, ["api.model.request", "api.files.read"])
    carried = carried_scopes(provider, KeyIdentity("openai", key_id, project, "service_account", sa_id))

    minted = provider.mint(KeyIdentity("openai", key_id, project, "service_account", sa_id), "cauterize-x", carried)
    new = emulator.keys[minted.identity.key_id]
    assert new.scopes == ["api.model.request", "api.files.read"] and minted.scopes == tuple(new.scopes)
    assert emulator.service_accounts[minted.identity.owner_id].role == "owner"
    body = json.loads(emulator.calls("POST", "/v1/organization/projects/*/service_accounts/*/api_keys")[-1].body)
    assert body == {"name": "cauterize-x", "scopes": ["api.model.request", "api.files.read"]}
    # a restricted key without api.model.read is refused on /models with 401 "Missing scopes": still live
    assert provider.check(minted.secret).value == "live"
    provider.revoke(minted.identity)
    assert provider.check(minted.secret).value == "dead"

    # the same carried over twice reads back the same from the replacement's own audit event
    again = carried_scopes(provider, minted.identity)
    assert again.scopes == carried.scopes


def test_an_unrestricted_replacement_is_one_call_and_a_refused_scoped_key_falls_back(openai):
    emulator, provider = openai
    project = emulator.add_project("prod")
    like = KeyIdentity("openai", "key_old", project, "user", "user-old")  # a user key: a new account
    minted = provider.mint(like, "plain", CarriedScopes("openai", True, (), project, role="member"))
    assert emulator.keys[minted.identity.key_id].scopes == [] and minted.scopes == ()
    assert not emulator.calls("POST", "/v1/organization/projects/*/service_accounts/*/api_keys")

    # the scoped-key endpoint refused: the keyless account goes, an unrestricted key is minted and says so
    emulator.fail_next("POST", "/v1/organization/projects/*/service_accounts/*/api_keys", status=400, count=1)
    minted = provider.mint(like, "scoped", CarriedScopes("openai", True, ("api.model.request",), project, role="member"))
    assert minted.scopes == () and emulator.keys[minted.identity.key_id].scopes == []
    scoped = [sa for sa in emulator.service_accounts.values() if sa.name == "scoped"]
    assert len(scoped) == 2 and [sa.id for sa in scoped if not sa.deleted] == [minted.identity.owner_id]

    emulator.fail_next("POST", "/v1/organization/projects/*/service_accounts", status=500, count=10)
    with pytest.raises(ProviderUnavailable):  # an outage is not a refusal: no fallback, the error stands
        provider.mint(like, "down", CarriedScopes("openai", True, ("api.model.request",), project, role="member"))


def test_anthropic_asks_for_the_replacement_in_the_same_workspace():
    from cauterize.errors import ManualStepRequired

    provider = AnthropicProvider(ProviderSettings(admin_key=Secret("x" * 40), transport=httpx.MockTransport(
        lambda request: httpx.Response(500))))
    carried = CarriedScopes("anthropic", True, workspace="wrkspc_carried")
    with pytest.raises(ManualStepRequired, match="workspace wrkspc_carried"):
        provider.mint(KeyIdentity("anthropic", "apikey_1", None), "cauterize-x", carried)
    with pytest.raises(ManualStepRequired, match="organisation scope"):
        provider.mint(KeyIdentity("anthropic", "apikey_1", None), "cauterize-x", CarriedScopes("anthropic", True))
