"""Every provider client under the faults a real API produces: each ends in a CauterizeError with a
remediation (never a raw httpx/json exception, never a hang), after bounded retries."""

import httpx
import pytest

from cauterize.errors import CauterizeError
from cauterize.providers.anthropic import AnthropicProvider
from cauterize.providers.base import ProviderSettings
from cauterize.providers.cohere import CohereProvider
from cauterize.providers.openai import OpenAIProvider
from cauterize.secret import Secret

PROVIDERS = {
    "openai": ("sk-proj-", "sk-admin-"),
    "anthropic": ("sk-ant-api03-", "sk-ant-admin01-"),
    "cohere": ("", ""),
}


CLASSES = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "cohere": CohereProvider}


def _handler(fault):
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if fault == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if fault == "reset":
            raise httpx.RemoteProtocolError("connection reset by peer", request=request)
        if fault == "500":
            return httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
        if fault == "429-no-retry-after":
            return httpx.Response(429, json={"error": {"message": "slow down", "type": "rate_limit_error"}})
        if fault == "malformed":
            return httpx.Response(200, content=b"<html>gateway</html>", headers={"content-type": "text/html"})
        if fault == "empty-page-has-more":
            return httpx.Response(200, json={"object": "list", "data": [], "has_more": True, "first_id": None,
                                             "last_id": None})
        raise AssertionError(fault)

    return handle, calls


@pytest.mark.parametrize("name", sorted(PROVIDERS))
@pytest.mark.parametrize("fault", ["timeout", "reset", "500", "429-no-retry-after", "malformed", "empty-page-has-more"])
def test_identify_fails_cleanly(name, fault, make_key):
    key_prefix, admin_prefix = PROVIDERS[name]
    handler, calls = _handler(fault)
    settings = ProviderSettings(admin_key=Secret(make_key(admin_prefix or "a")), transport=httpx.MockTransport(handler),
                                base_url="https://provider.invalid")
    provider = CLASSES[name](settings, sleep=lambda seconds: None)
    key = make_key(key_prefix or "k")
    try:
        try:
            provider.identify(key=Secret(key))
        except CauterizeError as exc:
            assert exc.remediation and key not in str(exc)
        state = provider.check(Secret(key))
        # never "dead" on a fault: a 200 of garbage may read as live (conservative), never as revoked
        assert state.value in ("unknown", "live") if fault in ("malformed", "empty-page-has-more") else state.value == "unknown"
    finally:
        provider.close()
    assert len(calls) < 40, "bounded retries"
