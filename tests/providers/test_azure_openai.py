"""The azure-openai provider against the Azure OpenAI emulator: through MockTransport and over a real socket.

Keys, tokens and subscription ids are generated at run time. The fixtures here shadow the OpenAI
ones of ``conftest.py`` (``clock`` and ``sleeps`` are shared).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest

from cauterize.errors import AdminAuthError, InputError, KeyNotFound, ManualStepRequired, ProviderRejected
from cauterize.providers.azure_openai import API_VERSION, DATA_API_VERSION, METRICS_API_VERSION, AzureOpenAIProvider
from cauterize.providers.base import KeyIdentity, Liveness, ProviderSettings, get_provider
from cauterize.sandbox.azure_openai import AzureOpenAIEmulator, new_key_value
from cauterize.sandbox.server import serve
from cauterize.secret import Secret

READ_ONLY = {"Microsoft.CognitiveServices/accounts/read"}


@pytest.fixture
def emulator(clock) -> AzureOpenAIEmulator:
    return AzureOpenAIEmulator(now=clock, page_size=10)


@pytest.fixture
def token(emulator) -> str:
    return emulator.add_admin_token()


@pytest.fixture
def sub() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def make_provider(emulator, token, sub, sleeps):
    """``make_provider(**settings)``: the azure-openai provider on the emulator, closed after the test."""
    made: list[AzureOpenAIProvider] = []

    def make(environ: dict[str, str] | None = None, **overrides) -> AzureOpenAIProvider:
        fields = {
            "admin_key": Secret(token),
            "subscription": sub,
            "data_url": "https://sandbox.openai.azure.com",
            "transport": httpx.MockTransport(emulator),
            **overrides,
        }
        provider = AzureOpenAIProvider(ProviderSettings(**fields), sleep=sleeps.append, environ=environ or {})
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider) -> AzureOpenAIProvider:
    return make_provider()


def resource_id(sub: str, group: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"


def regenerations(emulator: AzureOpenAIEmulator) -> list[dict]:
    """The Activity Log's regenerateKey entries (listKeys is logged there too)."""
    return [e for e in emulator.activity_log if e["operationName"]["value"].endswith("/regenerateKey/action")]


def assert_every_request_has_one_api_version(emulator: AzureOpenAIEmulator) -> None:
    for request in emulator.requests:
        versions = request.params.get_list("api-version")
        if request.path.startswith("/openai/v1/"):
            assert versions == [], "the v1 API takes no dated api-version"
            continue
        expected = (
            DATA_API_VERSION
            if request.path.startswith("/openai/")
            else METRICS_API_VERSION
            if request.path.endswith("/metrics")
            else API_VERSION
        )
        assert versions == [expected], f"{request.method} {request.path}"


def test_identify_finds_the_slot_across_accounts_and_pages(provider, emulator, sub):
    for index in range(24):
        emulator.add_account(sub, f"rg-{index % 3}", f"acct-{index:02}")
    _, key2 = emulator.add_account(sub, "rg-1", "leaky")
    emulator.add_account(str(uuid.uuid4()), "rg-1", "other-subscription")

    identity = provider.identify(Secret(key2))

    assert identity.key_id == "Key2"
    assert identity.project == resource_id(sub, "rg-1", "leaky")
    assert (identity.provider, identity.owner_type, identity.owner_id) == ("azure-openai", "account", "leaky")
    assert key2 not in repr(identity) and key2 not in " ".join(identity.notes)
    assert len(emulator.calls("GET", f"/subscriptions/{sub}/providers/*")) == 3  # every page was read
    assert len(emulator.calls("POST", "*/listKeys")) == 25
    assert_every_request_has_one_api_version(emulator)


def test_identify_within_a_resource_group(make_provider, emulator, sub):
    emulator.add_account(sub, "rg-a", "first")
    key1, _ = emulator.add_account(sub, "rg-b", "second")
    identity = make_provider(resource_group="rg-b").identify(Secret(key1))
    assert (identity.key_id, identity.owner_id) == ("Key1", "second")
    assert [c.path for c in emulator.calls("POST", "*/listKeys")] == [resource_id(sub, "rg-b", "second") + "/listKeys"]


def test_a_pinned_account_is_read_without_listing(make_provider, emulator, sub):
    emulator.add_account(sub, "rg", "noise")
    key1, _ = emulator.add_account(sub, "rg", "pinned")
    identity = make_provider(resource_group="rg", account="pinned").identify(Secret(key1))
    assert identity.project == resource_id(sub, "rg", "pinned")
    assert [c.method for c in emulator.requests] == ["POST"]


def test_identify_unknown_key_raises_key_not_found(provider, emulator, sub):
    emulator.add_account(sub, "rg", "acct")
    leaked = Secret(new_key_value())
    with pytest.raises(KeyNotFound) as caught:
        provider.identify(leaked)
    assert leaked.fingerprint in str(caught.value) and leaked.reveal() not in caught.value.one_line()


def test_identify_skips_an_account_it_cannot_read_but_says_so(provider, emulator, sub):
    emulator.add_account(sub, "rg", "locked", disable_local_auth=True)
    key1, _ = emulator.add_account(sub, "rg", "open")
    identity = provider.identify(Secret(key1))
    assert identity.owner_id == "open" and "locked" in identity.notes[-1]


def test_revoke_regenerates_exactly_that_slot(provider, emulator, sub):
    key1, key2 = emulator.add_account(sub, "rg", "acct")
    leaked = Secret(key1)
    assert provider.check(leaked).state is Liveness.LIVE

    result = provider.revoke(provider.identify(leaked))

    assert result.action == "regenerated-key"
    assert provider.check(leaked).state is Liveness.DEAD
    assert provider.check(Secret(key2)).state is Liveness.LIVE and emulator.accounts["acct"].key2 == key2
    (regenerate,) = emulator.calls("POST", "*/regenerateKey")
    assert json.loads(regenerate.body) == {"keyName": "Key1"}
    (item,) = result.action_items
    assert "no per-key disable" in item and "Key2" in item
    assert emulator.accounts["acct"].key1 not in item
    assert_every_request_has_one_api_version(emulator)


def test_a_429_on_regenerate_is_retried_once_and_regenerates_once(provider, emulator, sub, sleeps):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    identity = provider.identify(Secret(key1))
    emulator.fail_next("POST", "*/regenerateKey", status=429, retry_after=1)

    result = provider.revoke(identity)

    assert result.action == "regenerated-key"
    assert sleeps == [1.0]
    assert len(emulator.calls("POST", "*/regenerateKey")) == 2
    assert len(regenerations(emulator)) == 1  # regenerated exactly once
    assert not emulator.is_live(key1)


@pytest.mark.parametrize("wrong", ["unknown token", "read-only token"])
def test_a_rejected_token_raises_admin_auth_error_on_one_line(make_provider, emulator, sub, wrong):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    bad = "not-a-token-" + uuid.uuid4().hex if wrong == "unknown token" else emulator.add_admin_token(actions=READ_ONLY)
    provider = make_provider(admin_key=Secret(bad), resource_group="rg", account="acct")

    with pytest.raises(AdminAuthError) as caught:
        provider.identify(Secret(key1))

    error = caught.value
    text = " ".join([str(error), repr(error), error.remediation, error.one_line()])
    assert "the Azure management token was rejected (40" in str(error)
    assert "\n" not in error.one_line()
    assert bad not in text and key1 not in text
    assert "listKeys/action" in error.remediation and "regenerateKey/action" in error.remediation


def test_a_sweep_that_can_read_no_account_reports_the_auth_error(make_provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    provider = make_provider(admin_key=Secret(emulator.add_admin_token(actions=READ_ONLY)))
    with pytest.raises(AdminAuthError, match="AuthorizationFailed"):
        provider.identify(Secret(key1))


def test_missing_token_is_an_input_error_but_check_still_works(make_provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    provider = make_provider(admin_key=None)
    assert provider.check(Secret(key1)).state is Liveness.LIVE
    with pytest.raises(InputError, match="AZURE_MANAGEMENT_TOKEN"):
        provider.identify(Secret(key1))


def test_settings_fall_back_to_the_azure_environment(make_provider, emulator, token):
    sub = str(uuid.uuid4())
    key1, _ = emulator.add_account(sub, "rg-env", "acct-env")
    environ = {
        "AZURE_MANAGEMENT_TOKEN": token,
        "AZURE_SUBSCRIPTION_ID": sub,
        "AZURE_RESOURCE_GROUP": "rg-env",
        "AZURE_OPENAI_ACCOUNT": "acct-env",
    }
    provider = make_provider(environ=environ, admin_key=None, subscription=None, data_url=None)
    assert provider.identify(Secret(key1)).owner_id == "acct-env"
    assert provider.check(Secret(key1)).state is Liveness.LIVE
    assert emulator.calls("GET", "/openai/models")[-1].url.startswith("https://acct-env.openai.azure.com/")


def test_check_asks_the_identified_account_when_no_endpoint_is_set(make_provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "found-it")
    provider = make_provider(data_url=None)
    with pytest.raises(InputError, match="endpoint"):
        provider.check(Secret(key1))
    provider.identify(Secret(key1))
    assert provider.check(Secret(key1)).state is Liveness.LIVE
    assert emulator.calls("GET", "/openai/models")[-1].url.startswith("https://found-it.openai.azure.com/")


def test_check_is_unknown_on_500_and_never_reads_as_dead(provider, emulator, sub, sleeps):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    emulator.fail_next("GET", "/openai/models", status=500, count=4)
    assert provider.check(Secret(key1)).state is Liveness.UNKNOWN
    assert len(sleeps) == 3
    assert provider.check(Secret(key1)).state is Liveness.LIVE


def test_check_403_is_unknown_also_when_key_auth_is_off(provider, emulator, sub):
    # Key authentication turned off is reversible (learn.microsoft.com/azure/ai-services/disable-local-auth,
    # "Re-enable local authentication"): the key is not revoked, so it is not dead either.
    key1, _ = emulator.add_account(sub, "rg", "acct")
    emulator.fail_next("GET", "/openai/models", status=403, message="Access denied due to Virtual Network rules.")
    assert provider.check(Secret(key1)).state is Liveness.UNKNOWN
    emulator.accounts["acct"].disable_local_auth = True
    verdict = provider.check(Secret(key1))
    assert verdict.state is Liveness.UNKNOWN and "AuthenticationTypeDisabled" in verdict.reason


def test_check_uses_the_ga_models_route_and_falls_back_to_v1(make_provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    assert make_provider().check(Secret(key1)).state is Liveness.LIVE
    (ga,) = emulator.calls("GET", "/openai/models")
    assert ga.params.get("api-version") == DATA_API_VERSION == "2024-10-21" and ga.headers["api-key"] == key1
    assert not emulator.calls("GET", "/openai/v1/models")

    emulator.data_api_versions = frozenset({"2025-04-01-preview"})  # a data plane that no longer serves 2024-10-21
    assert make_provider().check(Secret(key1)).state is Liveness.LIVE
    (v1,) = emulator.calls("GET", "/openai/v1/models")
    assert "api-version" not in v1.params and v1.headers["api-key"] == key1


def test_check_is_unknown_when_the_network_is_down(make_provider):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    provider = make_provider(transport=httpx.MockTransport(refuse))
    assert provider.check(Secret(new_key_value())).state is Liveness.UNKNOWN


def test_mint_after_revoke_returns_the_regenerated_value(provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    result = provider.revoke(provider.identify(Secret(key1)))
    calls_before = len(emulator.requests)

    minted = provider.mint(result.identity, "cauterize-replacement")

    assert minted.secret.reveal() == emulator.accounts["acct"].key1
    assert len(emulator.requests) == calls_before  # nothing regenerated or listed again
    assert minted.identity.key_id == "Key1" and minted.identity.project == result.identity.project
    assert provider.check(minted.secret).state is Liveness.LIVE
    assert minted.secret.reveal() not in repr(minted)


def test_mint_in_a_later_process_reads_the_replacement_without_regenerating(make_provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    first = make_provider()
    identity = first.identify(Secret(key1))
    first.revoke(identity)
    stored = KeyIdentity.from_dict(identity.to_dict())  # as read back from the incident record

    minted = make_provider().mint(stored, "replacement")

    assert minted.secret.reveal() == emulator.accounts["acct"].key1
    assert len(regenerations(emulator)) == 1


def test_mint_before_revoke_asks_a_person(provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    identity = provider.identify(Secret(key1))
    with pytest.raises(ManualStepRequired, match="still holds the leaked key"):
        provider.mint(identity, "replacement")
    assert not regenerations(emulator)


def test_usage_is_account_wide_and_says_so(provider, emulator, sub, clock):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    emulator.add_account(sub, "rg", "other")
    start = clock.now - timedelta(hours=6)
    emulator.add_metrics("acct", start, clock.now, 600, prompt_tokens=100, generated_tokens=20, requests=3)
    emulator.add_metrics("other", start, clock.now, 600, prompt_tokens=9999, generated_tokens=9999, requests=99)
    identity = provider.identify(Secret(key1))

    usage = provider.usage(identity, start, clock.now, "1h")

    assert len(usage.buckets) == 6
    assert {(b.input_tokens, b.output_tokens, b.requests) for b in usage.buckets} == {(600, 120, 18)}
    assert usage.buckets[0].end - usage.buckets[0].start == timedelta(hours=1)
    assert "no per-key dimension" in usage.limitations[0] and "whole account acct" in usage.limitations[0]
    (metrics,) = emulator.calls("GET", "*/providers/Microsoft.Insights/metrics")
    assert metrics.params["interval"] == "PT1H" and metrics.params["aggregation"] == "Total"
    assert metrics.params["metricnames"] == "ProcessedPromptTokens,GeneratedTokens,AzureOpenAIRequests"
    assert_every_request_has_one_api_version(emulator)


def test_a_next_link_to_another_host_is_not_followed(make_provider, token):
    seen: list[str] = []

    def arm(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.host))
        return httpx.Response(200, json={"value": [], "nextLink": "https://elsewhere.example/subscriptions/x"})

    provider = make_provider(transport=httpx.MockTransport(arm))
    with pytest.raises(ProviderRejected, match="another host"):
        provider.identify(Secret(new_key_value()))
    assert seen == ["management.azure.com"]


def test_the_registry_builds_the_provider(emulator, token):
    settings = ProviderSettings(admin_key=Secret(token), transport=httpx.MockTransport(emulator))
    provider = get_provider("azure-openai", settings)
    try:
        assert isinstance(provider, AzureOpenAIProvider)
        assert token not in repr(provider)
    finally:
        provider.close()


def test_the_whole_cycle_over_a_real_socket(emulator, token, sub, sleeps):
    for index in range(10):
        emulator.add_account(sub, "rg", f"acct-{index:02}")
    _, key2 = emulator.add_account(sub, "rg", "leaky")  # on the second page
    leaked = Secret(key2)
    emulator.fail_next("POST", "*/regenerateKey", status=429, retry_after=1)

    with serve(emulator) as app:
        settings = ProviderSettings(admin_key=Secret(token), base_url=app.url, data_url=app.url, subscription=sub)
        provider = AzureOpenAIProvider(settings, sleep=sleeps.append, environ={})
        try:
            assert provider.check(leaked).state is Liveness.LIVE
            result = provider.revoke(provider.identify(leaked))
            assert provider.check(leaked).state is Liveness.DEAD
            minted = provider.mint(result.identity, "replacement")
            assert provider.check(minted.secret).state is Liveness.LIVE
            assert provider.check(Secret(emulator.accounts["leaky"].key1)).state is Liveness.LIVE
        finally:
            provider.close()

    assert sleeps == [1.0] and len(regenerations(emulator)) == 1
    assert emulator.calls("GET", "/subscriptions/*")[1].headers["host"].startswith("127.0.0.1:")  # the nextLink
    assert_every_request_has_one_api_version(emulator)


def test_mint_without_the_leaked_fingerprint_does_not_guess(provider, emulator, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    bare = KeyIdentity("azure-openai", "Key1", resource_id(sub, "rg", "acct"), "account", "acct")
    with pytest.raises(ManualStepRequired, match="may still hold the leaked key"):
        provider.mint(bare, "replacement")
    assert emulator.is_live(key1) and not regenerations(emulator)


def test_a_401_for_a_key_the_account_still_holds_is_unknown_not_dead(make_provider, emulator, sub):
    """Azure's 401 reads "invalid subscription key or wrong API endpoint": a data_url pointing at
    another resource answers 401 for a live key. Where the pinned account's keys can be read, a key
    one of its slots still holds is unknown; once the slot is regenerated, the same 401 is dead."""
    key1, _ = emulator.add_account(sub, "rg", "acct")
    wrong_endpoint = {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong "
                                "API endpoint. Make sure to provide a valid key for an active subscription and use "
                                "a correct regional API endpoint for your resource."}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/openai/"):
            return httpx.Response(401, json=wrong_endpoint)
        return emulator(request)

    provider = make_provider(transport=httpx.MockTransport(handler), account="acct", resource_group="rg")
    verdict = provider.check(Secret(key1))
    assert verdict.state is Liveness.UNKNOWN and "still holds this key in Key1" in verdict.reason
    assert key1 not in verdict.reason
    provider.revoke(provider.identify(Secret(key1)))
    after = provider.check(Secret(key1))
    assert after.state is Liveness.DEAD and "no slot of the account holds it" in after.reason
    unpinned = make_provider(transport=httpx.MockTransport(handler), admin_key=None)
    assert unpinned.check(Secret(emulator.accounts["acct"].key2)).state is Liveness.DEAD, \
        "without the account's keys, the data plane's documented 401 is all there is"
