"""A faithful local emulator of the Secret Manager v1 REST surface that cauterize uses.

    GET  /v1/projects/{p}/secrets                                 list secrets (pageSize, pageToken)
    GET  /v1/projects/{p}/secrets/{s}                             get a secret
    POST /v1/projects/{p}/secrets/{s}:addVersion                  add a version: {"payload": {data, dataCrc32c}}
    GET  /v1/projects/{p}/secrets/{s}/versions                    list versions, newest first (pageSize, pageToken)
    GET  /v1/projects/{p}/secrets/{s}/versions/{v}                get a version's metadata
    GET  /v1/projects/{p}/secrets/{s}/versions/{v}:access         the payload (base64 ``data`` + ``dataCrc32c``)
    POST /v1/projects/{p}/secrets/{s}/versions/{v}:disable        | :enable | :destroy, each answering the version

As the service does: ``{v}`` may be ``latest``, an alias of the most recently *created* version
(whatever its state), so reading ``latest`` after disabling it is 400 FAILED_PRECONDITION; only
ENABLED versions can be accessed; a destroyed version loses its data for good; ``{p}`` may be the
project id or number, and answers always name the project by number; int64 fields (``dataCrc32c``)
are JSON strings; with the REST clients' ``$alt=json;enum-encoding=int`` enums are numbers, names
otherwise. A ``dataCrc32c`` sent with a payload is checked (CRC32C, Castagnoli) and then reported
as ``clientSpecifiedPayloadChecksum``. Payloads are limited to 64 KiB.

Auth is a bearer token from ``add_token(permissions)``; a token lacking the route's IAM permission
gets 403 PERMISSION_DENIED worded as Google words it, ``... (or it may not exist)``, before any
existence check. Errors use Google's envelope ``{"error": {code, message, status, details}}``;
``fail_next`` injects any of them (429 RESOURCE_EXHAUSTED carries ``Retry-After``).

    gsm = GcpSecretManagerEmulator()
    token = gsm.add_token()
    gsm.add_secret("prod-project", "openai-api-key", value)
    with serve(gsm) as app: ...   # client_options={"api_endpoint": app.url}, transport="rest"
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cauterize.sandbox.google import GoogleError
from cauterize.sandbox.openai import RecordedRequest
from cauterize.stores.gcp_secret_manager import crc32c

Body = dict[str, Any]
STATES = {"STATE_UNSPECIFIED": 0, "ENABLED": 1, "DISABLED": 2, "DESTROYED": 3}
MAX_PAYLOAD = 65536
_NO_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_P = r"/v1/projects/(?P<project>[^/]+)"
_S = _P + r"/secrets/(?P<secret>[^/:]+)"
_V = _S + r"/versions/(?P<version>[^/:]+)"
_ROUTES = [  # method, path, handler, the IAM permission it needs
    ("GET", _P + "/secrets", "_list_secrets", "secretmanager.secrets.list"),
    ("GET", _S, "_get_secret", "secretmanager.secrets.get"),
    ("POST", _S + ":addVersion", "_add_version", "secretmanager.versions.add"),
    ("GET", _S + "/versions", "_list_versions", "secretmanager.versions.list"),
    ("GET", _V, "_get_version", "secretmanager.versions.get"),
    ("GET", _V + ":access", "_access", "secretmanager.versions.access"),
    ("POST", _V + ":(?P<verb>disable|enable|destroy)", "_set_state", "secretmanager.versions.{verb}"),
]
_TABLE = [(method, re.compile(f"^{path}$"), handler, permission) for method, path, handler, permission in _ROUTES]
_FAULT_MESSAGES = {
    429: "Quota exceeded for quota metric 'Access requests' and limit 'Access requests per minute per project'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


@dataclass
class Version:
    number: int
    data: bytes | None  # None once destroyed
    created: datetime
    state: str = "ENABLED"
    destroyed: datetime | None = None
    client_checksum: bool = False
    etag: str = field(default_factory=lambda: f'"{secrets.token_hex(7)}"')


@dataclass
class StoredSecret:
    project: str
    secret_id: str
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    versions: list[Version] = field(default_factory=list)  # oldest first


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class GcpSecretManagerEmulator:
    """In-memory secrets and versions behind an ``httpx`` handler (``httpx.MockTransport(emulator)``)."""

    def __init__(self, *, now: Callable[[], datetime] | None = None, page_size: int = 25):
        self._clock = now or (lambda: datetime.now(UTC))
        self.page_size = page_size  # the default pageSize, small enough for tests to see paging
        self.secrets: dict[tuple[str, str], StoredSecret] = {}  # (project id, secret id)
        self.projects: dict[str, str] = {}  # project id -> project number
        self.tokens: dict[str, frozenset[str] | None] = {}  # token -> permissions (None: all)
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # ---- seeding and assertions --------------------------------------------------------------

    def add_token(self, permissions: Iterable[str] | None = None) -> str:
        """An access token allowed ``permissions`` (e.g. ``secretmanager.versions.access``); all if None."""
        token = "ya29." + secrets.token_urlsafe(32)
        self.tokens[token] = None if permissions is None else frozenset(permissions)
        return token

    def add_secret(self, project: str, secret_id: str, *values: str, labels: dict[str, str] | None = None) -> None:
        """Create a secret (automatic replication) with one ENABLED version per value, oldest first."""
        with self._lock:
            self.project_number(project)
            self.secrets[(project, secret_id)] = StoredSecret(project, secret_id, self._clock(), dict(labels or {}))
            for value in values:
                self.add_version(project, secret_id, value)

    def add_version(self, project: str, secret_id: str, value: str, *, state: str = "ENABLED") -> int:
        with self._lock:
            stored = self.secrets[(project, secret_id)]
            version = Version(len(stored.versions) + 1, value.encode(), self._clock(), state)
            stored.versions.append(version)
            return version.number

    def project_number(self, project: str) -> str:
        """The number the emulator gives a project id (stable for the emulator's life)."""
        return self.projects.setdefault(project, str(10**11 + secrets.randbelow(9 * 10**11)))

    def version(self, project: str, secret_id: str, number: int | str = "latest") -> Version:
        """A version, for test assertions (``latest``: the most recently created)."""
        return self._version(self.secrets[(project, secret_id)], str(number))

    def value_of(self, project: str, secret_id: str, number: int | str = "latest") -> str | None:
        data = self.version(project, secret_id, number).data
        return None if data is None else data.decode()

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

    # ---- the handler -------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            headers = {k.lower(): v for k, v in request.headers.items()}
            recorded = RecordedRequest(request.method, request.url.path, request.url.query.decode(), headers,
                                       request.read())
            self.requests.append(recorded)
            try:
                return self._dispatch(recorded)
            except GoogleError as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        self._inject_fault(request)
        for method, pattern, handler, permission in _TABLE:
            match = pattern.match(request.path)
            if match and method == request.method:
                self._authorize(request, permission.format(**match.groupdict()))
                body = getattr(self, handler)(request, **match.groupdict())
                return httpx.Response(200, json=_enums(body, numeric="enum-encoding=int" in (request.params.get("$alt") or "")))
        raise GoogleError(404, f"The requested URL {request.path} was not found on this server.")

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining > 0 and matches:
                fault.remaining -= 1
                error = GoogleError(fault.status, fault.message or _FAULT_MESSAGES.get(fault.status, "Injected error."))
                if fault.status == 429 and fault.retry_after is not None:
                    error.headers["retry-after"] = str(fault.retry_after)
                raise error

    def _authorize(self, request: RecordedRequest, permission: str) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GoogleError(401, _NO_CREDENTIALS)
        if token.strip() not in self.tokens:
            raise GoogleError(401, _NO_CREDENTIALS.replace("is missing required", "had invalid"))
        allowed = self.tokens[token.strip()]
        if allowed is not None and permission not in allowed:
            resource = request.path.removeprefix("/v1/").split(":")[0]
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                    "domain": "secretmanager.googleapis.com", "metadata": {"permission": permission}}
            message = f"Permission '{permission}' denied for resource '{resource}' (or it may not exist)."
            raise GoogleError(403, message, details=[info])

    # ---- routes --------------------------------------------------------------------------------

    def _list_secrets(self, request: RecordedRequest, project: str) -> Body:
        project_id = self._project(project)
        found = [s for (p, _), s in sorted(self.secrets.items()) if p == project_id]
        page, token = self._page(request, found)
        return {"secrets": [self._secret_json(s) for s in page], "nextPageToken": token, "totalSize": len(found)}

    def _get_secret(self, request: RecordedRequest, project: str, secret: str) -> Body:
        return self._secret_json(self._secret(project, secret))

    def _add_version(self, request: RecordedRequest, project: str, secret: str) -> Body:
        stored = self._secret(project, secret)
        payload = _json_body(request).get("payload") or {}
        try:
            data = base64.b64decode(payload.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise GoogleError(400, "Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed.") from None
        if not data:
            raise GoogleError(400, "Secret Payload cannot be empty.")
        if len(data) > MAX_PAYLOAD:
            raise GoogleError(400, f"Secret Payload cannot be larger than {MAX_PAYLOAD} bytes.")
        checksum = payload.get("dataCrc32c")
        if checksum is not None and str(checksum) != str(crc32c(data)):
            raise GoogleError(400, "Checksum mismatch: the payload's data_crc32c does not match its data.")
        version = Version(len(stored.versions) + 1, data, self._clock(), client_checksum=checksum is not None)
        stored.versions.append(version)
        return self._version_json(stored, version)

    def _list_versions(self, request: RecordedRequest, project: str, secret: str) -> Body:
        stored = self._secret(project, secret)
        page, token = self._page(request, stored.versions[::-1])
        return {"versions": [self._version_json(stored, v) for v in page], "nextPageToken": token,
                "totalSize": len(stored.versions)}

    def _get_version(self, request: RecordedRequest, project: str, secret: str, version: str) -> Body:
        stored = self._secret(project, secret)
        return self._version_json(stored, self._version(stored, version))

    def _access(self, request: RecordedRequest, project: str, secret: str, version: str) -> Body:
        stored = self._secret(project, secret)
        found = self._version(stored, version)
        if found.state != "ENABLED" or found.data is None:
            raise GoogleError(400, f"Secret Version [{self._name(stored, found)}] is in {found.state} state.",
                              "FAILED_PRECONDITION")
        payload = {"data": base64.b64encode(found.data).decode(), "dataCrc32c": str(crc32c(found.data))}
        return {"name": self._name(stored, found), "payload": payload}

    def _set_state(self, request: RecordedRequest, project: str, secret: str, version: str, verb: str) -> Body:
        state = {"disable": "DISABLED", "enable": "ENABLED", "destroy": "DESTROYED"}[verb]
        stored = self._secret(project, secret)
        found = self._version(stored, version)
        if found.state == "DESTROYED":
            raise GoogleError(400, f"Secret Version [{self._name(stored, found)}] is in DESTROYED state.",
                              "FAILED_PRECONDITION")
        found.state, found.etag = state, f'"{secrets.token_hex(7)}"'
        if state == "DESTROYED":
            found.data, found.destroyed = None, self._clock()
        return self._version_json(stored, found)

    # ---- objects -------------------------------------------------------------------------------

    def _project(self, project: str) -> str:
        """The project id for an id or a number in a path."""
        return next((pid for pid, number in self.projects.items() if project in (pid, number)), project)

    def _secret(self, project: str, secret: str) -> StoredSecret:
        stored = self.secrets.get((self._project(project), secret))
        if stored is None:
            raise GoogleError(404, f"Secret [projects/{self.project_number(self._project(project))}/secrets/{secret}] "
                                   "not found.")
        return stored

    def _version(self, stored: StoredSecret, version: str) -> Version:
        if version == "latest":
            if not stored.versions:
                raise GoogleError(404, f"Secret [{self._secret_name(stored)}] not found or has no versions.")
            return stored.versions[-1]
        if not version.isdigit():
            raise GoogleError(400, f"Invalid resource field value in the request: version '{version}'.")
        number = int(version)
        if not 1 <= number <= len(stored.versions):
            raise GoogleError(404, f"Secret Version [{self._secret_name(stored)}/versions/{number}] not found.")
        return stored.versions[number - 1]

    def _page(self, request: RecordedRequest, items: list[Any]) -> tuple[list[Any], str]:
        params = request.params
        try:
            size = int(params.get("pageSize") or self.page_size)
            start = int(base64.urlsafe_b64decode(params.get("pageToken") or "MA==").decode())
        except (ValueError, binascii.Error):
            raise GoogleError(400, "Invalid pageSize or pageToken.") from None
        if size < 0:
            raise GoogleError(400, "pageSize must not be negative.")
        size = min(size or self.page_size, 25000)
        end = start + size
        return items[start:end], (base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else "")

    def _secret_name(self, stored: StoredSecret) -> str:
        return f"projects/{self.project_number(stored.project)}/secrets/{stored.secret_id}"

    def _name(self, stored: StoredSecret, version: Version) -> str:
        return f"{self._secret_name(stored)}/versions/{version.number}"

    def _secret_json(self, stored: StoredSecret) -> Body:
        body: Body = {"name": self._secret_name(stored), "replication": {"automatic": {}},
                      "createTime": _rfc3339(stored.created), "etag": f'"{secrets.token_hex(7)}"'}
        if stored.labels:
            body["labels"] = stored.labels
        return body

    def _version_json(self, stored: StoredSecret, version: Version) -> Body:
        body: Body = {"name": self._name(stored, version), "createTime": _rfc3339(version.created),
                      "state": version.state, "replicationStatus": {"automatic": {}}, "etag": version.etag}
        if version.destroyed:
            body["destroyTime"] = _rfc3339(version.destroyed)
        if version.client_checksum:
            body["clientSpecifiedPayloadChecksum"] = True
        return body


def _enums(body: Body, *, numeric: bool) -> Body:
    """``state`` fields as numbers for ``enum-encoding=int``, as names otherwise (nested lists included)."""
    if not numeric:
        return body
    out: Body = {}
    for key, value in body.items():
        if key == "state" and isinstance(value, str):
            value = STATES[value]
        elif isinstance(value, list):
            value = [_enums(item, numeric=True) if isinstance(item, dict) else item for item in value]
        out[key] = value
    return out


def _json_body(request: RecordedRequest) -> Body:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise GoogleError(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict) or not isinstance(body.get("payload", {}), dict):
        raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
    return body


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = ["STATES", "GcpSecretManagerEmulator", "StoredSecret", "Version"]
