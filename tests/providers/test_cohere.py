"""The cohere provider against the Cohere emulator: through MockTransport and over a real socket.

Keys are generated at run time. The fixtures here shadow the OpenAI ones of ``conftest.py``
(``sleeps`` is shared).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.errors import KeyNotFound, ManualStepRequired
from cauterize.providers.base import KeyIdentity, Liveness, ProviderSettings, Usage, get_provider
from cauterize.providers.cohere import CohereProvider
from cauterize.sandbox.cohere import CohereEmulator, new_key_value
from cauterize.sandbox.server import serve
from cauterize.secret import Secret

ROUTE = "/v1/check-api-key"


@pytest.fixture
def emulator() -> CohereEmulator:
    return CohereEmulator()


@pytest.fixture
def make_provider(emulator, sleeps):
    made: list[CohereProvider] = []

    def make(**overrides) -> CohereProvider:
        settings = ProviderSettings(**{"transport": httpx.MockTransport(emulator), **overrides})
        provider = CohereProvider(settings, sleep=sleeps.append)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider) -> CohereProvider:
    return make_provider()


def test_check_live_then_dead_once_a_person_revokes_it(provider, emulator):
    value = emulator.add_key()
    assert provider.check(Secret(value)).state is Liveness.LIVE
    emulator.revoke_key(value)
    assert provider.check(Secret(value)).state is Liveness.DEAD
    (first, _) = emulator.calls("POST", ROUTE)
    assert first.headers["authorization"] == f"Bearer {value}"


def test_check_of_a_key_cohere_never_issued_is_dead(provider):
    assert provider.check(Secret(new_key_value())).state is Liveness.DEAD


def test_check_is_unknown_on_500_and_never_reads_as_dead(provider, emulator, sleeps):
    value = emulator.add_key()
    emulator.fail_next("POST", ROUTE, status=500, count=4)
    assert provider.check(Secret(value)).state is Liveness.UNKNOWN
    assert len(sleeps) == 3
    assert provider.check(Secret(value)).state is Liveness.LIVE


def test_check_is_unknown_when_the_network_is_down(make_provider):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert make_provider(transport=httpx.MockTransport(refuse)).check(Secret(new_key_value())).state is Liveness.UNKNOWN


def test_a_429_is_retried_after_retry_after(provider, emulator, sleeps):
    value = emulator.add_key()
    emulator.fail_next("POST", ROUTE, status=429, retry_after=2)
    assert provider.check(Secret(value)).state is Liveness.LIVE
    assert sleeps == [2.0] and len(emulator.calls("POST", ROUTE)) == 2


def test_identify_names_the_organisation_and_owner(provider, emulator):
    value = emulator.add_key()
    leaked = Secret(value)

    identity = provider.identify(leaked)

    assert identity.provider == "cohere" and identity.key_id is None
    assert (identity.project, identity.owner_type, identity.owner_id) == (
        emulator.organization_id,
        "user",
        emulator.owner_id,
    )
    notes = " ".join(identity.notes)
    assert leaked.redacted in notes and value not in notes and "dashboard.cohere.com" in notes
    assert KeyIdentity.from_dict(identity.to_dict()) == identity


def test_identify_a_revoked_key_raises_key_not_found(provider, emulator):
    value = emulator.add_key()
    emulator.revoke_key(value)
    with pytest.raises(KeyNotFound) as caught:
        provider.identify(Secret(value))
    assert value not in caught.value.one_line() and Secret(value).fingerprint in str(caught.value)


def test_revoke_and_mint_are_manual_steps_with_instructions(provider, emulator):
    value = emulator.add_key()
    identity = provider.identify(Secret(value))

    with pytest.raises(ManualStepRequired) as revoke:
        provider.revoke(identity)
    with pytest.raises(ManualStepRequired) as mint:
        provider.mint(identity, "cauterize-replacement")

    assert "dashboard.cohere.com/api-keys" in str(revoke.value) and "co key revoke" in str(revoke.value)
    assert "co key create" in str(mint.value) and "cauterize-replacement" in str(mint.value)
    assert revoke.value.exit_code == 3 and value not in revoke.value.one_line() + mint.value.one_line()
    assert emulator.is_live(value)  # nothing was done behind the responder's back


def test_usage_says_there_is_no_per_key_api(provider, emulator):
    identity = provider.identify(Secret(emulator.add_key()))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert provider.usage(identity, now - timedelta(days=1), now, "1h") == Usage(
        (), ("Cohere has no usage API per key",)
    )


def test_the_registry_builds_the_provider(emulator):
    provider = get_provider("cohere", ProviderSettings(transport=httpx.MockTransport(emulator)))
    try:
        assert isinstance(provider, CohereProvider) and "api.cohere.com" in repr(provider)
    finally:
        provider.close()


def test_live_then_dead_over_a_real_socket(emulator, sleeps):
    value = emulator.add_key()
    emulator.fail_next("POST", ROUTE, status=429, retry_after=1)
    with serve(emulator) as app:
        provider = CohereProvider(ProviderSettings(base_url=app.url), sleep=sleeps.append)
        try:
            assert provider.check(Secret(value)).state is Liveness.LIVE
            assert provider.identify(Secret(value)).project == emulator.organization_id
            emulator.revoke_key(value)
            assert provider.check(Secret(value)).state is Liveness.DEAD
        finally:
            provider.close()
    assert sleeps == [1.0]
    assert emulator.calls("POST", ROUTE)[0].headers["host"].startswith("127.0.0.1:")
