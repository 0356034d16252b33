"""A faithful local emulator of Cohere's one key route: ``POST /v1/check-api-key``.

Cohere documents no API to list, create or revoke keys and none for usage (provider-apis.md 5 and
7.5): keys are managed in the dashboard or with the CLI. So the emulator needs one route, answered
as Cohere does: ``Authorization: Bearer <key>`` of a valid key gets 200
``{valid: true, organization_id, owner_id}``; a missing, unknown or revoked key gets 401
``{message}``. ``revoke_key`` is what a person does in the dashboard.

    emulator = CohereEmulator()
    value = emulator.add_key()
    client = httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.cohere.com")

``cauterize.sandbox.server.serve(emulator)`` serves the same handler over a real socket. Requests
are recorded in ``emulator.requests``; ``fail_next`` injects 401/429/5xx answers. Key values (40
alphanumeric characters, no prefix) are generated at run time; none is ever a real key.
"""

from __future__ import annotations

import fnmatch
import hmac
import secrets
import string
import threading
import uuid
from dataclasses import dataclass, field

import httpx

from cauterize.sandbox.openai import RecordedRequest

_ALNUM = string.ascii_letters + string.digits
_MESSAGES = {
    401: "invalid api token",
    429: "You are using a Trial key, which is limited to 1000 API calls / month. Please try again later.",
    500: "internal server error, this has been reported to our developers",
}


def new_key_value() -> str:
    """A fresh random value shaped like a Cohere key: 40 alphanumeric characters."""
    return "".join(secrets.choice(_ALNUM) for _ in range(40))


@dataclass
class ApiKey:
    value: str = field(repr=False)
    name: str
    organization_id: str
    owner_id: str
    revoked: bool = False


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class CohereEmulator:
    """In-memory Cohere keys behind an ``httpx`` handler: ``httpx.MockTransport(emulator)``."""

    def __init__(self) -> None:
        self.organization_id = str(uuid.uuid4())
        self.owner_id = str(uuid.uuid4())
        self.keys: list[ApiKey] = []
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # ---- seeding ---------------------------------------------------------------------------

    def add_key(
        self, name: str = "production", *, organization_id: str | None = None, owner_id: str | None = None
    ) -> str:
        """Create a key (in the emulator's organisation, owned by its user unless told otherwise); returns its value."""
        key = ApiKey(new_key_value(), name, organization_id or self.organization_id, owner_id or self.owner_id)
        with self._lock:
            self.keys.append(key)
        return key.value

    def revoke_key(self, value: str) -> None:
        """What a person does in the dashboard (API keys, delete) or with ``co key revoke``."""
        key = self._key(value)
        if key is None:
            raise KeyError("no such key in the emulator")
        key.revoked = True

    def is_live(self, value: str) -> bool:
        key = self._key(value)
        return key is not None and not key.revoked

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (or ``*``) and the path glob with ``status``."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message))

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path glob."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or fnmatch.fnmatchcase(r.path, path))
        ]

    # ---- the handler -----------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            recorded = RecordedRequest(
                request.method,
                request.url.path,
                request.url.query.decode(),
                {k.lower(): v for k, v in request.headers.items()},
                request.read(),
            )
            self.requests.append(recorded)
            fault = self._fault_for(recorded)
            if fault is not None:
                headers = {"retry-after": str(fault.retry_after)} if fault.status == 429 and fault.retry_after else {}
                message = fault.message or _MESSAGES.get(fault.status, _MESSAGES[500])
                return _answer(fault.status, {"message": message}, headers)
            if recorded.path != "/v1/check-api-key":
                return _answer(404, {"message": f"route {recorded.path} not found"})
            if recorded.method != "POST":
                return _answer(405, {"message": "method not allowed"})
            return self._check_api_key(recorded)

    def _check_api_key(self, request: RecordedRequest) -> httpx.Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _answer(401, {"message": "no api key supplied"})
        key = self._key(token.strip())
        if key is None or key.revoked:
            return _answer(401, {"message": _MESSAGES[401]})
        return _answer(200, {"valid": True, "organization_id": key.organization_id, "owner_id": key.owner_id})

    def _fault_for(self, request: RecordedRequest) -> _Fault | None:
        for fault in self._faults:
            if (
                fault.remaining > 0
                and fault.method in ("*", request.method)
                and fnmatch.fnmatchcase(request.path, fault.pattern)
            ):
                fault.remaining -= 1
                return fault
        return None

    def _key(self, value: str) -> ApiKey | None:
        """The key with this value (every key compared in constant time)."""
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.value.encode(), value.encode()):
                found = key
        return found


def _answer(status: int, body: dict, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"x-trace-id": uuid.uuid4().hex, **(headers or {})})


__all__ = ["CohereEmulator", "new_key_value"]
