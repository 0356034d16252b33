"""Every provider client under the faults a real API produces, one matrix over the five providers.

Each organisation is the provider's emulator, reached through a switch: healthy, the key is
identified; then every answer is the fault. Identify, check and revoke must end in a CauterizeError
with a remediation (never a raw httpx/json exception, never a hang), after bounded retries and
bounded waits; a liveness check is never "dead" on a fault; and nothing was done at the provider
(the key is still live once the fault clears)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from cauterize.errors import CauterizeError
from cauterize.providers.anthropic import AnthropicProvider
from cauterize.providers.azure_openai import AzureOpenAIProvider
from cauterize.providers.base import ProviderSettings
from cauterize.providers.cohere import CohereProvider
from cauterize.providers.google import GoogleProvider
from cauterize.providers.openai import OpenAIProvider
from cauterize.sandbox.anthropic import AnthropicEmulator
from cauterize.sandbox.azure_openai import AzureOpenAIEmulator
from cauterize.sandbox.cohere import CohereEmulator
from cauterize.sandbox.google import GoogleEmulator
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.secret import Secret

FAULTS = ["timeout", "reset", "429-retry-after", "429-no-retry-after", "500", "502", "503", "malformed",
          "empty-page-has-more"]
ERRORS = FAULTS[:7]  # answers no client may read as success


@dataclass
class Org:
    """One provider's emulator behind a switch, its settings and the leaked key."""

    name: str
    app: Callable[[httpx.Request], httpx.Response]
    settings: dict
    key: str
    is_live: Callable[[], bool]
    fault: str | None = None
    faulted: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fault is None:
            return self.app(request)
        self.faulted.append(request)
        return _fault(self.fault, request)


def _fault(fault: str, request: httpx.Request) -> httpx.Response:
    if fault == "timeout":
        raise httpx.ReadTimeout("timed out", request=request)
    if fault == "reset":
        raise httpx.RemoteProtocolError("connection reset by peer", request=request)
    if fault.startswith("429"):
        headers = {"retry-after": "2"} if fault == "429-retry-after" else {}
        return httpx.Response(429, json={"error": {"message": "slow down", "type": "rate_limit_error"}},
                              headers=headers)
    if fault in ("500", "502", "503"):
        return httpx.Response(int(fault), json={"error": {"message": "boom", "type": "server_error"}})
    if fault == "malformed":
        return httpx.Response(200, content=b"<html>gateway</html>", headers={"content-type": "text/html"})
    # an empty page that claims more, in every provider's paging shape, pointing back at itself
    return httpx.Response(200, json={"object": "list", "data": [], "has_more": True, "first_id": None,
                                     "last_id": None, "value": [], "nextLink": str(request.url), "keys": [],
                                     "nextPageToken": "again", "api_keys": []})


def _openai() -> Org:
    emulator = OpenAIEmulator()
    admin = emulator.add_admin_key()
    _, key = emulator.add_user_key(emulator.add_project("prod"))
    return Org("openai", emulator, {"admin_key": Secret(admin)}, key, lambda: emulator.is_live(key))


def _anthropic() -> Org:
    emulator = AnthropicEmulator()
    admin = emulator.add_admin_key()
    _, key = emulator.add_key()
    return Org("anthropic", emulator, {"admin_key": Secret(admin)}, key, lambda: emulator.is_live(key))


def _cohere() -> Org:
    emulator = CohereEmulator()
    key = emulator.add_key()
    return Org("cohere", emulator, {}, key, lambda: emulator.is_live(key))


def _google() -> Org:
    emulator = GoogleEmulator()
    token = emulator.add_admin_token()
    account = emulator.add_service_account("vertex-prod", "vertex-caller")
    _, credentials = emulator.add_key("vertex-prod", account)
    return Org("google", emulator, {"admin_key": Secret(token)}, credentials, lambda: emulator.is_live(credentials))


def _azure() -> Org:
    emulator = AzureOpenAIEmulator()
    token = emulator.add_admin_token()
    subscription = str(uuid.uuid4())
    key1, _ = emulator.add_account(subscription, "rg", "acct")
    settings = {"admin_key": Secret(token), "subscription": subscription,
                "data_url": "https://sandbox.openai.azure.com"}
    return Org("azure-openai", emulator, settings, key1, lambda: emulator.is_live(key1))


CLASSES = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "cohere": CohereProvider,
           "google": GoogleProvider, "azure-openai": AzureOpenAIProvider}
ORGS = {"openai": _openai, "anthropic": _anthropic, "cohere": _cohere, "google": _google, "azure-openai": _azure}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", sorted(ORGS))
def test_faults_end_in_a_clean_error_and_change_nothing(name, fault):
    org = ORGS[name]()
    sleeps: list[float] = []
    provider = CLASSES[name](ProviderSettings(transport=httpx.MockTransport(org), **org.settings),
                             sleep=sleeps.append)
    try:
        identity = provider.identify(Secret(org.key))
        org.fault = fault
        try:
            provider.identify(Secret(org.key))
        except CauterizeError as exc:
            _clean(exc, org)
        else:
            assert not org.faulted and fault not in ERRORS, "an identity read through a fault"
        state = provider.check(Secret(org.key))
        assert state.value != "dead", "a fault is never read as a revoked key"
        if fault in ERRORS:
            assert state.value == "unknown"
            with pytest.raises(CauterizeError) as raised:
                provider.revoke(identity)
            _clean(raised.value, org)
    finally:
        provider.close()
    assert len(org.faulted) <= 40, f"{len(org.faulted)} requests: retries are bounded"
    assert sum(sleeps) <= 120, f"waited {sum(sleeps)} s in all"
    org.fault = None
    assert org.is_live(), "nothing was done at the provider"


def _clean(exc: CauterizeError, org: Org) -> None:
    assert exc.remediation, f"{type(exc).__name__} without a remediation"
    text = f"{exc} {exc.remediation}"
    assert org.key not in text and "Traceback" not in text
    for value in org.settings.values():
        if isinstance(value, Secret):
            assert value.reveal() not in text
