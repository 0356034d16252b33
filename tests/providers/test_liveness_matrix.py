"""Liveness fails closed, for every provider: one table of answers and the verdict each must give.

Each row is ``(family, answer, handler, expected)``: ``handler`` is an ``httpx.MockTransport``
handler that gives the canned answer (or raises the transport failure) to every request, and the
provider's real client code reads it. Dead only on the provider's documented invalid-credential
answer; everything else (403, 404, 429 after retries, 5xx, timeouts, resets, TLS failures, odd or
empty 200s, redirects) is unknown, with a reason that names no key value (DESIGN.md section 2).
The canned bodies follow the providers' documentation; where a provider echoes the key in its
message, the canned message carries the whole key, so masking is tested too. Retries wait through
the injected ``sleep``: nothing really sleeps.

The end-to-end rows at the bottom run the same providers against the sandbox emulators.

Keys are generated at run time by the emulators' generators; no key-shaped literal is committed.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pytest

from cauterize.providers.anthropic import AnthropicProvider
from cauterize.providers.azure_openai import DATA_API_VERSION, AzureOpenAIProvider
from cauterize.providers.base import Liveness, ProviderSettings
from cauterize.providers.cohere import CohereProvider
from cauterize.providers.google import GoogleProvider
from cauterize.providers.openai import OpenAIProvider
from cauterize.sandbox import anthropic as anthropic_sandbox
from cauterize.sandbox import azure_openai as azure_sandbox
from cauterize.sandbox import cohere as cohere_sandbox
from cauterize.sandbox import openai as openai_sandbox
from cauterize.sandbox.anthropic import AnthropicEmulator
from cauterize.sandbox.azure_openai import AzureOpenAIEmulator
from cauterize.sandbox.cohere import CohereEmulator
from cauterize.sandbox.google import GoogleEmulator, new_api_key_value
from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.secret import Secret

LIVE, DEAD, UNKNOWN = Liveness.LIVE, Liveness.DEAD, Liveness.UNKNOWN
Handler = Callable[[httpx.Request], httpx.Response]
AZURE_ENDPOINT = "https://contoso.openai.azure.com"


# ---- the keys of each family (generated once per run) --------------------------------------


@cache
def key_of(family: str) -> str:
    if family == "google key file":
        google = GoogleEmulator()
        return google.add_key("vertex-prod", google.add_service_account("vertex-prod"))[1]
    return {
        "openai": lambda: openai_sandbox.new_key_value("proj"),
        "openai admin": lambda: openai_sandbox.new_key_value("admin"),
        "anthropic": anthropic_sandbox.new_key_value,
        "anthropic admin": lambda: anthropic_sandbox.new_key_value("admin01"),
        "azure-openai": azure_sandbox.new_key_value,
        "cohere": cohere_sandbox.new_key_value,
        "google API key": new_api_key_value,
    }[family]()


def build(family: str, handler: Handler, sleeps: list[float]) -> Any:
    settings = ProviderSettings(transport=httpx.MockTransport(handler))
    if family.startswith("openai"):
        return OpenAIProvider(settings, sleep=sleeps.append)
    if family.startswith("anthropic"):
        return AnthropicProvider(settings, sleep=sleeps.append)
    if family == "azure-openai":
        settings.data_url = AZURE_ENDPOINT
        return AzureOpenAIProvider(settings, sleep=sleeps.append, environ={})
    if family == "cohere":
        return CohereProvider(settings, sleep=sleeps.append)
    return GoogleProvider(settings, sleep=sleeps.append, environ={})


# ---- canned answers ------------------------------------------------------------------------


def reply(status: int, body: Any = None, *, content: bytes | None = None, headers: dict | None = None) -> Handler:
    """Every request gets this answer (``body``: JSON; a callable body is given the key)."""

    def handler(request: httpx.Request) -> httpx.Response:
        data = body(_sent_key(request)) if callable(body) else body
        if content is not None or data is None:
            return httpx.Response(status, content=content or b"", headers=headers)
        return httpx.Response(status, json=data, headers=headers)

    return handler


def by_path(**answers: Handler) -> Handler:
    """The answer of the first path fragment (``_`` for ``/``) found in the request's path."""

    def handler(request: httpx.Request) -> httpx.Response:
        for fragment, answer in answers.items():
            if fragment.replace("_", "/") in request.url.path:
                return answer(request)
        raise AssertionError(f"unexpected request {request.method} {request.url.path}")

    return handler


def failing(kind: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if kind == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if kind == "reset":
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        error = httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate", request=request
        )
        error.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
        raise error

    return handler


def _sent_key(request: httpx.Request) -> str:
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        if name in request.headers:
            return request.headers[name]
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def error_body(family: str, status: int, message: str) -> dict:
    """``family``'s documented error envelope."""
    if family.startswith("openai"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    if family.startswith("anthropic"):
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        kind = kinds.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        }
    if family == "azure-openai":
        return {"error": {"code": str(status), "message": message}}
    if family == "cohere":
        return {"message": message}
    names = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
    }
    return {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}


def _google_key_error(status: int, state: str, reason: str | None, message: str) -> dict:
    details = (
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
        if reason
        else []
    )
    return {"error": {"code": status, "message": message, "status": state, "details": details}}


#: what each family's documented success and invalid-key answers look like
DOCUMENTED: dict[str, tuple[Handler, Handler]] = {
    "openai": (
        reply(
            200,
            {
                "object": "list",
                "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}],
            },
        ),
        reply(
            401,
            lambda key: {
                "error": {
                    "message": f"Incorrect API key provided: {key}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
        ),
    ),
    "openai admin": (
        reply(
            200,
            {
                "object": "list",
                "data": [{"object": "organization.admin_api_key", "id": "key_abc"}],
                "first_id": "key_abc",
                "last_id": "key_abc",
                "has_more": False,
            },
        ),
        reply(
            401,
            {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
        ),
    ),
    "anthropic": (
        reply(
            200,
            {
                "data": [
                    {
                        "type": "model",
                        "id": "claude-sonnet-4-5-20250929",
                        "display_name": "Claude Sonnet 4.5",
                        "created_at": "2025-09-29T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": "claude-sonnet-4-5-20250929",
                "last_id": "claude-sonnet-4-5-20250929",
            },
        ),
        reply(401, error_body("anthropic", 401, "invalid x-api-key")),
    ),
    "anthropic admin": (
        reply(200, {"data": [], "has_more": False, "first_id": None, "last_id": None}),
        reply(401, error_body("anthropic", 401, "invalid x-api-key")),
    ),
    "azure-openai": (
        reply(
            200,
            {
                "data": [
                    {
                        "status": "succeeded",
                        "id": "gpt-4o",
                        "object": "model",
                        "created_at": 1646126127,
                        "lifecycle_status": "generally-available",
                    }
                ],
                "object": "list",
            },
        ),
        reply(
            401,
            error_body(
                "azure-openai",
                401,
                "Access denied due to invalid subscription key or wrong API "
                "endpoint. Make sure to provide a valid key for an active subscription and use a "
                "correct regional API endpoint for your resource.",
            ),
        ),
    ),
    "cohere": (
        reply(
            200,
            {
                "valid": True,
                "organization_id": "6a5c1d51-0000-4000-8000-000000000001",
                "owner_id": "6a5c1d51-0000-4000-8000-000000000002",
            },
        ),
        reply(401, {"message": "invalid api token"}),
    ),
    "google API key": (
        reply(
            200, {"models": [{"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash"}]}
        ),
        reply(
            400,
            _google_key_error(
                400, "INVALID_ARGUMENT", "API_KEY_INVALID", "API key not valid. Please pass a valid API key."
            ),
        ),
    ),
    "google key file": (
        reply(
            200,
            lambda _: {
                "access_token": "ya29.c." + secrets.token_urlsafe(32),
                "expires_in": 3599,
                "token_type": "Bearer",
            },
        ),
        reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    ),
}
FAMILIES = ["openai", "anthropic", "azure-openai", "cohere", "google API key", "google key file"]


@dataclass(frozen=True)
class Row:
    family: str
    answer: str
    handler: Handler
    expected: Liveness
    waits: list[float] | None = None  # the exact waits the retries asked for, when they matter
    requests: int | None = None  # the exact number of requests, when it matters

    @property
    def id(self) -> str:
        return f"{self.family}: {self.answer}"


def common_rows(family: str) -> list[Row]:
    live, dead = DOCUMENTED[family]
    busy = error_body(family, 429, "Rate limit reached for requests")
    rows = [
        Row(family, "200 with the documented body", live, LIVE),
        Row(family, "the documented invalid-key answer", dead, DEAD),
        Row(family, "403", reply(403, error_body(family, 403, "Forbidden")), UNKNOWN),
        Row(family, "404", reply(404, error_body(family, 404, "Not found")), UNKNOWN),
        Row(
            family,
            "429 with Retry-After, after every retry",
            reply(429, busy, headers={"retry-after": "2"}),
            UNKNOWN,
            waits=[2.0, 2.0, 2.0],
            requests=4,
        ),
        *(
            Row(
                family,
                f"{status} after every retry",
                reply(status, error_body(family, status, "boom")),
                UNKNOWN,
                requests=4,
            )
            for status in (500, 502, 503)
        ),
        Row(family, "timeout", failing("timeout"), UNKNOWN, requests=4),
        Row(family, "connection reset", failing("reset"), UNKNOWN, requests=4),
        Row(family, "TLS certificate not trusted", failing("tls"), UNKNOWN, requests=1),
        Row(family, "non-JSON 200", reply(200, content=b"OK", headers={"content-type": "text/plain"}), UNKNOWN),
        Row(
            family,
            "HTML 200 (a captive portal)",
            reply(
                200, content=b"<html><body>Sign in to the Wi-Fi</body></html>", headers={"content-type": "text/html"}
            ),
            UNKNOWN,
        ),
        Row(family, "empty-body 200", reply(200, content=b""), UNKNOWN),
        Row(
            family,
            "302 redirect",
            reply(302, content=b"", headers={"location": "https://portal.example.test/"}),
            UNKNOWN,
            requests=1,
        ),
        Row(family, "200 JSON without the documented shape", reply(200, {"status": "ok"}), UNKNOWN),
    ]
    return rows


def _scope_refusal(status: int) -> Handler:
    return reply(
        status,
        {
            "error": {
                "message": "You have insufficient permissions for this operation. Missing scopes: "
                "api.model.read. Check that you have the correct role in your "
                "organization (Reader, Writer, Owner) and project (Member, Owner), "
                "and if you're using a restricted API key, that it has the necessary "
                "scopes.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    )


_AZURE_RETIRED = reply(400, {"error": {"code": "BadRequest", "message": "API version not supported"}})
_AZURE_LIVE, _AZURE_DEAD = DOCUMENTED["azure-openai"]
_V1_LIVE = reply(200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 1646126127}]})

SPECIFIC = [
    Row("openai", "401 Missing scopes (a restricted key)", _scope_refusal(401), LIVE),
    Row("openai", "403 Missing scopes (a restricted key)", _scope_refusal(403), LIVE),
    Row(
        "openai",
        "401 IP not authorized (another meaning)",
        reply(401, error_body("openai", 401, "Your request IP is not authorized for this project's IP allowlist.")),
        UNKNOWN,
    ),
    Row(
        "openai",
        "401 without the invalid_api_key code",
        reply(401, error_body("openai", 401, "You must be a member of an organization to use the API.")),
        UNKNOWN,
    ),
    Row("openai", "401 from a proxy (HTML)", reply(401, content=b"<html>401</html>"), UNKNOWN),
    Row("openai admin", "200 with the documented body", DOCUMENTED["openai admin"][0], LIVE),
    Row("openai admin", "the documented invalid-key answer", DOCUMENTED["openai admin"][1], DEAD),
    Row(
        "anthropic",
        "403 permission_error",
        reply(
            403, error_body("anthropic", 403, "Your API key does not have permission to use the specified resource.")
        ),
        UNKNOWN,
    ),
    Row(
        "anthropic",
        "404 not_found_error (trufflehog's 'disabled')",
        reply(404, error_body("anthropic", 404, "The requested resource could not be found.")),
        UNKNOWN,
    ),
    Row("anthropic", "401 without authentication_error (a proxy)", reply(401, content=b"Unauthorized"), UNKNOWN),
    Row(
        "anthropic",
        "529 overloaded_error after every retry",
        reply(529, error_body("anthropic", 529, "Overloaded")),
        UNKNOWN,
        requests=4,
    ),
    Row("anthropic admin", "200 with the documented body", DOCUMENTED["anthropic admin"][0], LIVE),
    Row("anthropic admin", "the documented invalid-key answer", DOCUMENTED["anthropic admin"][1], DEAD),
    Row(
        "azure-openai",
        "GA api-version refused, v1 answers 200",
        by_path(openai_v1_=_V1_LIVE, openai_models=_AZURE_RETIRED),
        LIVE,
        requests=2,
    ),
    Row(
        "azure-openai",
        "GA route 404, v1 answers 401 (regenerated)",
        by_path(
            openai_v1_=_AZURE_DEAD, openai_models=reply(404, error_body("azure-openai", 404, "Resource not found"))
        ),
        DEAD,
        requests=2,
    ),
    Row("azure-openai", "retired api-version on both routes", _AZURE_RETIRED, UNKNOWN, requests=2),
    Row(
        "azure-openai",
        "403 AuthenticationTypeDisabled (key auth off)",
        reply(
            403,
            {
                "error": {
                    "code": "AuthenticationTypeDisabled",
                    "message": "Key based authentication is disabled for this resource.",
                }
            },
        ),
        UNKNOWN,
    ),
    Row(
        "azure-openai",
        "403 virtual network rules",
        reply(403, error_body("azure-openai", 403, "Access denied due to Virtual Network/Firewall rules.")),
        UNKNOWN,
    ),
    Row("azure-openai", "401 from a proxy (HTML)", reply(401, content=b"<html>401</html>"), UNKNOWN),
    Row("cohere", "200 valid: false", reply(200, {"valid": False}), DEAD),
    Row("cohere", "400 bad request", reply(400, {"message": "invalid request"}), UNKNOWN),
    Row(
        "google API key",
        "400 API key expired (API_KEY_INVALID)",
        reply(
            400,
            _google_key_error(400, "INVALID_ARGUMENT", "API_KEY_INVALID", "API key expired. Please renew the API key."),
        ),
        DEAD,
    ),
    Row(
        "google API key",
        "400 INVALID_ARGUMENT without API_KEY_INVALID",
        reply(400, _google_key_error(400, "INVALID_ARGUMENT", None, "Invalid JSON payload received.")),
        UNKNOWN,
    ),
    Row(
        "google API key",
        "403 PERMISSION_DENIED SERVICE_DISABLED",
        reply(
            403,
            _google_key_error(
                403,
                "PERMISSION_DENIED",
                "SERVICE_DISABLED",
                "Generative Language API has not been used in project 123456789012 before or it is disabled.",
            ),
        ),
        UNKNOWN,
    ),
    Row(
        "google API key",
        "403 PERMISSION_DENIED API_KEY_HTTP_REFERRER_BLOCKED",
        reply(
            403,
            _google_key_error(
                403, "PERMISSION_DENIED", "API_KEY_HTTP_REFERRER_BLOCKED", "Requests from referer <empty> are blocked."
            ),
        ),
        UNKNOWN,
    ),
    Row(
        "google API key",
        "403 PERMISSION_DENIED API_KEY_IP_ADDRESS_BLOCKED",
        reply(
            403,
            _google_key_error(
                403,
                "PERMISSION_DENIED",
                "API_KEY_IP_ADDRESS_BLOCKED",
                "The provided API key has an IP address restriction.",
            ),
        ),
        UNKNOWN,
    ),
    Row(
        "google key file",
        "400 invalid_grant: account not found",
        reply(400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}),
        DEAD,
    ),
    Row(
        "google key file",
        "400 invalid_grant: clock skew (iat/exp)",
        reply(
            400,
            {
                "error": "invalid_grant",
                "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) "
                "and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            },
        ),
        UNKNOWN,
    ),
    Row(
        "google key file",
        "400 invalid_grant: audience",
        reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT: Failed audience check."}),
        UNKNOWN,
    ),
    Row(
        "google key file",
        "401 invalid_client",
        reply(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}),
        UNKNOWN,
    ),
    Row("google key file", "200 without an access token", reply(200, {"token_type": "Bearer"}), UNKNOWN),
]
ROWS = [row for family in FAMILIES for row in common_rows(family)] + SPECIFIC


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_liveness_matrix(row: Row):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return row.handler(request)

    sleeps: list[float] = []
    key = key_of(row.family)
    provider = build(row.family, handler, sleeps)
    try:
        verdict = provider.check(Secret(key))
    finally:
        provider.close()
    assert verdict.state is row.expected, f"{row.id}: {verdict}"
    assert verdict.reason.strip(), "every verdict says why"
    _assert_no_key_in(verdict.reason, key)
    if row.waits is not None:
        assert sleeps == row.waits
    assert sum(sleeps) <= 120 and len(sleeps) <= 6, "bounded waits, through the injected sleep"
    if row.requests is not None:
        assert len(requests) == row.requests
    assert len(requests) <= 8, "bounded retries"
    assert all(r.headers.get("user-agent", "").startswith("cauterize/") for r in requests)


def test_every_family_has_every_common_answer():
    answers = {row.answer for row in common_rows("openai")}
    for family in FAMILIES:
        assert {row.answer for row in ROWS if row.family == family} >= answers, family


def test_a_google_api_key_is_sent_in_the_header_to_the_models_list():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return DOCUMENTED["google API key"][0](request)

    key = key_of("google API key")
    provider = build("google API key", handler, [])
    assert provider.check(Secret(key)).state is LIVE
    provider.close()
    (request,) = seen
    assert str(request.url) == "https://generativelanguage.googleapis.com/v1/models"
    assert request.headers["x-goog-api-key"] == key and "authorization" not in request.headers


def test_azure_asks_the_ga_models_route_first():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _AZURE_LIVE(request)

    provider = build("azure-openai", handler, [])
    assert provider.check(Secret(key_of("azure-openai"))).state is LIVE
    provider.close()
    (request,) = seen
    assert str(request.url) == f"{AZURE_ENDPOINT}/openai/models?api-version={DATA_API_VERSION}"
    assert DATA_API_VERSION == "2024-10-21"


def _assert_no_key_in(text: str, key: str) -> None:
    assert key not in text
    if not key.startswith("{"):  # a key file: its private key is checked by the line above
        for start in range(0, len(key) - 16, 8):
            assert key[start : start + 16] not in text, "no 16-character piece of the key"


# ---- end to end, against the emulators ------------------------------------------------------


def _openai(case: str) -> tuple[Any, str, dict]:
    emulator = OpenAIEmulator()
    key_id, key = emulator.add_user_key(emulator.add_project("prod"))
    if case == "deleted":
        emulator.keys[key_id].deleted = True
    if case == "restricted":
        emulator.restrict_key(key_id, ["api.responses.write"])
    return emulator, key, {}


def _anthropic(case: str) -> tuple[Any, str, dict]:
    emulator = AnthropicEmulator()
    if case == "forbidden workspace":
        _, key = emulator.add_key(workspace_id=emulator.add_workspace("locked", forbidden=True))
    elif case == "expired":
        _, key = emulator.add_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    elif case == "disabled answering 404":
        emulator.dead_key_status = 404
        _, key = emulator.add_key(status="inactive")
    else:
        _, key = emulator.add_key(status=case)
    return emulator, key, {}


def _azure(case: str) -> tuple[Any, str, dict]:
    versions = {"2025-04-01-preview"} if case == "GA version refused" else azure_sandbox.DATA_API_VERSIONS
    emulator = AzureOpenAIEmulator(data_api_versions=versions)
    key1, _ = emulator.add_account("00000000-0000-4000-8000-000000000000", "rg", "acct")
    if case == "regenerated slot":
        emulator.accounts["acct"].key1 = azure_sandbox.new_key_value()
    if case == "key auth off":
        emulator.accounts["acct"].disable_local_auth = True
    return emulator, key1, {"data_url": AZURE_ENDPOINT}


def _google(case: str) -> tuple[Any, str, dict]:
    emulator = GoogleEmulator()
    if case.startswith("API key"):
        key = emulator.add_api_key("vertex-prod", restriction="referrer" if case.endswith("restricted") else None)
        if case.endswith("deleted"):
            emulator.delete_api_key(key)
    else:
        key_id, key = emulator.add_key("vertex-prod", emulator.add_service_account("vertex-prod"))
        emulator.keys[key_id].disabled = case.endswith("disabled")
    return emulator, key, {}


def _cohere(case: str) -> tuple[Any, str, dict]:
    emulator = CohereEmulator()
    key = emulator.add_key()
    if case == "revoked":
        emulator.revoke_key(key)
    return emulator, key, {}


CLASSES = {
    _openai: OpenAIProvider,
    _anthropic: AnthropicProvider,
    _azure: AzureOpenAIProvider,
    _google: GoogleProvider,
    _cohere: CohereProvider,
}
END_TO_END = [
    (_openai, "live", LIVE),
    (_openai, "deleted", DEAD),
    (_openai, "restricted", LIVE),
    (_anthropic, "active", LIVE),
    (_anthropic, "inactive", DEAD),
    (_anthropic, "archived", DEAD),
    (_anthropic, "expired", DEAD),
    (_anthropic, "forbidden workspace", UNKNOWN),
    (_anthropic, "disabled answering 404", UNKNOWN),
    (_azure, "live", LIVE),
    (_azure, "regenerated slot", DEAD),
    (_azure, "GA version refused", LIVE),
    (_azure, "key auth off", UNKNOWN),
    (_google, "key file live", LIVE),
    (_google, "key file disabled", DEAD),
    (_google, "API key live", LIVE),
    (_google, "API key deleted", DEAD),
    (_google, "API key restricted", UNKNOWN),
    (_cohere, "live", LIVE),
    (_cohere, "revoked", DEAD),
]


@pytest.mark.parametrize(
    ("make", "case", "expected"), END_TO_END, ids=[f"{m.__name__[1:]}: {c}" for m, c, _ in END_TO_END]
)
def test_liveness_end_to_end(make, case, expected):
    emulator, key, settings = make(case)
    cls = CLASSES[make]
    extra = {"environ": {}} if cls in (AzureOpenAIProvider, GoogleProvider) else {}
    provider = cls(ProviderSettings(transport=httpx.MockTransport(emulator), **settings), sleep=lambda _: None, **extra)
    try:
        verdict = provider.check(Secret(key))
    finally:
        provider.close()
    assert verdict.state is expected, str(verdict)
    assert verdict.reason.strip() and key not in verdict.reason
    if make is _azure and case == "regenerated slot":  # dead through the GA route, not the retired one
        (call,) = emulator.calls("GET", "/openai/models")
        assert call.params.get("api-version") == "2024-10-21" and not emulator.calls("GET", "/openai/v1/models")
    if make is _azure and case == "GA version refused":
        assert emulator.calls("GET", "/openai/v1/models")
