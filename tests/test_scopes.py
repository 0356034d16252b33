"""What a replacement carries over from the revoked key: OpenAI scopes (from the audit log) and the
service account's role, the Anthropic workspace; against the emulators through MockTransport."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

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


def _event(emulator: OpenAIEmulator, type_: str, resource: str, payload: dict, at: int) -> None:
    """An audit event as OpenAI records it (the emulator's API ignores ``scopes`` on creation)."""
    event_id = f"audit_log-{len(emulator.audit_events)}"
    emulator.audit_events.append({"id": event_id, "type": type_, "effective_at": at, type_: {"id": resource, **payload}})
    emulator._order[event_id] = len(emulator._order)


def test_openai_scopes_come_from_the_newest_audit_event_and_the_role_survives_revocation(openai):
    emulator, provider = openai
    project = emulator.add_project("prod")
    created = provider.admin.create_project_service_account(project, "worker")
    key_id, sa_id = created["api_key"]["id"], created["id"]
    stamp = int(NOW.timestamp())
    _event(emulator, "api_key.updated", key_id, {"changes_requested": {"scopes": ["api.model.request"]}}, stamp + 60)
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
