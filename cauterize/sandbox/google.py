"""A faithful local emulator of Google's key APIs: IAM v1, the token endpoint, Monitoring, API Keys v2, Org Policy v2.

It follows the public REST surface (discoveries ``iam.v1.json``, ``apikeys.v2.json``; provider-apis.md
sections 3 and 7.3):

* IAM ``/v1/projects/{p}/serviceAccounts/{sa}/keys[/{keyId}[:disable|:enable]]``: list (no paging,
  ``keyTypes`` filter), get, create (``privateKeyData``: base64 of a key file), disable and enable
  (``{}``, flipping ``disabled``), delete (``{}``). ``{p}`` may be ``-``, ``{sa}`` the email or unique
  id; as with the real wildcard, what does not exist answers 403 under ``-`` (404 otherwise). A
  service account holds at most 10 user-managed keys: the 11th answers 400 FAILED_PRECONDITION
  "Precondition check failed." with no details (firebase/firebase-tools#6192). Where ``forbid_key_creation``
  enforced ``iam.disableServiceAccountKeyCreation`` or ``iam.managed.disableServiceAccountKeyCreation``,
  create answers Google's documented 400 FAILED_PRECONDITION "Key creation is not allowed on this
  service account." with a ``PreconditionFailure`` violation of type ``constraints/<constraint>``
  (cloud.google.com/iam/docs/troubleshoot-org-policies; the managed constraint's body is assumed to
  have the same shape).
* Org Policy v2 ``GET /v2/projects/{p}/policies/{constraint}:getEffectivePolicy``: ``{name, spec:
  {rules: [{enforce}]}}`` as seeded, ``{name}`` for a constraint nobody set.
* API Keys v2 (``apikeys.googleapis.com``): ``GET /v2/keys:lookupKey?keyString=`` (``{parent, name}``;
  only ``parent`` once purged; 404 for a value it never issued, an emulator choice), list (``pageSize``,
  ``pageToken``, ``showDeleted``), get (a soft-deleted key too, with ``deleteTime``, as AIP-164 has
  it), create and delete (long-running Operations, done at once unless ``operation_polls`` says how
  many ``GET /v2/operations/{id}`` answer ``done: false`` first; deleting a deleted key: 404, an
  emulator choice), ``/keyString``. A deleted key fails the Gemini API with
  API_KEY_INVALID; restrictions are enforced there (``apiTargets`` other than the Gemini API: service
  blocked; referrers, IP addresses, apps: blocked, since the emulator's callers send none).
* ``POST /token``: the JWT-bearer grant. The RS256 signature is verified with the public key named by
  the ``kid`` header (``iss``: the client email); a disabled or deleted key, a bad signature or an
  ``iat``/``exp`` out of range answers 400 ``invalid_grant``. Each token counts as one authentication.
* ``GET /v1/models`` and ``/v1beta/models`` (the Gemini API's models.list, at
  generativelanguage.googleapis.com) for Google API keys seeded with ``add_api_key``: the key in
  ``x-goog-api-key`` (or ``?key=``); a deleted, expired or unknown key answers 400 ``INVALID_ARGUMENT``
  with ``ErrorInfo`` reason ``API_KEY_INVALID``, a key whose project has the API off 403
  ``SERVICE_DISABLED``, a key whose restrictions refuse the call 403 ``API_KEY_SERVICE_BLOCKED`` /
  ``API_KEY_HTTP_REFERRER_BLOCKED`` / ``API_KEY_IP_ADDRESS_BLOCKED`` (googleapis ``error_reason.proto``).
* ``GET /v3/projects/{p}/timeSeries``: ``iam.googleapis.com/service_account/key/authn_events_count``
  per ``metric.labels.key_id``: ``filter`` (equalities joined by AND), ``interval`` (points ending in
  ``(startTime, endTime]``), ``aggregation`` (``ALIGN_SUM``; periods end at ``endTime``), newest point
  first, ``int64Value`` a string, ``pageToken`` paging by points.

IAM and Monitoring take bearer tokens the emulator issued, from ``add_admin_token()`` or the token
endpoint for a key of a service account seeded with ``admin=True``; others get 401 UNAUTHENTICATED
or 403 PERMISSION_DENIED in Google's envelope ``{"error": {code, message, status, details}}``.
``deny(permission)`` takes a permission from every admin (403 PERMISSION_DENIED naming it, as
IAM does); ``disable_service(service)`` answers 403 SERVICE_DISABLED for that API. ``fail_next``
injects 429 RESOURCE_EXHAUSTED (with ``Retry-After``), 5xx and the like. Tokens already issued stay
valid until they expire, even after their key is gone.

    google = GoogleEmulator()
    email = google.add_service_account("prod-project", "vertex-caller")
    key_id, credentials_json = google.add_key("prod-project", email)
    client = httpx.Client(transport=httpx.MockTransport(google), base_url="https://iam.googleapis.com")

Like Google's JSON, answers leave out empty lists and ``disabled: false``. Emulator-only choices: RSA
keys have ``key_bits`` (1024) bits, since a 2048-bit key takes ~50 ms to generate, while
``keyAlgorithm`` says what was asked for; private keys are not kept (nor are they at Google);
``publicKeyData`` and PKCS#12 files are not emulated. Every key is generated at run time.
"""

from __future__ import annotations

import base64
import fnmatch
import hmac
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cauterize.sandbox.openai import RecordedRequest
from cauterize.sandbox.openai_usage import Query

Clock = Callable[[], "datetime | float"]
Body = dict[str, Any]

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
AUTHN_METRIC = "iam.googleapis.com/service_account/key/authn_events_count"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3599
MAX_USER_KEYS = 10
_TOKEN_PATHS = ("/token", "/oauth2/v4/token")
_FILE = "TYPE_GOOGLE_CREDENTIALS_FILE"
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
_STATUS |= {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_NO_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_BAD_CREDENTIALS = _NO_CREDENTIALS.replace("is missing required", "had invalid")
GENERATIVE = "generativelanguage.googleapis.com"
_MODELS_PATHS = ("/v1/models", "/v1beta/models")
_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "text-embedding-004")
_API_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#: API-key restriction -> (ErrorInfo reason, message) of the 403 a refused call gets
_RESTRICTIONS = {
    "service": (
        "API_KEY_SERVICE_BLOCKED",
        f"Requests to this API {GENERATIVE} method google.ai.generativelanguage.v1.ModelService.ListModels are blocked.",
    ),
    "referrer": ("API_KEY_HTTP_REFERRER_BLOCKED", "Requests from referer <empty> are blocked."),
    "ip": (
        "API_KEY_IP_ADDRESS_BLOCKED",
        (
            "The provided API key has an IP address restriction. The originating IP address of the call "
            "violates this restriction."
        ),
    ),
}
#: V2Restrictions on the caller -> the _RESTRICTIONS entry a call without that caller gets
_CALLER_RESTRICTIONS = (
    ("browserKeyRestrictions", "allowedReferrers", "referrer"),
    ("serverKeyRestrictions", "allowedIps", "ip"),
    ("androidKeyRestrictions", "allowedApplications", "android"),
    ("iosKeyRestrictions", "allowedBundleIds", "ios"),
)
_RESTRICTIONS |= {
    "android": ("API_KEY_ANDROID_APP_BLOCKED", "Requests from this Android client application <empty> are blocked."),
    "ios": ("API_KEY_IOS_APP_BLOCKED", "Requests from this iOS client application <empty> are blocked."),
}
_V2_RESTRICTIONS = {"apiTargets", *(name for name, _, _ in _CALLER_RESTRICTIONS)}
KEY_CREATION_CONSTRAINTS = ("iam.disableServiceAccountKeyCreation", "iam.managed.disableServiceAccountKeyCreation")
_KEY_CREATION_REFUSED = "Key creation is not allowed on this service account."
_KEY_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
#: the API each permission's calls go to (for disable_service)
_SERVICES = {
    "iam": "iam.googleapis.com",
    "monitoring": "monitoring.googleapis.com",
    "orgpolicy": "orgpolicy.googleapis.com",
    "apikeys": "apikeys.googleapis.com",
    "serviceusage": "apikeys.googleapis.com",
}
_BAD_SIGNATURE = "Invalid JWT Signature."
_BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


def project_number(project: str) -> str:
    """The emulator's stable project number for a project id (API key names use numbers)."""
    return str(10**11 + sum(map(ord, project)) * 7919)


def new_api_key_value() -> str:
    """A fresh random value shaped like a Google API key (``AIza`` + 35 of ``[A-Za-z0-9_-]``); never a real key."""
    return "AIza" + "".join(secrets.choice(_API_KEY_ALPHABET) for _ in range(35))


@dataclass
class ServiceAccount:
    project: str
    email: str
    unique_id: str
    admin: bool = False


@dataclass
class Key:
    id: str
    account: ServiceAccount
    created_at: int
    key_type: str = "USER_MANAGED"
    algorithm: str = "KEY_ALG_RSA_2048"
    public_key: rsa.RSAPublicKey | None = field(default=None, repr=False)  # None: a Google-managed key
    disabled: bool = False
    disable_reason: str | None = None
    deleted: bool = False


@dataclass
class ApiKey:
    """A Google API key (``AIza...``): ``restriction`` is what its settings refuse this emulator's
    calls for (``service``, ``referrer``, ``ip``), ``service_enabled`` whether its project has the
    Gemini API on."""

    uid: str
    value: str = field(repr=False)
    project: str
    project_number: str
    created_at: int
    restriction: str | None = None
    service_enabled: bool = True
    expired: bool = False
    deleted: bool = False
    display_name: str = ""
    restrictions: Body = field(default_factory=dict)  # V2Restrictions, as the API Keys API stores it
    annotations: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    key_id: str | None = None  # the name's last part, when the creator chose it
    deleted_at: int | None = None
    purged: bool = False

    @property
    def name(self) -> str:
        return f"projects/{self.project_number}/locations/global/keys/{self.key_id or self.uid}"

    @property
    def blocked_by(self) -> str | None:
        """What of its restrictions refuses a Gemini API call from the emulator's callers (see the module)."""
        if self.restriction is not None:
            return self.restriction
        found = self.restrictions
        targets = [t.get("service") for t in found.get("apiTargets") or [] if isinstance(t, dict)]
        if targets and GENERATIVE not in targets:
            return "service"
        for field_name, inner, reason in _CALLER_RESTRICTIONS:
            if (found.get(field_name) or {}).get(inner):
                return reason
        return None


@dataclass
class AccessToken:
    admin: bool
    expires_at: int | None


@dataclass(frozen=True)
class AuthnEvents:
    """``count`` authentications of ``key_id`` in the metric interval ``(start, end]``."""

    key_id: str
    start: int
    end: int
    count: int


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class GoogleError(Exception):
    """An error answer in Google's envelope; with ``oauth``, the token endpoint's ``{error, error_description}``."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        details: list[Body] | None = None,
        *,
        oauth: str | None = None,
    ):
        super().__init__(message)
        self.code, self.message, self.details, self.oauth = code, message, details or [], oauth
        self.status = status or _STATUS.get(code, "INTERNAL")
        self.headers: dict[str, str] = {}

    def response(self) -> httpx.Response:
        error = {"code": self.code, "message": self.message, "status": self.status, "details": self.details}
        body = {"error": self.oauth, "error_description": self.message} if self.oauth else {"error": error}
        return httpx.Response(self.code, json=body, headers=self.headers)


def _oauth(error: str, description: str) -> GoogleError:
    return GoogleError(400, description, oauth=error)


_KEYS = r"/v1/projects/(?P<project>[^/]+)/serviceAccounts/(?P<account>[^/]+)/keys"
_KEY = _KEYS + r"/(?P<key>[^/:]+)"
_POLICY = r"/v2/projects/(?P<project>[^/]+)/policies/(?P<constraint>[^/:]+)"
_API_KEYS = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/keys"
_API_KEY = _API_KEYS + r"/(?P<key>[^/:]+)"
# method, path, handler, the permission it needs
_ROUTES = [
    ("GET", _KEYS, "_list_keys", "iam.serviceAccountKeys.list"),
    ("POST", _KEYS, "_create_key", "iam.serviceAccountKeys.create"),
    ("GET", _KEY, "_get_key", "iam.serviceAccountKeys.get"),
    ("DELETE", _KEY, "_delete_key", "iam.serviceAccountKeys.delete"),
    ("POST", _KEY + ":disable", "_disable_key", "iam.serviceAccountKeys.disable"),
    ("POST", _KEY + ":enable", "_enable_key", "iam.serviceAccountKeys.enable"),
    ("GET", r"/v3/projects/(?P<project>[^/]+)/timeSeries", "_list_time_series", "monitoring.timeSeries.list"),
    ("GET", _POLICY + ":getEffectivePolicy", "_effective_policy", "orgpolicy.policy.get"),
    ("GET", r"/v2/keys:lookupKey", "_lookup_api_key", "apikeys.keys.lookup"),
    ("GET", _API_KEYS, "_list_api_keys", "apikeys.keys.list"),
    ("POST", _API_KEYS, "_create_api_key", "apikeys.keys.create"),
    ("GET", _API_KEY, "_get_api_key", "apikeys.keys.get"),
    ("DELETE", _API_KEY, "_delete_api_key", "apikeys.keys.delete"),
    ("GET", _API_KEY + "/keyString", "_get_key_string", "apikeys.keys.getKeyString"),
    ("GET", r"/v2/operations/(?P<operation>[^/]+)", "_get_operation", "serviceusage.operations.get"),
]
_TABLE = [(method, re.compile(f"^{path}$"), handler, permission) for method, path, handler, permission in _ROUTES]


class GoogleEmulator:
    """In-memory service accounts, keys, tokens and metrics behind an ``httpx`` handler."""

    def __init__(
        self,
        *,
        now: Clock | None = None,
        key_bits: int = 1024,
        token_uri: str = GOOGLE_TOKEN_URI,
        page_points: int = 100_000,
    ):
        self._clock = now or (lambda: datetime.now(UTC))
        self.key_bits, self.token_uri, self.page_points = key_bits, token_uri, page_points
        self.accounts: dict[str, ServiceAccount] = {}  # by email
        self.keys: dict[str, Key] = {}  # by key id; deleted keys stay, marked
        self.tokens: dict[str, AccessToken] = {}
        self.api_keys: dict[str, ApiKey] = {}  # by uid; deleted keys stay, marked
        self.authn_events: list[AuthnEvents] = []
        self.org_policies: dict[tuple[str, str], bool] = {}  # (project, constraint) -> enforce
        self.denied: set[str] = set()  # permissions no admin holds
        self.disabled_services: set[str] = set()
        self.operations: dict[str, Body] = {}  # API Keys long-running operations, by name
        self.operation_polls = 0  # GETs an operation takes to be done (0: done when returned)
        self._pending: dict[str, int] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # ---- seeding ---------------------------------------------------------------------------

    def add_service_account(self, project: str, name: str = "vertex-caller", *, admin: bool = False) -> str:
        """Create ``{name}@{project}.iam.gserviceaccount.com`` (with its Google-managed key); returns the email.

        ``admin=True`` lets tokens of its keys call IAM and Monitoring (a key admin's roles)."""
        email = f"{name}@{project}.iam.gserviceaccount.com"
        with self._lock:
            if email in self.accounts:
                raise ValueError(f"service account {email} exists already")
            account = ServiceAccount(project, email, str(10**20 + secrets.randbelow(9 * 10**20)), admin)
            self.accounts[email] = account
            managed = Key(secrets.token_hex(20), account, self._now(), key_type="SYSTEM_MANAGED")
            self.keys[managed.id] = managed
        return email

    def add_key(
        self, project: str, email: str, *, algorithm: str = "KEY_ALG_RSA_2048", disabled: bool = False
    ) -> tuple[str, str]:
        """Create a user-managed key; returns ``(key_id, credentials JSON text)``, the file Google hands out."""
        account = self.accounts[email]
        if project not in ("-", account.project):
            raise ValueError(f"service account {email} is not in project {project}")
        key, credentials = self._new_key(account, algorithm)
        key.disabled = disabled
        return key.id, credentials

    def add_api_key(
        self,
        project: str,
        *,
        restriction: str | None = None,
        service_enabled: bool = True,
        expired: bool = False,
        display_name: str = "Gemini API key",
        restrictions: Body | None = None,
    ) -> str:
        """A Google API key of ``project`` for the Gemini API; returns its value (``AIza`` + 35, random).

        ``restrictions`` is a V2Restrictions (``apiTargets``, ``browserKeyRestrictions``...), enforced on the
        Gemini API; ``restriction`` forces one refusal (``service``, ``referrer``, ``ip``) whatever they say."""
        if restriction not in (None, *_RESTRICTIONS):
            raise ValueError(f"restriction must be one of {', '.join(_RESTRICTIONS)} or None")
        key = ApiKey(
            str(uuid.uuid4()), new_api_key_value(), project, project_number(project), self._now(), restriction,
            service_enabled, expired, display_name=display_name, restrictions=dict(restrictions or {}),
        )
        with self._lock:
            self.api_keys[key.uid] = key
        return key.value

    def delete_api_key(self, value: str) -> None:
        """What ``DELETE /v2/{name}`` of the API Keys API, or the console, does: a soft delete."""
        key = self.find_api_key(value)
        if key is None:
            raise KeyError("no such API key in the emulator")
        key.deleted, key.deleted_at = True, self._now()

    def purge_api_key(self, value: str) -> None:
        """What Google does 30 days after the delete: lookupKey then finds the project but no name."""
        self.delete_api_key(value)
        self.find_api_key(value).purged = True  # type: ignore[union-attr]

    def find_api_key(self, value: str) -> ApiKey | None:
        """The API key with this value, if the emulator issued it."""
        return self._api_key(value)

    def forbid_key_creation(self, project: str, *, managed: bool = False, enforce: bool = True) -> None:
        """Set the organization policy ``iam.disableServiceAccountKeyCreation`` (``managed``:
        ``iam.managed.disableServiceAccountKeyCreation``) on ``project``: ``enforce: true`` by default."""
        constraint = KEY_CREATION_CONSTRAINTS[1 if managed else 0]
        with self._lock:
            self.org_policies[(project, constraint)] = enforce

    def deny(self, *permissions: str) -> None:
        """Every admin token loses these permissions: their calls answer 403 PERMISSION_DENIED naming them."""
        self.denied.update(permissions)

    def disable_service(self, service: str) -> None:
        """``orgpolicy.googleapis.com``, ``apikeys.googleapis.com``...: its calls answer 403 SERVICE_DISABLED."""
        self.disabled_services.add(service)

    def add_admin_token(self, *, expires_in: int | None = None) -> str:
        """An access token of a principal allowed every IAM key and Monitoring call (no expiry unless told)."""
        return self._issue_token(True, expires_in)

    def add_authn_events(
        self, key_id: str, start: datetime | float, end: datetime | float, bucket_seconds: int = 60, count: int = 1
    ) -> int:
        """Record ``count`` authentications of the key per ``bucket_seconds`` slot of ``[start, end)``; the slot count."""
        if key_id not in self.keys:
            raise KeyError(f"no key {key_id}")
        slots = range(_epoch(start), _epoch(end), bucket_seconds)
        with self._lock:
            self.authn_events.extend(AuthnEvents(key_id, at, at + bucket_seconds, count) for at in slots)
        return len(slots)

    def is_live(self, credentials: str) -> bool:
        """Would the token endpoint accept this credentials JSON (its key exists, enabled, same key pair)?
        For an API key: does it exist, neither deleted nor expired?"""
        if credentials.startswith("AIza"):
            key = self._api_key(credentials)
            return key is not None and not (key.deleted or key.expired)
        try:
            data = json.loads(credentials)
            private = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return False
        key = self.keys.get(data.get("private_key_id", ""))
        return (
            key is not None
            and key.public_key is not None
            and not (key.deleted or key.disabled)
            and key.account.email == data.get("client_email")
            and key.public_key.public_numbers() == private.public_key().public_numbers()
        )

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (or ``*``) and the path glob with ``status``.

        A 429 carries ``Retry-After: retry_after`` unless it is None. ``/token`` faults use OAuth's shape."""
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
            try:
                self._inject_fault(recorded)
                if recorded.path in _TOKEN_PATHS and recorded.method == "POST":
                    return self._token(recorded, f"{request.url.scheme}://{request.url.netloc.decode()}{recorded.path}")
                if recorded.path in _MODELS_PATHS and recorded.method == "GET":
                    return self._list_models(recorded)
                return self._dispatch(recorded)
            except GoogleError as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        for method, pattern, handler, permission in _TABLE:
            match = pattern.match(request.path)
            if match and method == request.method:
                self._authorize(request, permission)
                service = _SERVICES[permission.split(".", 1)[0]]
                if service in self.disabled_services:
                    raise _service_disabled(service, match.groupdict().get("project") or "-")
                if permission in self.denied:
                    raise _denied(permission)
                return _json(200, getattr(self, handler)(match.groupdict(), permission, request))
        raise GoogleError(404, f"The requested URL {request.path} was not found on this server.")

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining > 0 and matches:
                fault.remaining -= 1
                error = _fault_error(fault, oauth=request.path in _TOKEN_PATHS)
                if fault.status == 429 and fault.retry_after is not None:
                    error.headers["retry-after"] = str(fault.retry_after)
                raise error

    def _authorize(self, request: RecordedRequest, permission: str) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise GoogleError(401, _NO_CREDENTIALS)
        token = self.tokens.get(value.strip())
        if token is None or (token.expires_at is not None and token.expires_at <= self._now()):
            raise GoogleError(401, _BAD_CREDENTIALS)
        if not token.admin:
            raise _denied(permission)

    # ---- IAM: projects.serviceAccounts.keys ------------------------------------------------

    def _list_keys(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        account = self._account(params, permission)
        wanted = set(request.params.getlist("keyTypes"))
        wanted.discard("KEY_TYPE_UNSPECIFIED")
        unknown = sorted(wanted - {"USER_MANAGED", "SYSTEM_MANAGED"})
        if unknown:
            raise GoogleError(
                400, f"Invalid value at 'key_types' (ListServiceAccountKeysRequest.KeyType), \"{unknown[0]}\""
            )
        keys = [
            self._key_json(k)
            for k in self.keys.values()
            if k.account is account and not k.deleted and (not wanted or k.key_type in wanted)
        ]
        return {"keys": keys} if keys else {}

    def _get_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        return self._key_json(self._key(params, permission))

    def _disable_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        key = self._key(params, permission)
        reason = _json_body(request).get("serviceAccountKeyDisableReason")
        key.disabled, key.disable_reason = True, reason or key.disable_reason
        return {}

    def _enable_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        key = self._key(params, permission)
        key.disabled, key.disable_reason = False, None
        return {}

    def _delete_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        self._key(params, permission).deleted = True
        return {}

    def _create_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        account = self._account(params, permission)
        body = _json_body(request)
        kind = body.get("privateKeyType", "TYPE_UNSPECIFIED").replace("TYPE_UNSPECIFIED", _FILE)
        algorithm = body.get("keyAlgorithm", "KEY_ALG_UNSPECIFIED").replace("KEY_ALG_UNSPECIFIED", "KEY_ALG_RSA_2048")
        if kind != _FILE:  # TYPE_PKCS12_FILE is real, but not emulated
            raise GoogleError(400, f'The sandbox emulates {_FILE} keys only, not "{kind}".')
        if algorithm not in ("KEY_ALG_RSA_2048", "KEY_ALG_RSA_1024"):
            raise GoogleError(400, f"Invalid value at 'key_algorithm', \"{algorithm}\"")
        for constraint in KEY_CREATION_CONSTRAINTS:
            if self.org_policies.get((account.project, constraint)):
                subject = f"projects/{account.project}/serviceAccounts/{account.email}"
                violation = {
                    "type": f"constraints/{constraint}",
                    "subject": f"{subject}?configvalue={quote(account.email)}",
                    "description": _KEY_CREATION_REFUSED,
                }
                details = [{"@type": "type.googleapis.com/google.rpc.PreconditionFailure", "violations": [violation]}]
                raise GoogleError(400, _KEY_CREATION_REFUSED, "FAILED_PRECONDITION", details)
        mine = [k for k in self.keys.values() if k.account is account and k.key_type == "USER_MANAGED"]
        if sum(not k.deleted for k in mine) >= MAX_USER_KEYS:
            raise GoogleError(400, "Precondition check failed.", "FAILED_PRECONDITION")
        key, credentials = self._new_key(account, algorithm)
        data = base64.b64encode(credentials.encode()).decode()
        return {**self._key_json(key), "privateKeyType": kind, "privateKeyData": data}

    # ---- the token endpoint ----------------------------------------------------------------

    def _token(self, request: RecordedRequest, url: str) -> httpx.Response:
        form = Query(request.body.decode(errors="replace"))
        if form.get("grant_type") != JWT_BEARER:
            raise _oauth("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type') or ''}")
        assertion = form.get("assertion")
        if not assertion:
            raise _oauth("invalid_request", "Missing required parameter: assertion")
        header, claims, signed, signature = _decode_jwt(assertion)
        account = self.accounts.get(str(claims.get("iss")))
        if account is None:
            raise _oauth("invalid_grant", "Invalid grant: account not found")
        key = self._signing_key(account, header.get("kid"), signed, signature)
        now, issued, expires = self._now(), claims.get("iat"), claims.get("exp")
        if not (isinstance(issued, int) and isinstance(expires, int)):
            raise _oauth("invalid_grant", _BAD_TIMES)
        if expires - issued > 3600 or issued > now + 300 or expires <= now:
            raise _oauth("invalid_grant", _BAD_TIMES)
        if claims.get("aud") not in (url, self.token_uri, GOOGLE_TOKEN_URI):
            raise _oauth("invalid_grant", f"Invalid JWT: Failed audience check. The expected value was {url}")
        if not str(claims.get("scope") or "").strip():
            raise _oauth("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = self._issue_token(account.admin, TOKEN_LIFETIME)
        minute = now - now % 60
        self.authn_events.append(AuthnEvents(key.id, minute, minute + 60, 1))
        return _json(200, {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"})

    def _signing_key(self, account: ServiceAccount, kid: object, signed: bytes, signature: bytes) -> Key:
        """The key whose public half verifies the signature (the ``kid`` one, or any key of the account)."""
        for key in self.keys.values():
            if key.account is account and key.public_key is not None and kid in (None, key.id):
                try:
                    key.public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    continue
                if key.deleted or key.disabled:
                    break
                return key
        raise _oauth("invalid_grant", _BAD_SIGNATURE)

    # ---- the Gemini API: models.list, with an API key -------------------------------------

    def _list_models(self, request: RecordedRequest) -> httpx.Response:
        value = request.headers.get("x-goog-api-key") or request.params.get("key") or ""
        if not value:
            raise GoogleError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). Please use API "
                "Key or other form of API consumer identity to call this API.",
            )
        key = self._api_key(value)
        if key is None or key.deleted or key.expired:
            message = "API key expired. Please renew the API key." if key and key.expired else _INVALID_API_KEY
            raise GoogleError(400, message, details=_api_key_details("API_KEY_INVALID", message))
        consumer = f"projects/{key.project_number}"
        if not key.service_enabled:
            message = (
                f"Generative Language API has not been used in project {key.project_number} before or it is "
                f"disabled. Enable it by visiting https://console.developers.google.com/apis/api/{GENERATIVE}/"
                f"overview?project={key.project_number} then retry."
            )
            raise GoogleError(403, message, details=_api_key_details("SERVICE_DISABLED", message, consumer))
        if key.blocked_by is not None:
            reason, message = _RESTRICTIONS[key.blocked_by]
            raise GoogleError(403, message, details=_api_key_details(reason, message, consumer))
        models = [
            {"name": f"models/{model}", "version": "001", "displayName": model, "supportedGenerationMethods": []}
            for model in _MODELS
        ]
        return _json(200, {"models": models})

    # ---- Monitoring: projects.timeSeries.list ----------------------------------------------

    def _list_time_series(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        project, query = params["project"], request.params
        if not any(a.project == project for a in self.accounts.values()):
            raise _denied(permission, f"Permission {permission} denied (or the resource may not exist).")
        terms = _parse_filter(query.get("filter"))
        end = _parse_time(query.get("interval.endTime"), "interval.end_time")
        start = _parse_time(query.get("interval.startTime") or query.get("interval.endTime"), "interval.start_time")
        if start > end:
            raise GoogleError(400, "The start time must be before the end time.")
        period = _alignment(query.get("aggregation.alignmentPeriod"), query.get("aggregation.perSeriesAligner"))
        series: list[tuple[Key, list[tuple[int, int, int]]]] = []
        for key in self.keys.values():
            labels = {
                "metric.type": AUTHN_METRIC,
                "metric.labels.key_id": key.id,
                "resource.type": "iam_service_account",
                "resource.labels.resource_container": key.account.project,
                "resource.labels.location": "global",
                "resource.labels.unique_id": key.account.unique_id,
            }
            if key.account.project != project or any(labels.get(name) != value for name, value in terms.items()):
                continue
            events = [e for e in self.authn_events if e.key_id == key.id and start < e.end <= end]
            points = _aligned(events, end, period)
            if points:
                series.append((key, points))
        return self._series_page(series, query)

    def _series_page(self, series: list[tuple[Key, list[tuple[int, int, int]]]], query: Query) -> Body:
        token = query.get("pageToken")
        try:
            size = max(1, min(self.page_points, int(query.get("pageSize") or self.page_points)))
            offset = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        except ValueError:
            raise GoogleError(400, "Invalid pageSize or pageToken.") from None
        flat = [(key, point) for key, points in series for point in points]
        chunks: list[Body] = []
        for key, (start, end, count) in flat[offset : offset + size]:
            if not chunks or chunks[-1]["metric"]["labels"]["key_id"] != key.id:
                resource = {"resource_container": key.account.project, "location": "global"}
                chunks.append(
                    {
                        "metric": {"type": AUTHN_METRIC, "labels": {"key_id": key.id}},
                        "resource": {
                            "type": "iam_service_account",
                            "labels": resource | {"unique_id": key.account.unique_id},
                        },
                        "metricKind": "DELTA",
                        "valueType": "INT64",
                        "points": [],
                    }
                )
            interval = {"startTime": _rfc3339(start), "endTime": _rfc3339(end)}
            chunks[-1]["points"].append({"interval": interval, "value": {"int64Value": str(count)}})
        body: Body = {"timeSeries": chunks} if chunks else {}
        if offset + size < len(flat):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return body

    # ---- Org Policy v2: projects.policies.getEffectivePolicy ---------------------------------

    def _effective_policy(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        project, constraint = params["project"], params["constraint"]
        name = f"projects/{project_number(project)}/policies/{constraint}"
        enforce = self.org_policies.get((project, constraint))
        return {"name": name} if enforce is None else {"name": name, "spec": {"rules": [{"enforce": enforce}]}}

    # ---- API Keys v2 -------------------------------------------------------------------------

    def _lookup_api_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        key = self._api_key(request.params.get("keyString") or "")
        if key is None:
            raise GoogleError(404, "The API key was not found.")
        parent = f"projects/{key.project_number}"
        return {"parent": parent} if key.purged else {"parent": parent, "name": key.name}

    def _list_api_keys(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        self._api_key_location(params)
        query, project = request.params, params["project"]
        show_deleted = (query.get("showDeleted") or "").lower() == "true"
        keys = [
            k
            for k in self.api_keys.values()
            if project in (k.project, k.project_number) and not k.purged and (show_deleted or not k.deleted)
        ]
        try:
            size = max(1, min(300, int(query.get("pageSize") or 300)))
            offset = int(base64.urlsafe_b64decode(query.get("pageToken") or "").decode() or 0)
        except ValueError:
            raise GoogleError(400, "Invalid pageSize or pageToken.") from None
        body: Body = {"keys": [self._api_key_json(k) for k in keys[offset : offset + size]]}
        if offset + size < len(keys):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return body if body["keys"] else {k: v for k, v in body.items() if k != "keys"}

    def _get_api_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        return self._api_key_json(self._api_key_at(params))

    def _delete_api_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        key = self._api_key_at(params)
        if key.deleted:
            raise GoogleError(404, f"Key {key.name} is already deleted.")
        key.deleted, key.deleted_at = True, self._now()
        return self._operation(key)

    def _create_api_key(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        self._api_key_location(params)
        project = next(
            (k.project for k in self.api_keys.values() if params["project"] in (k.project, k.project_number)),
            params["project"],
        )
        body, key_id = _json_body(request), request.params.get("keyId")
        unknown = sorted(set(body) - {"displayName", "restrictions", "annotations", "serviceAccountEmail"})
        restrictions = body.get("restrictions") or {}
        if not isinstance(restrictions, dict):
            unknown.append("restrictions")
        else:
            unknown += sorted(set(restrictions) - _V2_RESTRICTIONS)
        if unknown:
            raise GoogleError(400, f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'key\'.')
        display = str(body.get("displayName") or "")
        if len(display) > 63:
            raise GoogleError(400, "The display name must be at most 63 characters.")
        if key_id is not None and not _KEY_ID.fullmatch(key_id):
            raise GoogleError(400, f"Invalid key id: {key_id[:64]}.")
        key = ApiKey(
            str(uuid.uuid4()), new_api_key_value(), project, project_number(project), self._now(),
            display_name=display, restrictions=json.loads(json.dumps(restrictions)),
            annotations=dict(body.get("annotations") or {}), service_account=body.get("serviceAccountEmail"),
            key_id=key_id,
        )
        with self._lock:
            if any(k.name == key.name for k in self.api_keys.values()):
                raise GoogleError(409, f"Key {key.name} already exists.", "ALREADY_EXISTS")
            self.api_keys[key.uid] = key
        return self._operation(key)

    def _get_key_string(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        return {"keyString": self._api_key_at(params).value}

    def _get_operation(self, params: dict[str, str], permission: str, request: RecordedRequest) -> Body:
        name = f"operations/{params['operation']}"
        operation = self.operations.get(name)
        if operation is None:
            raise GoogleError(404, f"Operation {name} not found.")
        if self._pending.get(name, 0) > 0:
            self._pending[name] -= 1
            return {"name": name, "done": False}
        return operation

    def _operation(self, key: ApiKey) -> Body:
        """A done Operation whose response is the key (returned not done while ``operation_polls`` > 0)."""
        name = f"operations/akmf.p7-{key.project_number}-{uuid.uuid4()}"
        response = {"@type": "type.googleapis.com/google.api.apikeys.v2.Key", **self._api_key_json(key)}
        self.operations[name] = {"name": name, "done": True, "response": response}
        if self.operation_polls > 0:
            self._pending[name] = self.operation_polls
            return {"name": name, "done": False}
        return self.operations[name]

    def _api_key_location(self, params: dict[str, str]) -> None:
        if params["location"] != "global":
            raise GoogleError(400, "Key is a global resource; the only supported location is global.")

    def _api_key_at(self, params: dict[str, str]) -> ApiKey:
        self._api_key_location(params)
        for key in self.api_keys.values():
            if (
                params["project"] in (key.project, key.project_number)
                and params["key"] == (key.key_id or key.uid)
                and not key.purged
            ):
                return key
        raise GoogleError(404, f"Key projects/{params['project']}/locations/global/keys/{params['key']} not found.")

    def _api_key_json(self, key: ApiKey) -> Body:
        """A V2Key: never the key string (only ``/keyString`` has it)."""
        body: Body = {
            "name": key.name,
            **({"displayName": key.display_name} if key.display_name else {}),
            "createTime": _rfc3339(key.created_at),
            "uid": key.uid,
            "updateTime": _rfc3339(key.deleted_at or key.created_at),
            "etag": base64.b64encode(f"{key.uid}:{key.deleted_at}".encode()).decode()[:24],
        }
        if key.restrictions:
            body["restrictions"] = json.loads(json.dumps(key.restrictions))
        if key.annotations:
            body["annotations"] = dict(key.annotations)
        if key.service_account:
            body["serviceAccountEmail"] = key.service_account
        if key.deleted:
            body["deleteTime"] = _rfc3339(key.deleted_at or key.created_at)
        return body

    # ---- helpers ---------------------------------------------------------------------------

    def _new_key(self, account: ServiceAccount, algorithm: str) -> tuple[Key, str]:
        private = rsa.generate_private_key(public_exponent=65537, key_size=self.key_bits)
        with self._lock:
            key = Key(secrets.token_hex(20), account, self._now(), algorithm=algorithm, public_key=private.public_key())
            self.keys[key.id] = key
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        credentials = {
            "type": "service_account",
            "project_id": account.project,
            "private_key_id": key.id,
            "private_key": pem,
            "client_email": account.email,
            "client_id": account.unique_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{quote(account.email)}",
            "universe_domain": "googleapis.com",
        }
        return key, json.dumps(credentials, indent=2) + "\n"

    def _issue_token(self, admin: bool, lifetime: int | None) -> str:
        value = "ya29.c." + secrets.token_urlsafe(96)
        with self._lock:
            self.tokens[value] = AccessToken(admin, None if lifetime is None else self._now() + lifetime)
        return value

    def _api_key(self, value: str) -> ApiKey | None:
        """The API key with this value (every key compared in constant time)."""
        found = None
        for key in self.api_keys.values():
            if hmac.compare_digest(key.value.encode(), value.encode()):
                found = key
        return found

    def _account(self, params: dict[str, str], permission: str) -> ServiceAccount:
        project, wanted = params["project"], params["account"]
        account = self.accounts.get(wanted) or next((a for a in self.accounts.values() if a.unique_id == wanted), None)
        if account is None or project not in ("-", account.project):
            if project == "-":
                raise _denied(permission)
            raise GoogleError(404, "Unknown service account")
        return account

    def _key(self, params: dict[str, str], permission: str) -> Key:
        account = self._account(params, permission)
        key = self.keys.get(params["key"])
        if key is None or key.deleted or key.account is not account:
            if params["project"] == "-":
                raise _denied(permission)
            raise GoogleError(404, f"Service account key {params['key']} does not exist.")
        return key

    def _key_json(self, key: Key) -> Body:
        body: Body = {
            "name": f"projects/{key.account.project}/serviceAccounts/{key.account.email}/keys/{key.id}",
            "validAfterTime": _rfc3339(key.created_at),
            "validBeforeTime": (
                "9999-12-31T23:59:59Z" if key.key_type == "USER_MANAGED" else _rfc3339(key.created_at + 14 * 86400)
            ),
            "keyAlgorithm": key.algorithm,
            "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": key.key_type,
        }
        if key.disabled:
            body["disabled"] = True
            if key.disable_reason:
                body["disableReason"] = key.disable_reason
        return body

    def _now(self) -> int:
        return _epoch(self._clock())


_INVALID_API_KEY = "API key not valid. Please pass a valid API key."


def _api_key_details(reason: str, message: str, consumer: str | None = None) -> list[Body]:
    """``error.details`` of an API-key refusal: the ``ErrorInfo`` and its ``LocalizedMessage``."""
    metadata = {"service": GENERATIVE, **({"consumer": consumer} if consumer else {})}
    return [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": metadata,
        },
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
    ]


def _denied(permission: str, message: str | None = None) -> GoogleError:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "IAM_PERMISSION_DENIED",
        "domain": permission.split(".", 1)[0] + ".googleapis.com",
        "metadata": {"permission": permission},
    }
    return GoogleError(
        403, message or f"Permission '{permission}' denied on resource (or it may not exist).", details=[info]
    )


def _service_disabled(service: str, project: str) -> GoogleError:
    number = project_number(project) if project != "-" else "0"
    message = (
        f"{service} API has not been used in project {number} before or it is disabled. Enable it by visiting "
        f"https://console.developers.google.com/apis/api/{service}/overview?project={number} then retry."
    )
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "domain": "googleapis.com",
        "metadata": {"service": service, "consumer": f"projects/{number}"},
    }
    return GoogleError(403, message, details=[info])


def _fault_error(fault: _Fault, *, oauth: bool) -> GoogleError:
    default = {429: "Quota exceeded for quota metric 'Requests'.", 500: "Internal error encountered."}
    message = fault.message or default.get(fault.status, "Injected error.")
    error = ("internal_failure" if fault.status >= 500 else "invalid_request") if oauth else None
    return GoogleError(fault.status, message, oauth=error)


def _decode_jwt(assertion: str) -> tuple[Body, Body, bytes, bytes]:
    """Header, claims, signing input and signature of a compact JWS; ``invalid_request`` if it is none."""
    try:
        head, payload, signature = assertion.split(".")
        header, claims = json.loads(_unb64(head)), json.loads(_unb64(payload))
        raw_signature = _unb64(signature)
    except ValueError:
        raise _oauth("invalid_request", "Invalid JWT: the assertion is not a signed JWT.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        raise _oauth("invalid_grant", _BAD_SIGNATURE)
    return header, claims, f"{head}.{payload}".encode(), raw_signature


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


_TERM = re.compile(r'\s*([A-Za-z_][\w.]*)\s*=\s*"([^"\\]*)"\s*')


def _parse_filter(text: str | None) -> dict[str, str]:
    """``a = "x" AND b = "y"`` as ``{a: x, b: y}`` (``metric.label.k`` read as ``metric.labels.k``)."""
    if not text:
        raise GoogleError(400, "Field filter had an invalid value: a metric.type filter is required.")
    terms: dict[str, str] = {}
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.fullmatch(part)
        if not match:
            raise GoogleError(400, f'Field filter had an invalid value of "{text}": could not parse it.')
        terms[re.sub(r"^(metric|resource)\.label\.", r"\1.labels.", match.group(1))] = match.group(2)
    if "metric.type" not in terms:
        raise GoogleError(400, "Field filter had an invalid value: a metric.type filter is required.")
    return terms


def _alignment(period: str | None, aligner: str | None) -> int | None:
    """The alignment period in seconds (None: raw points); ALIGN_SUM and ALIGN_DELTA are emulated."""
    if not period:
        return None
    match = re.fullmatch(r"(\d+)s", period)
    if not match or int(match.group(1)) < 1:
        raise GoogleError(400, f'Field aggregation.alignmentPeriod had an invalid value of "{period}".')
    if aligner not in ("ALIGN_SUM", "ALIGN_DELTA"):
        raise GoogleError(400, "An alignment period requires a per-series aligner (ALIGN_SUM or ALIGN_DELTA).")
    return int(match.group(1))


def _aligned(events: list[AuthnEvents], end: int, period: int | None) -> list[tuple[int, int, int]]:
    """``(start, end, count)`` points, newest first; aligned periods end at ``end``, empty ones are left out."""
    if period is None:
        return sorted(((e.start, e.end, e.count) for e in events), key=lambda p: p[1], reverse=True)
    sums: dict[int, int] = {}
    for event in events:
        slot = (end - event.end) // period
        sums[slot] = sums.get(slot, 0) + event.count
    return [(end - (slot + 1) * period, end - slot * period, total) for slot, total in sorted(sums.items())]


def _parse_time(value: str | None, name: str) -> int:
    try:
        return _epoch(datetime.fromisoformat(str(value)))
    except ValueError:
        raise GoogleError(400, f'Field {name} had an invalid value of "{value}".') from None


def _rfc3339(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_body(request: RecordedRequest) -> Body:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except ValueError:
        raise GoogleError(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
    return body


def _json(status: int, body: Body) -> httpx.Response:
    return httpx.Response(status, json=body)


def _epoch(when: datetime | float) -> int:
    if isinstance(when, datetime):
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
    return int(when)


__all__ = ["AUTHN_METRIC", "ApiKey", "GoogleEmulator", "GoogleError", "RecordedRequest", "new_api_key_value"]
