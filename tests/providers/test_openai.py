"""The openai provider against the OpenAI emulator: through MockTransport and over a real socket."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from cauterize.errors import AdminAuthError, InputError, KeyNotFound, ManualStepRequired, MissingPermission
from cauterize.providers.base import KeyIdentity, Liveness, ProviderSettings, get_provider
from cauterize.providers.openai import OpenAIProvider
from cauterize.providers.openai_admin import _error_for, provider_message
from cauterize.sandbox.openai import new_key_value
from cauterize.sandbox.server import serve
from cauterize.scopes import carried_scopes
from cauterize.secret import Secret


def twin_of(value: str) -> str:
    """Another fake key with the same redacted form (same first 8 and last 4 characters)."""
    return value[:8] + new_key_value("proj")[8:-4] + value[-4:]


def test_identify_walks_every_page_and_sees_inactive_owners(provider, emulator):
    for index in range(3):
        emulator.add_user_key(emulator.add_project(f"team-{index}"))
    project = emulator.add_project("prod")
    for index in range(130):
        emulator.add_user_key(project, name=f"key-{index}")
    key_id, value = emulator.add_user_key(project, name="leaked", owner_project_access="inactive")

    identity = provider.identify(Secret(value))

    assert identity == KeyIdentity("openai", key_id, project, "user", emulator.keys[key_id].owner_id, "leaked")
    listings = emulator.calls("GET", "/organization/projects/*/api_keys")
    assert all(call.params.get("owner_project_access") == "any" for call in listings)
    assert any(call.params.get("after") for call in listings if project in call.path)  # page 2 was read
    (projects,) = emulator.calls("GET", "/organization/projects")
    assert projects.params.get("include_archived") == "true"


def test_identify_follows_project_pages(provider, emulator):
    projects = [emulator.add_project(f"p{index}") for index in range(101)]
    key_id, value = emulator.add_user_key(projects[-1])
    assert provider.identify(Secret(value)).key_id == key_id
    assert len(emulator.calls("GET", "/organization/projects")) == 2


def test_identify_breaks_ties_and_says_it_was_ambiguous(provider, emulator, clock):
    project = emulator.add_project("prod")
    sa = emulator.add_service_account(project, "ci")
    leaked_id, value = emulator.add_user_key(project, name="laptop", last_used_at=clock.now - timedelta(days=2))
    newer_id, _ = emulator.add_user_key(project, twin_of(value), name="twin", last_used_at=clock.now)
    sa_twin_id, _ = emulator.add_service_account_key(project, sa, twin_of(value), last_used_at=clock.now)
    emulator.add_user_key(project)  # a key that does not match at all

    identity = provider.identify(Secret(value))

    assert identity.key_id == newer_id  # a user key (fits sk-proj-), then the most recently used
    (note,) = identity.notes
    assert "ambiguous: 3" in note and leaked_id in note and sa_twin_id in note
    assert value not in note


def test_identify_unknown_key_raises_key_not_found(provider, emulator):
    emulator.add_user_key(emulator.add_project("prod"))
    leaked = Secret(new_key_value("proj"))
    with pytest.raises(KeyNotFound) as caught:
        provider.identify(leaked)
    assert leaked.fingerprint in str(caught.value) and leaked.reveal() not in str(caught.value)


def test_identify_searches_the_hinted_project_first(make_provider, emulator):
    for index in range(5):
        emulator.add_user_key(emulator.add_project(f"other-{index}"))
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    identity = make_provider(project=project).identify(Secret(value))
    assert identity.key_id == key_id and "other projects were not searched" in identity.notes[0]
    assert not emulator.calls("GET", "/organization/projects")


def test_revoke_user_key_makes_it_dead(provider, emulator):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    leaked = Secret(value)
    assert provider.check(leaked).state is Liveness.LIVE

    result = provider.revoke(provider.identify(leaked))

    assert result.action == "deleted-key" and result.action_items == ()
    assert provider.check(leaked).state is Liveness.DEAD
    assert [e["api_key.deleted"]["id"] for e in emulator.audit_events] == [key_id]
    assert provider.revoke(result.identity).action == "already-revoked"


def _service_account_with_two_keys(emulator):
    project = emulator.add_project("prod")
    sa = emulator.add_service_account(project, "deploy bot")
    key_id, value = emulator.add_service_account_key(project, sa)
    sibling_id, sibling = emulator.add_service_account_key(project, sa, name="batch jobs")
    return project, sa, (key_id, value), (sibling_id, sibling)


def test_revoke_service_account_key_deletes_that_key_only(provider, emulator):
    """The 2026 API: the leaked key goes; its service account and the account's other key live on."""
    project, sa, (key_id, value), (_, sibling) = _service_account_with_two_keys(emulator)

    identity = provider.identify(Secret(value))
    assert (identity.owner_type, identity.owner_id) == ("service_account", sa)
    result = provider.revoke(identity)

    assert (result.action, result.action_items) == ("deleted-key", ())
    assert not emulator.is_live(value) and emulator.is_live(sibling)
    assert not emulator.service_accounts[sa].deleted
    assert [c.path for c in emulator.calls("DELETE")] == [f"/v1/organization/projects/{project}/api_keys/{key_id}"]
    assert provider.revoke(identity).action == "already-revoked"


def test_revoke_service_account_when_the_runbook_says_so(make_provider, emulator):
    _, sa, (_, value), (sibling_id, sibling) = _service_account_with_two_keys(emulator)
    provider = make_provider(revoke="service-account")

    result = provider.revoke(provider.identify(Secret(value)))

    assert result.action == "deleted-service-account" and emulator.service_accounts[sa].deleted
    assert not emulator.is_live(value) and not emulator.is_live(sibling)
    (item,) = result.action_items
    assert sa in item and sibling_id in item and "revoked too" in item and "providers.openai.revoke" in item
    assert not emulator.calls("DELETE", "/organization/projects/*/api_keys/*")


@pytest.mark.parametrize("owner_known", [True, False], ids=["identified", "owner unknown (an old record)"])
def test_an_older_api_refusing_the_single_key_delete_falls_back_to_the_account(provider, emulator, owner_known):
    emulator.legacy_service_account_delete = True
    project, sa, (key_id, value), (sibling_id, sibling) = _service_account_with_two_keys(emulator)
    identity = provider.identify(Secret(value)) if owner_known else KeyIdentity("openai", key_id, project)

    result = provider.revoke(identity)

    assert result.action == "deleted-service-account" and emulator.service_accounts[sa].deleted
    assert not emulator.is_live(value) and not emulator.is_live(sibling)
    (item,) = result.action_items
    assert "400: an API older than 2026" in item and sibling_id in item and "revoked too" in item
    assert len(emulator.calls("DELETE", "/organization/projects/*/api_keys/*")) == 1


def test_the_replacement_sits_on_the_same_service_account_with_the_old_scopes(provider, emulator):
    project, sa, (key_id, value), (_, sibling) = _service_account_with_two_keys(emulator)
    emulator.restrict_key(key_id, ["api.model.request", "api.files.read"])
    identity = provider.identify(Secret(value))
    carried = carried_scopes(provider, identity)
    provider.revoke(identity)

    minted = provider.mint(identity, "cauterize-replacement", carried)

    assert (minted.identity.owner_id, minted.identity.project) == (sa, project)
    assert minted.scopes == ("api.model.request", "api.files.read")
    assert emulator.keys[minted.identity.key_id].scopes == ["api.model.request", "api.files.read"]
    (call,) = emulator.calls("POST")
    assert call.path == f"/v1/organization/projects/{project}/service_accounts/{sa}/api_keys"
    assert json.loads(call.body) == {"name": "cauterize-replacement", "scopes": ["api.model.request", "api.files.read"]}
    assert [a.id for a in emulator.service_accounts.values()] == [sa], "no new account"
    assert provider.check(minted.secret).state is Liveness.LIVE and emulator.is_live(sibling)

    # taking the replacement back (a failed store write, a resumed run) deletes that key only
    assert provider.revoke(minted.identity).action == "deleted-key"
    assert not emulator.is_live(minted.secret.reveal()) and emulator.is_live(sibling)
    assert not emulator.service_accounts[sa].deleted


def test_a_refused_same_account_mint_falls_back_to_a_new_account_and_says_why(provider, emulator, caplog):
    _, sa, (_, value), _ = _service_account_with_two_keys(emulator)
    identity = provider.identify(Secret(value))
    emulator.fail_next("POST", "/v1/organization/projects/*/service_accounts/*/api_keys", status=404)

    minted = provider.mint(identity, "cauterize-replacement")

    assert minted.identity.owner_id != sa and emulator.service_accounts[minted.identity.owner_id].name == (
        "cauterize-replacement"
    )
    assert any(f"refused a new key on service account {sa}" in note for note in minted.identity.notes)
    assert f"refused a new key on service account {sa}" in caplog.text
    # taking it back deletes the account cauterize made for it
    assert provider.revoke(minted.identity).action == "deleted-service-account"
    assert emulator.service_accounts[minted.identity.owner_id].deleted and not emulator.service_accounts[sa].deleted


def test_a_user_keys_replacement_goes_on_the_runbooks_service_account(make_provider, emulator):
    project = emulator.add_project("prod")
    named = emulator.add_service_account(project, "support bot")
    _, value = emulator.add_user_key(project)
    provider = make_provider(service_account=named)
    identity = provider.identify(Secret(value))
    assert provider.revoke(identity).action == "deleted-key" and not emulator.is_live(value)

    minted = provider.mint(identity, "cauterize-replacement")

    assert minted.identity.owner_id == named and len(emulator.service_accounts) == 1
    assert [c.path for c in emulator.calls("POST")] == [
        f"/v1/organization/projects/{project}/service_accounts/{named}/api_keys"
    ]
    # a crash-resume finds that key (not an account) by its name, and takes back only the key
    (orphan,) = provider.find_minted(identity, "cauterize-replacement")
    assert (orphan.key_id, orphan.owner_id) == (minted.identity.key_id, named)
    assert provider.revoke(orphan).action == "deleted-key" and not emulator.service_accounts[named].deleted


def test_find_minted_finds_an_orphaned_account_and_revoke_deletes_it(provider, emulator):
    project = emulator.add_project("prod")
    _, value = emulator.add_user_key(project)
    identity = provider.identify(Secret(value))
    minted = provider.mint(identity, "cauterize-replacement")  # no runbook account: a new one

    (orphan,) = provider.find_minted(identity, "cauterize-replacement")

    assert (orphan.key_id, orphan.owner_id) == (None, minted.identity.owner_id)
    assert provider.revoke(orphan).action == "deleted-service-account"
    assert not emulator.is_live(minted.secret.reveal())


def test_taking_back_a_same_account_replacement_never_deletes_the_account(provider, emulator):
    """On an older API that refuses single-key deletes, the replacement is left for a person, never
    taken back by deleting the account (which would kill its other keys)."""
    _, sa, (_, value), (_, sibling) = _service_account_with_two_keys(emulator)
    minted = provider.mint(provider.identify(Secret(value)), "cauterize-replacement")
    emulator.legacy_service_account_delete = True

    with pytest.raises(ManualStepRequired, match="not its service account"):
        provider.revoke(minted.identity)
    assert not emulator.service_accounts[sa].deleted and emulator.is_live(sibling)


def test_a_429_on_delete_is_retried_after_retry_after(provider, emulator, sleeps):
    project = emulator.add_project("prod")
    _, value = emulator.add_user_key(project)
    identity = provider.identify(Secret(value))
    emulator.fail_next("DELETE", "/organization/projects/*/api_keys/*", status=429, retry_after=1)

    result = provider.revoke(identity)

    assert result.action == "deleted-key"
    assert sleeps == [1.0]
    assert len(emulator.calls("DELETE")) == 2
    assert [e["type"] for e in emulator.audit_events] == ["api_key.deleted"]  # deleted exactly once
    assert not emulator.is_live(value)


@pytest.mark.parametrize("wrong", ["unknown admin key", "project key"])
def test_a_rejected_admin_key_raises_admin_auth_error_without_the_key(make_provider, emulator, wrong):
    project = emulator.add_project("prod")
    _, value = emulator.add_user_key(project)
    bad = new_key_value("admin") if wrong == "unknown admin key" else emulator.add_user_key(project)[1]
    provider = make_provider(admin_key=Secret(bad))

    with pytest.raises(AdminAuthError) as caught:
        provider.identify(Secret(value))

    error = caught.value
    text = " ".join([str(error), repr(error), error.remediation, error.one_line()])
    assert "the OpenAI admin key was rejected (40" in str(error)
    assert bad not in text and value not in text and bad[8:-4] not in text
    assert "OPENAI_ADMIN_KEY" in error.remediation


@pytest.mark.parametrize("body", ["object", "string", "text"])
def test_a_restricted_admin_key_raises_missing_permission_naming_the_scope(make_provider, emulator, clock, body):
    emulator.missing_scope_body = body
    restricted = emulator.add_admin_key("read only", scopes=["api.management.read"])
    project = emulator.add_project("prod")
    _, value = emulator.add_user_key(project)
    provider = make_provider(admin_key=Secret(restricted))
    identity = provider.identify(Secret(value))  # api.management.read is enough to identify

    with pytest.raises(MissingPermission) as caught:
        provider.usage(identity, clock.now - timedelta(days=1), clock.now, "1h")

    error = caught.value
    assert error.permission == "api.usage.read" and isinstance(error, AdminAuthError)
    assert "api.usage.read" in error.message and "api.usage.read" in error.remediation
    assert restricted not in error.one_line() and restricted[8:-4] not in error.one_line()
    with pytest.raises(MissingPermission) as caught:
        provider.revoke(identity)
    assert caught.value.permission == "api.management.write" and emulator.is_live(value)


REFUSAL = "You have insufficient permissions for this operation."


@pytest.mark.parametrize(
    ("status", "body", "permission"),
    [
        (
            403,
            {"error": {"message": f"{REFUSAL} Missing scopes: api.responses.read, api.responses.write", "type": "x"}},
            "api.responses.read, api.responses.write",
        ),
        (401, {"error": f"{REFUSAL} Missing scopes: api.usage.read. Check your role"}, "api.usage.read"),
        (403, f"{REFUSAL} Missing scopes: api.audit_logs.read.", "api.audit_logs.read"),
        (403, REFUSAL, None),
    ],
)
def test_missing_scope_answers_of_every_shape(status, body, permission):
    response = httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)
    error = _error_for(response, "OpenAI GET /organization/costs", KeyNotFound)
    assert isinstance(error, MissingPermission) and error.permission == permission
    assert "insufficient permissions" in provider_message(response)


def test_other_auth_failures_stay_admin_auth_errors_and_messages_are_masked():
    leaked = new_key_value("proj")
    response = httpx.Response(401, text=f"<html>Incorrect API key provided: {leaked}</html>")
    error = _error_for(response, "OpenAI GET /organization/projects", KeyNotFound)
    assert type(error) is AdminAuthError and leaked not in error.message and "[key redacted]" in error.message
    assert provider_message(httpx.Response(502, json=["odd"])) == "['odd']"
    assert provider_message(httpx.Response(500, content=b"")) == "Internal Server Error"


def test_a_deleted_key_answers_until_the_revocation_reaches_the_data_plane(make_provider, emulator, clock):
    emulator.revocation_delay_s = 30
    project, _, (_, value), (_, sibling) = _service_account_with_two_keys(emulator)
    _, user_value = emulator.add_user_key(project)
    provider = make_provider()
    provider.revoke(provider.identify(Secret(value)))
    listed = {k["id"] for k in provider.admin.iter_project_api_keys(project)}
    assert provider.identify(Secret(sibling)).key_id in listed and len(listed) == 2  # the admin API: gone at once

    clock.advance(seconds=29)
    assert emulator.is_live(value) and provider.check(Secret(value)).state is Liveness.LIVE
    provider.revoke(provider.identify(Secret(user_value)))
    clock.advance(seconds=1)
    assert not emulator.is_live(value) and provider.check(Secret(value)).state is Liveness.DEAD
    assert emulator.is_live(user_value) and emulator.is_live(sibling)
    clock.advance(seconds=29)
    assert not emulator.is_live(user_value) and emulator.is_live(sibling)

    emulator.archive_project(project)  # an archived project's keys, too, fade out on the data plane
    assert emulator.is_live(sibling)
    clock.advance(seconds=30)
    assert not emulator.is_live(sibling)


def test_missing_admin_key_is_an_input_error_but_check_still_works(make_provider, emulator):
    _, value = emulator.add_user_key(emulator.add_project("prod"))
    provider = make_provider(admin_key=None)
    assert provider.check(Secret(value)).state is Liveness.LIVE
    with pytest.raises(InputError, match="OPENAI_ADMIN_KEY"):
        provider.identify(Secret(value))


def test_check_is_unknown_when_openai_keeps_failing(provider, emulator, sleeps):
    _, value = emulator.add_user_key(emulator.add_project("prod"))
    emulator.fail_next("GET", "/models", status=500, count=4)
    assert provider.check(Secret(value)).state is Liveness.UNKNOWN
    assert len(sleeps) == 3
    assert provider.check(Secret(value)).state is Liveness.LIVE


def test_check_is_unknown_when_the_network_is_down(make_provider):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    provider = make_provider(transport=httpx.MockTransport(refuse))
    assert provider.check(Secret(new_key_value("proj"))).state is Liveness.UNKNOWN


def test_check_of_an_admin_key_uses_the_admin_api(provider, emulator, admin_key):
    assert provider.check(Secret(admin_key)).state is Liveness.LIVE
    assert provider.check(Secret(new_key_value("admin"))).state is Liveness.DEAD


def test_admin_key_identify_and_revoke(provider, emulator):
    leaked = Secret(emulator.add_admin_key("leaked in ci"))
    identity = provider.identify(leaked)
    assert (identity.owner_type, identity.name, identity.project) == ("admin", "leaked in ci", None)
    assert provider.revoke(identity).action == "deleted-admin-key"
    assert provider.check(leaked).state is Liveness.DEAD


def test_mint_returns_a_live_service_account_key(provider, emulator):
    project = emulator.add_project("prod")
    _, value = emulator.add_user_key(project)
    like = provider.identify(Secret(value))

    minted = provider.mint(like, "cauterize-replacement")

    assert provider.check(minted.secret).state is Liveness.LIVE
    assert minted.secret.reveal().startswith("sk-svcacct-")
    sa = emulator.service_accounts[minted.identity.owner_id]
    assert (sa.name, sa.project_id) == ("cauterize-replacement", project)
    assert minted.identity.owner_type == "service_account" and minted.identity.key_id in emulator.keys
    assert minted.secret.reveal() not in repr(minted)


def test_mint_manual_asks_a_person(make_provider, emulator):
    _, value = emulator.add_user_key(emulator.add_project("prod"))
    provider = make_provider(mint="manual")
    with pytest.raises(ManualStepRequired):
        provider.mint(provider.identify(Secret(value)), "replacement")


def test_usage_sums_every_page_for_this_key_only(provider, emulator, clock):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    other_id, _ = emulator.add_user_key(project)
    start = clock.now - timedelta(days=10)
    emulator.add_usage(key_id, project, start, clock.now, 3600, 100, 50, 2)
    emulator.add_usage(other_id, project, start, clock.now, 3600, 9999, 9999, 99)
    identity = provider.identify(Secret(value))

    usage = provider.usage(identity, start, clock.now, "1h")

    assert len(usage.buckets) == 240
    assert sum(b.input_tokens for b in usage.buckets) == 240 * 100
    assert sum(b.output_tokens for b in usage.buckets) == 240 * 50
    assert sum(b.requests for b in usage.buckets) == 240 * 2
    pages = emulator.calls("GET", "/organization/usage/completions")
    assert len(pages) == 2 and pages[1].params.get("page")
    assert pages[0].params.getlist("api_key_ids") == [key_id] and "api_key_ids%5B%5D=" in pages[0].query
    assert pages[0].params.getlist("group_by") == ["api_key_id"]


def test_usage_by_day_has_cost_and_says_when_there_is_none(provider, emulator, clock):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    identity = provider.identify(Secret(value))
    empty = provider.usage(identity, clock.now - timedelta(days=3), clock.now, "1d")
    assert empty.limitations[0].startswith("OpenAI reported no completions usage")
    emulator.add_usage(key_id, project, clock.now - timedelta(days=1), clock.now, 3600, 1_000_000, 0, 1)
    usage = provider.usage(identity, clock.now - timedelta(days=3), clock.now, "1d")
    assert usage.limitations == ()
    assert sum(b.cost_usd or 0 for b in usage.buckets) == pytest.approx(24 * 0.15)


def test_an_admin_key_that_may_read_usage_but_not_costs_gets_usage_and_a_limitation(provider, emulator, clock):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    identity = provider.identify(Secret(value))
    emulator.add_usage(key_id, project, clock.now - timedelta(days=1), clock.now, 3600, 1000, 0, 1)
    emulator.fail_next("GET", "/organization/costs", 403, count=5,
                       message="You have insufficient permissions for this operation. Missing scopes: api.usage.read.")
    usage = provider.usage(identity, clock.now - timedelta(days=3), clock.now, "1d")
    assert sum(b.input_tokens for b in usage.buckets) == 24 * 1000
    assert all(b.cost_usd is None for b in usage.buckets)
    assert any("costs were not available" in note and "api.usage.read" in note for note in usage.limitations)


def test_the_registry_builds_the_provider(emulator, admin_key):
    settings = ProviderSettings(admin_key=Secret(admin_key), transport=httpx.MockTransport(emulator))
    provider = get_provider("openai", settings)
    try:
        assert isinstance(provider, OpenAIProvider)
        assert admin_key not in repr(provider) and admin_key not in repr(settings.admin_key)
    finally:
        provider.close()


def test_the_whole_cycle_over_a_real_socket(emulator, admin_key, sleeps):
    project = emulator.add_project("prod")
    for index in range(120):
        emulator.add_user_key(project, name=f"key-{index}")
    _, value = emulator.add_user_key(project, owner_project_access="inactive")
    leaked = Secret(value)
    emulator.fail_next("DELETE", "/organization/projects/*/api_keys/*", status=429, retry_after=1)

    with serve(emulator) as app:
        settings = ProviderSettings(admin_key=Secret(admin_key), base_url=app.url + "/v1")
        provider = OpenAIProvider(settings, sleep=sleeps.append)
        try:
            assert provider.check(leaked).state is Liveness.LIVE
            result = provider.revoke(provider.identify(leaked))
            assert result.action == "deleted-key"
            assert provider.check(leaked).state is Liveness.DEAD
            minted = provider.mint(result.identity, "replacement")
            assert provider.check(minted.secret).state is Liveness.LIVE
        finally:
            provider.close()

    assert sleeps == [1.0]
    assert emulator.calls("GET", "/v1/models")[0].headers["host"].startswith("127.0.0.1:")
