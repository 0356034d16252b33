"""The anthropic provider against the Anthropic emulator: through MockTransport and over a real socket.

Every key is generated at run time by the emulator; no key-shaped literal is committed. The
``emulator``, ``admin_key``, ``make_provider`` and ``provider`` fixtures here replace the OpenAI ones
of ``tests/providers/conftest.py`` for this module; ``clock`` and ``sleeps`` come from there.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from cauterize.errors import AdminAuthError, InputError, KeyNotFound, ManualStepRequired
from cauterize.providers.anthropic import AnthropicProvider
from cauterize.providers.base import KeyIdentity, Liveness, ProviderSettings, get_provider
from cauterize.sandbox.anthropic import AnthropicEmulator, new_key_value
from cauterize.sandbox.server import serve
from cauterize.secret import Secret

KEYS = "/v1/organizations/api_keys"
USAGE = "/v1/organizations/usage_report/messages"


@pytest.fixture
def emulator(clock) -> AnthropicEmulator:
    return AnthropicEmulator(now=clock)


@pytest.fixture
def admin_key(emulator) -> str:
    return emulator.add_admin_key()


@pytest.fixture
def make_provider(emulator, admin_key, sleeps):
    """``make_provider(**settings)``: the anthropic provider on the emulator, closed after the test."""
    made: list[AnthropicProvider] = []

    def make(**overrides) -> AnthropicProvider:
        fields = {"admin_key": Secret(admin_key), "transport": httpx.MockTransport(emulator), **overrides}
        provider = AnthropicProvider(ProviderSettings(**fields), sleep=sleeps.append)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider) -> AnthropicProvider:
    return make_provider()


def twin_of(value: str) -> str:
    """Another fake key with the same ``partial_key_hint`` (same first 16 and last 4 characters)."""
    return value[:16] + new_key_value()[16:-4] + value[-4:]


def test_identify_finds_the_key_on_a_later_page(provider, emulator):
    workspace = emulator.add_workspace("prod")
    for index in range(1005):
        emulator.add_key(name=f"key-{index}")
    key_id, value = emulator.add_key(name="leaked", workspace_id=workspace, status="inactive")

    identity = provider.identify(Secret(value))

    owner = emulator.keys[key_id].owner_id
    assert identity.key_id == key_id
    assert identity == KeyIdentity("anthropic", key_id, workspace, "user", owner, "leaked", identity.notes)
    assert identity.notes == ("the key is already inactive at Anthropic",)
    first, second = emulator.calls("GET", KEYS)
    assert first.params.get("limit") == second.params.get("limit") == "1000"
    assert first.params.get("status") is None  # every status, not only active keys
    assert first.params.get("after_id") is None and second.params.get("after_id") == list(emulator.keys)[999]


def test_identify_reads_the_principal_and_the_default_workspace(provider, emulator):
    robot = emulator.add_service_account("deploy bot")
    key_id, value = emulator.add_key(name="ci", service_account_id=robot)
    identity = provider.identify(Secret(value))
    assert (identity.key_id, identity.owner_type, identity.owner_id) == (key_id, "service_account", robot)
    assert identity.project == emulator.default_workspace  # the scope's real id, not the null workspace_id


def test_identify_breaks_ties_and_says_it_was_ambiguous(provider, emulator, clock):
    leaked_id, value = emulator.add_key(name="laptop")
    clock.advance(days=1)
    newer_id, _ = emulator.add_key(twin_of(value), name="twin")
    clock.advance(days=1)
    inactive_id, _ = emulator.add_key(twin_of(value), name="newest but inactive", status="inactive")
    emulator.add_key()  # a key that does not match at all

    identity = provider.identify(Secret(value))

    assert identity.key_id == newer_id  # active first, then the newest
    (note,) = identity.notes
    assert "ambiguous: 3" in note and leaked_id in note and inactive_id in note
    assert value not in note


def test_identify_unknown_key_raises_key_not_found(provider, emulator):
    emulator.add_key()
    leaked = Secret(new_key_value())
    with pytest.raises(KeyNotFound) as caught:
        provider.identify(leaked)
    assert leaked.fingerprint in str(caught.value) and leaked.reveal() not in str(caught.value)


def test_identify_an_admin_key_points_at_the_console(provider):
    leaked = Secret(new_key_value("admin01"))
    with pytest.raises(KeyNotFound, match="Admin API key") as caught:
        provider.identify(leaked)
    assert "Admin keys" in caught.value.remediation and leaked.reveal() not in caught.value.one_line()


def test_revoke_deactivates_the_key_and_check_reads_dead(provider, emulator):
    key_id, value = emulator.add_key()
    leaked = Secret(value)
    assert provider.check(leaked).state is Liveness.LIVE

    result = provider.revoke(provider.identify(leaked))

    assert result.action == "deactivated-key" and emulator.keys[key_id].status == "inactive"
    (item,) = result.action_items
    assert key_id in item and "archive" in item
    assert provider.check(leaked).state is Liveness.DEAD
    (post,) = emulator.calls("POST", f"{KEYS}/{key_id}")
    assert json.loads(post.body) == {"status": "inactive"}
    assert provider.revoke(result.identity).action == "already-revoked"
    assert len(emulator.calls("POST")) == 1


@pytest.mark.parametrize("policy", ["archived", "delete"])
def test_the_archived_policy_archives_even_an_inactive_key(make_provider, emulator, policy):
    provider = make_provider(revoke=policy)
    active_id, active = emulator.add_key()
    inactive_id, _ = emulator.add_key(status="inactive")

    assert provider.revoke(provider.identify(Secret(active))).action == "archived-key"
    assert provider.revoke(KeyIdentity("anthropic", inactive_id)).action == "archived-key"
    assert emulator.keys[active_id].status == emulator.keys[inactive_id].status == "archived"
    assert provider.check(Secret(active)).state is Liveness.DEAD
    assert provider.revoke(KeyIdentity("anthropic", active_id)).action == "already-revoked"


@pytest.mark.parametrize("status", ["inactive", "archived", "expired"])
def test_an_already_revoked_key_is_a_normal_outcome(provider, emulator, clock, status):
    if status == "expired":
        key_id, _ = emulator.add_key(expires_at=clock.now - timedelta(hours=1))
    else:
        key_id, _ = emulator.add_key(status=status)  # e.g. auto-revoked by GitHub's partner program
    result = provider.revoke(KeyIdentity("anthropic", key_id, name="leaked"))
    assert result.action == "already-revoked" and result.action_items == ()
    assert emulator.calls("POST") == [] and emulator.updates == []


def test_revoke_of_a_key_this_organisation_does_not_hold(provider):
    with pytest.raises(KeyNotFound):
        provider.revoke(KeyIdentity("anthropic", "apikey_01elsewhere"))
    with pytest.raises(InputError):
        provider.revoke(KeyIdentity("anthropic", None))


def test_a_429_on_the_update_is_retried_after_retry_after(provider, emulator, sleeps):
    key_id, value = emulator.add_key()
    identity = provider.identify(Secret(value))
    emulator.fail_next("POST", f"{KEYS}/*", status=429, retry_after=1)

    result = provider.revoke(identity)

    assert result.action == "deactivated-key"
    assert sleeps == [1.0]
    assert len(emulator.calls("POST", f"{KEYS}/{key_id}")) == 2
    assert [(u["api_key_id"], u["status"]) for u in emulator.updates] == [(key_id, "inactive")]  # updated once
    assert not emulator.is_live(value)


@pytest.mark.parametrize(("wrong", "status"), [("unknown admin key", 401), ("standard key", 403)])
def test_a_rejected_admin_key_raises_admin_auth_error_without_the_key(make_provider, emulator, wrong, status):
    _, value = emulator.add_key()
    bad = new_key_value("admin01") if wrong == "unknown admin key" else emulator.add_key()[1]
    provider = make_provider(admin_key=Secret(bad))

    with pytest.raises(AdminAuthError) as caught:
        provider.identify(Secret(value))

    error = caught.value
    text = " ".join([str(error), repr(error), error.remediation, error.one_line()])
    assert str(error).startswith(f"the Anthropic admin key was rejected ({status}): ")
    assert "\n" not in error.one_line()
    assert bad not in text and value not in text and bad[16:-4] not in text and bad[-12:] not in text
    assert "ANTHROPIC_ADMIN_KEY" in error.remediation


def test_missing_admin_key_is_an_input_error_but_check_still_works(make_provider, emulator):
    _, value = emulator.add_key()
    provider = make_provider(admin_key=None)
    assert provider.check(Secret(value)).state is Liveness.LIVE
    with pytest.raises(InputError, match="ANTHROPIC_ADMIN_KEY"):
        provider.identify(Secret(value))


@pytest.mark.parametrize(
    ("status", "count", "waits"),
    [(500, 4, 3), (529, 4, 3), (429, 4, 3), (400, 1, 0)],
)
def test_check_is_unknown_when_anthropic_cannot_say(provider, emulator, sleeps, status, count, waits):
    _, value = emulator.add_key()
    emulator.fail_next("GET", "/v1/models", status=status, count=count)
    assert provider.check(Secret(value)).state is Liveness.UNKNOWN
    assert len(sleeps) == waits
    assert provider.check(Secret(value)).state is Liveness.LIVE


def test_check_is_unknown_when_the_network_is_down(make_provider):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    provider = make_provider(transport=httpx.MockTransport(refuse))
    assert provider.check(Secret(new_key_value())).state is Liveness.UNKNOWN


def test_check_reads_only_401_authentication_error_as_dead(provider, emulator):
    _, value = emulator.add_key()
    emulator.fail_next("GET", "/v1/models", status=401)
    assert provider.check(Secret(value)).state is Liveness.DEAD


@pytest.mark.parametrize(("status", "kind"), [(403, "permission_error"), (404, "not_found_error")])
def test_check_reads_403_and_404_as_unknown_with_the_reason(provider, emulator, status, kind):
    _, value = emulator.add_key()
    emulator.fail_next("GET", "/v1/models", status=status)
    verdict = provider.check(Secret(value))
    assert verdict.state is Liveness.UNKNOWN and kind in verdict.reason and verdict.status == status


def test_check_of_a_disabled_key_answering_404_is_unknown_not_dead(make_provider, emulator):
    emulator.dead_key_status = 404  # what trufflehog reports seeing; Anthropic documents 401
    _, value = emulator.add_key(status="inactive")
    assert make_provider().check(Secret(value)).state is Liveness.UNKNOWN


def test_check_of_a_key_of_a_forbidden_workspace_is_unknown_never_dead(provider, emulator):
    _, value = emulator.add_key(workspace_id=emulator.add_workspace("locked", forbidden=True))
    verdict = provider.check(Secret(value))
    assert verdict.state is Liveness.UNKNOWN and "403" in verdict.reason and "permission_error" in verdict.reason


def test_check_of_an_admin_key_uses_the_admin_api(provider, emulator, admin_key):
    assert provider.check(Secret(admin_key)).state is Liveness.LIVE
    assert provider.check(Secret(new_key_value("admin01"))).state is Liveness.DEAD
    assert all(call.params.get("limit") == "1" for call in emulator.calls("GET", KEYS))
    assert emulator.calls("GET", "/v1/models") == []


def test_every_request_sends_the_version_and_the_key(provider, emulator, admin_key):
    _, value = emulator.add_key()
    provider.check(Secret(value))
    provider.revoke(provider.identify(Secret(value)))
    assert {r.headers["anthropic-version"] for r in emulator.requests} == {"2023-06-01"}
    check, *admin_calls = emulator.requests
    assert check.headers["x-api-key"] == value
    assert {r.headers["x-api-key"] for r in admin_calls} == {admin_key}
    assert all("authorization" not in r.headers for r in emulator.requests)


def test_mint_asks_a_person_for_the_replacement(provider, emulator):
    workspace = emulator.add_workspace("prod")
    key_id, value = emulator.add_key(workspace_id=workspace)
    like = provider.identify(Secret(value))

    with pytest.raises(ManualStepRequired) as caught:
        provider.mint(like, "cauterize-replacement")

    message = caught.value.one_line()
    assert workspace in message and key_id in message and "Settings -> API keys" in message
    assert "paste" in message and value not in message
    assert emulator.calls("POST") == []


def test_usage_sums_every_page_for_this_key_only(provider, emulator, clock):
    key_id, value = emulator.add_key()
    other_id, _ = emulator.add_key()
    start = clock.now - timedelta(days=10)
    emulator.add_usage(
        key_id, start, clock.now, 3600, 100, 50, cache_creation_input_tokens=7, cache_read_input_tokens=3
    )
    emulator.add_usage(other_id, start, clock.now, 3600, 9999, 9999)
    identity = provider.identify(Secret(value))

    usage = provider.usage(identity, start, clock.now, "1h")

    assert len(usage.buckets) == 240
    assert sum(b.input_tokens for b in usage.buckets) == 240 * (100 + 7 + 3)
    assert sum(b.output_tokens for b in usage.buckets) == 240 * 50
    assert {b.requests for b in usage.buckets} == {0} and {b.cost_usd for b in usage.buckets} == {None}
    assert usage.buckets[0].start == start and usage.buckets[-1].end == clock.now
    pages = emulator.calls("GET", USAGE)
    assert len(pages) == 2 and pages[0].params.get("page") is None and pages[1].params.get("page")
    assert pages[0].params.getlist("api_key_ids") == [key_id] and "api_key_ids%5B%5D=" in pages[0].query
    assert pages[0].params.getlist("group_by") == ["api_key_id"] and pages[0].params.get("limit") == "168"
    assert any("cost report cannot be grouped by API key" in line for line in usage.limitations)
    assert any("requests" in line for line in usage.limitations)


def test_usage_says_when_there_is_none(provider, emulator, clock):
    key_id, _ = emulator.add_key()
    usage = provider.usage(KeyIdentity("anthropic", key_id), clock.now - timedelta(days=3), clock.now, "1d")
    assert usage.limitations[0].startswith(f"Anthropic reported no Messages usage for {key_id}")
    assert sum(b.input_tokens for b in usage.buckets) == 0
    with pytest.raises(InputError):
        provider.usage(KeyIdentity("anthropic", key_id), clock.now - timedelta(days=1), clock.now, "1w")


def test_the_registry_builds_the_provider(emulator, admin_key):
    settings = ProviderSettings(admin_key=Secret(admin_key), transport=httpx.MockTransport(emulator))
    provider = get_provider("anthropic", settings)
    try:
        assert isinstance(provider, AnthropicProvider)
        assert admin_key not in repr(provider) and admin_key not in repr(settings.admin_key)
    finally:
        provider.close()


def test_the_whole_cycle_over_a_real_socket(emulator, admin_key, sleeps, clock):
    for index in range(30):
        emulator.add_key(name=f"key-{index}")
    key_id, value = emulator.add_key(name="leaked")
    emulator.add_usage(key_id, clock.now - timedelta(hours=2), clock.now, 60, 5, 5)
    leaked = Secret(value)
    emulator.fail_next("POST", f"{KEYS}/*", status=429, retry_after=1)

    with serve(emulator) as app:
        provider = AnthropicProvider(
            ProviderSettings(admin_key=Secret(admin_key), base_url=app.url), sleep=sleeps.append
        )
        try:
            assert provider.check(leaked).state is Liveness.LIVE
            identity = provider.identify(leaked)
            assert provider.revoke(identity).action == "deactivated-key"
            assert provider.check(leaked).state is Liveness.DEAD
            usage = provider.usage(identity, clock.now - timedelta(hours=2), clock.now, "1h")
            assert sum(b.output_tokens for b in usage.buckets) == 120 * 5
            with pytest.raises(ManualStepRequired):
                provider.mint(identity, "replacement")
        finally:
            provider.close()

    assert sleeps == [1.0] and len(emulator.updates) == 1
    assert emulator.calls("GET", "/v1/models")[0].headers["host"].startswith("127.0.0.1:")
