"""A faithful local emulator of OpenAI's admin API and liveness routes (base path ``/v1``).

It follows the public API (shared/specs/openai-openapi.yaml) and the emulator contract of
provider-apis.md 7.1: admin routes take only admin keys, the data plane (``/models``, ``/me``)
takes live project and service-account keys, errors use OpenAI's error body, lists and usage
pages paginate the way the official SDK expects, and deleting a key makes it answer 401 (after
``revocation_delay_s`` of the emulator's clock: the real data plane takes a while to hear of it).
Deleting one service account's key leaves the account and its other keys alive (the 2026 API;
``legacy_service_account_delete=True`` restores the older 400). ``add_admin_key(scopes=[...])``
makes a restricted admin key: a route outside its scopes answers 403 "Missing scopes: ...".
Keys minted with ``expires_in_seconds`` (1..31536000) carry ``expires_at`` and answer 401 once it
passes. tests/sandbox/test_openai_sdk_contract.py drives all of it with the official SDK.

    emulator = OpenAIEmulator()
    admin_key = emulator.add_admin_key()
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    client = httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.openai.com/v1")

``cauterize.sandbox.server.serve(emulator)`` serves the same handler over a real socket. Every
request is recorded in ``emulator.requests``; ``fail_next`` injects 429/5xx/401 answers and
``stall_next`` holds answers back (a provider that hangs). Key
values are generated at run time and shaped like real ones; none is ever a real key.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cauterize.sandbox.openai_usage import InvalidParam, Query, UsageRecord, completions_page, costs_page

Clock = Callable[[], "datetime | float"]
Body = dict[str, Any]

_ALNUM = string.ascii_letters + string.digits
_MARKER = "T3BlbkFJ"  # base64 of "OpenAI", present in every modern OpenAI key
_RATE_LIMIT = "Rate limit reached for requests. Please try again later."
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_MISSING_SCOPES = (
    "You have insufficient permissions for this operation. Missing scopes: {scope}. Check that you have the "
    "correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using "
    "a restricted API key, that it has the necessary scopes."
)
#: the scope a restricted key needs on each data-plane route (answered 401 with _MISSING_SCOPES without it)
_ROUTE_SCOPES = {"/models": "api.model.read"}
#: how a restricted admin key's 403 body looks: OpenAI's error object, ``{"error": "<message>"}`` as
#: some answers have it, or plain text (a proxy)
MISSING_SCOPE_BODIES = ("object", "string", "text")
_SA_ROLES = ("member", "owner")
_MAX_TTL = 31536000  # expires_in_seconds: 1 s .. 365 days


def new_key_value(kind: str = "proj") -> str:
    """A fresh random value shaped like an OpenAI key (``proj``, ``svcacct`` or ``admin``); never a real key."""
    half = 58 if kind == "admin" else 74
    return f"sk-{kind}-{secrets.token_urlsafe(half)[:half]}{_MARKER}{secrets.token_urlsafe(half)[:half]}"


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


@dataclass
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(default=b"", repr=False)

    @property
    def params(self) -> Query:
        return Query(self.query)


@dataclass
class Project:
    id: str
    name: str
    created_at: int
    archived_at: int | None = None


@dataclass
class User:
    id: str
    name: str
    email: str
    created_at: int
    role: str = "owner"


@dataclass
class ServiceAccount:
    id: str
    project_id: str
    name: str
    created_at: int
    role: str = "member"
    deleted: bool = False


@dataclass
class ApiKey:
    id: str
    value: str = field(repr=False)
    project_id: str
    name: str
    created_at: int
    owner_type: str  # "user" | "service_account"
    owner_id: str
    owner_project_access: str = "active"  # "active" | "inactive"
    last_used_at: int | None = None
    deleted: bool = False
    scopes: list[str] = field(default_factory=list)  # a restricted key's scopes; empty: all permissions
    expires_at: int | None = None


@dataclass
class AdminKey:
    id: str
    value: str = field(repr=False)
    name: str
    created_at: int
    owner_id: str
    last_used_at: int | None = None
    expires_at: int | None = None
    deleted: bool = False
    scopes: list[str] | None = None  # a restricted admin key's scopes; None: all permissions


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        shape: str = "object",
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}
        self.shape = shape  # one of MISSING_SCOPE_BODIES

    def response(self) -> httpx.Response:
        if self.shape == "text":
            return httpx.Response(
                self.status, text=self.message, headers={"content-type": "text/plain", **self.headers}
            )
        if self.shape == "string":
            return _json_response(self.status, {"error": self.message}, self.headers)
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return _json_response(self.status, body, self.headers)


@dataclass
class _Call:
    """What a route handler needs: path parameters, query, JSON body and the authenticated key."""

    params: dict[str, str]
    query: Query
    body: Body
    actor: AdminKey | ApiKey


# method, path under /v1, handler name, auth ("admin" | "data")
_ROUTES: list[tuple[str, str, str, str]] = [
    ("GET", "/models", "_list_models", "data"),
    ("GET", "/me", "_me", "data"),
    ("GET", "/organization/projects", "_list_projects", "admin"),
    ("POST", "/organization/projects", "_create_project", "admin"),
    ("GET", "/organization/projects/{project_id}", "_retrieve_project", "admin"),
    ("POST", "/organization/projects/{project_id}/archive", "_archive_project", "admin"),
    ("GET", "/organization/projects/{project_id}/api_keys", "_list_project_api_keys", "admin"),
    ("GET", "/organization/projects/{project_id}/api_keys/{key_id}", "_retrieve_project_api_key", "admin"),
    ("POST", "/organization/projects/{project_id}/api_keys/{key_id}", "_update_project_api_key", "admin"),
    ("DELETE", "/organization/projects/{project_id}/api_keys/{key_id}", "_delete_project_api_key", "admin"),
    ("GET", "/organization/projects/{project_id}/service_accounts", "_list_service_accounts", "admin"),
    ("POST", "/organization/projects/{project_id}/service_accounts", "_create_service_account", "admin"),
    ("GET", "/organization/projects/{project_id}/service_accounts/{sa_id}", "_retrieve_service_account", "admin"),
    ("POST", "/organization/projects/{project_id}/service_accounts/{sa_id}", "_update_service_account", "admin"),
    ("DELETE", "/organization/projects/{project_id}/service_accounts/{sa_id}", "_delete_service_account", "admin"),
    ("POST", "/organization/projects/{project_id}/service_accounts/{sa_id}/api_keys", "_create_sa_key", "admin"),
    ("GET", "/organization/admin_api_keys", "_list_admin_keys", "admin"),
    ("POST", "/organization/admin_api_keys", "_create_admin_key", "admin"),
    ("GET", "/organization/admin_api_keys/{key_id}", "_retrieve_admin_key", "admin"),
    ("DELETE", "/organization/admin_api_keys/{key_id}", "_delete_admin_key", "admin"),
    ("GET", "/organization/usage/completions", "_usage_completions", "admin"),
    ("GET", "/organization/costs", "_costs", "admin"),
    ("GET", "/organization/audit_logs", "_audit_logs", "admin"),
]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


def _admin_scope(method: str, template: str) -> str:
    """The admin-key scope a route needs (the names OpenAI's refusals quote; providers/openai.py
    ADMIN_SCOPES has the sources)."""
    if template.startswith("/organization/usage/") or template == "/organization/costs":
        return "api.usage.read"
    if template == "/organization/audit_logs":
        return "api.audit_logs.read"
    return "api.management.read" if method == "GET" else "api.management.write"


_TABLE = [
    (method, _compile(path), handler, auth, _admin_scope(method, path) if auth == "admin" else _ROUTE_SCOPES.get(path))
    for method, path, handler, auth in _ROUTES
]


class OpenAIEmulator:
    """In-memory OpenAI organisation behind an ``httpx`` handler: ``httpx.MockTransport(emulator)``."""

    def __init__(
        self,
        *,
        now: Clock | None = None,
        base_path: str = "/v1",
        redact_head: int = 8,
        redact_tail: int = 4,
        org_name: str = "Sandbox Org",
        legacy_service_account_delete: bool = False,
        revocation_delay_s: float = 0.0,
        missing_scope_body: str = "object",
    ):
        if missing_scope_body not in MISSING_SCOPE_BODIES:
            raise ValueError(f"missing_scope_body must be one of {', '.join(MISSING_SCOPE_BODIES)}")
        self._clock = now or (lambda: datetime.now(UTC))
        #: an API older than 2026: DELETE .../api_keys/{id} answers 400 for a service account's key
        self.legacy_service_account_delete = legacy_service_account_delete
        #: seconds (emulator clock) a deleted key, or a key of a deleted account or archived project,
        #: still works on the data plane; the admin API shows it deleted at once
        self.revocation_delay_s = revocation_delay_s
        self.missing_scope_body = missing_scope_body
        self._revoked_at: dict[str, float] = {}  # key, service account or project id -> when, in seconds
        self.base_path = base_path.rstrip("/")
        self.redact_head, self.redact_tail = redact_head, redact_tail
        self.org = {"object": "organization", "id": _new_id("org-"), "title": org_name, "role": "owner"}
        self.requests: list[RecordedRequest] = []
        self.audit_events: list[Body] = []
        self.usage_records: list[UsageRecord] = []
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.keys: dict[str, ApiKey] = {}
        self.admin_keys: dict[str, AdminKey] = {}
        self._order: dict[str, int] = {}  # id -> creation sequence, for `after` cursors
        self._faults: list[_Fault] = []
        self._stalls: list[list] = []  # [method, path pattern, seconds, remaining]
        #: paths of the requests ``stall_next`` is holding back (or held), in arrival order
        self.stalled: list[str] = []
        self._lock = threading.RLock()

    # ---- seeding ---------------------------------------------------------------------------

    def add_project(self, name: str, *, archived: bool = False) -> str:
        project = Project(_new_id("proj_"), name, self._now())
        self._remember(self.projects, project)
        if archived:
            self.archive_project(project.id)
        return project.id

    def archive_project(self, project_id: str) -> None:
        """Archive a project: its keys stop working, its service accounts are gone."""
        self.projects[project_id].archived_at = self._now()
        self._revoked_at[project_id] = self._seconds()

    def add_user(self, name: str = "Dana Developer", email: str | None = None) -> str:
        user_id = _new_id("user-")
        email = email or f"{name.lower().replace(' ', '.')}@example.com"
        self._remember(self.users, User(user_id, name, email, self._now()))
        return user_id

    def add_admin_key(
        self, name: str = "cauterize admin", *, value: str | None = None, scopes: list[str] | None = None
    ) -> str:
        """Create an admin key and return its value; with ``scopes`` (e.g. ``["api.management.read"]``)
        a restricted one, refused with 403 "Missing scopes" on routes outside them."""
        key = AdminKey(_new_id("key_", 16), value or new_key_value("admin"), name, self._now(), self._default_user())
        key.scopes = list(scopes) if scopes is not None else None
        self._remember(self.admin_keys, key)
        return key.value

    def add_user_key(
        self,
        project_id: str,
        value: str | None = None,
        name: str = "dev key",
        owner_project_access: str = "active",
        *,
        user_id: str | None = None,
        last_used_at: datetime | int | None = None,
    ) -> tuple[str, str]:
        """Create a user-owned project key; returns ``(key_id, value)``."""
        owner_id = user_id or self._default_user()
        return self._add_key(
            project_id, value or new_key_value("proj"), name, "user", owner_id, owner_project_access, last_used_at
        )

    def add_service_account(self, project_id: str, name: str = "deploy bot") -> str:
        """Create a service account without a key; returns its id."""
        sa = ServiceAccount(_new_id("svc_acct_"), self._project(project_id).id, name, self._now())
        self._remember(self.service_accounts, sa)
        return sa.id

    def add_service_account_key(
        self,
        project_id: str,
        sa_id: str,
        value: str | None = None,
        name: str = "Secret Key",
        *,
        last_used_at: datetime | int | None = None,
    ) -> tuple[str, str]:
        """Create a key owned by a service account; returns ``(key_id, value)``."""
        if self.service_accounts[sa_id].project_id != project_id:
            raise ValueError(f"service account {sa_id} is not in project {project_id}")
        value = value or new_key_value("svcacct")
        return self._add_key(project_id, value, name, "service_account", sa_id, "active", last_used_at)

    def _add_key(
        self,
        project_id: str,
        value: str,
        name: str,
        owner_type: str,
        owner_id: str,
        access: str,
        last_used_at: datetime | int | None,
    ) -> tuple[str, str]:
        key = ApiKey(
            id=_new_id("key_", 16),
            value=value,
            project_id=self._project(project_id).id,
            name=name,
            created_at=self._now(),
            owner_type=owner_type,
            owner_id=owner_id,
            owner_project_access=access,
            last_used_at=_epoch_or_none(last_used_at),
        )
        self._remember(self.keys, key)
        return key.id, key.value

    def add_usage(
        self,
        key_id: str,
        project_id: str | None,
        start: datetime,
        end: datetime,
        bucket_seconds: int = 60,
        input_tokens: int = 0,
        output_tokens: int = 0,
        requests: int = 0,
        *,
        model: str = "gpt-4o-mini",
        input_cached_tokens: int = 0,
    ) -> int:
        """Record the given usage once per ``bucket_seconds`` slot of ``[start, end)``; returns the slot count."""
        key = self.keys[key_id]
        slots = range(_epoch(start), _epoch(end), bucket_seconds)
        self.usage_records.extend(
            UsageRecord(
                at=at,
                project_id=project_id or key.project_id,
                api_key_id=key_id,
                user_id=key.owner_id if key.owner_type == "user" else None,
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                input_cached_tokens=input_cached_tokens,
                requests=requests,
            )
            for at in slots
        )
        return len(slots)

    def restrict_key(self, key_id: str, scopes: list[str]) -> None:
        """What a person does in the console (the key's permissions set to Restricted): the key gets
        ``scopes`` and the audit log an ``api_key.updated`` event by that person's session."""
        key = self.keys[key_id]
        key.scopes = list(scopes)
        user = self.users[self._default_user()]
        session = {"type": "session", "session": {"user": {"id": user.id, "email": user.email}, "ip_address": "127.0.0.1"}}
        self._audit("api_key.updated", key.project_id, {"id": key.id, "changes_requested": {"scopes": key.scopes}}, session)

    def is_live(self, value: str) -> bool:
        """Would the data plane accept this key value (now, by the emulator's clock)?"""
        key = self._key_by_value(value)
        return key is not None and self._alive(key)

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status``.

        ``path_pattern`` is a glob over the path, with or without the ``/v1`` prefix; ``method``
        may be ``*``. A 429 carries ``Retry-After: retry_after`` unless ``retry_after`` is None.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message))

    def stall_next(self, method: str, path_pattern: str, seconds: float, count: int = 1) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` before answering them (outside the
        emulator's lock: other requests are answered meanwhile). Patterns as for ``fail_next``."""
        with self._lock:
            self._stalls.append([method.upper(), path_pattern, seconds, count])

    def _stall(self, request: httpx.Request) -> None:
        with self._lock:
            for stall in self._stalls:
                method, pattern, seconds, remaining = stall
                if remaining > 0 and method in ("*", request.method) and self._path_matches(request.url.path, pattern):
                    stall[3] -= 1
                    self.stalled.append(request.url.path)
                    break
            else:
                return
        time.sleep(seconds)

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path glob."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or self._path_matches(r.path, path))
        ]

    # ---- the handler -----------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self._stall(request)
        with self._lock:
            path = request.url.path
            recorded = RecordedRequest(
                request.method,
                path,
                request.url.query.decode(),
                {k.lower(): v for k, v in request.headers.items()},
                request.read(),
            )
            self.requests.append(recorded)
            try:
                return self._dispatch(recorded)
            except ApiError as exc:
                return exc.response()
            except InvalidParam as exc:
                return ApiError(400, str(exc), param=exc.param).response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        self._inject_fault(request)
        if not request.path.startswith(self.base_path + "/"):
            raise ApiError(404, f"Invalid URL ({request.method} {request.path})")
        sub = request.path[len(self.base_path) :]
        for method, pattern, handler, auth, scope in _TABLE:
            match = pattern.match(sub)
            if match and method == request.method:
                actor = self._authenticate(request, auth)
                _require_scope(actor, scope, self.missing_scope_body)
                call = _Call(match.groupdict(), Query(request.query), _json_body(request), actor)
                return _json_response(200, getattr(self, handler)(call))
        raise ApiError(404, f"Invalid URL ({request.method} {request.path})")

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            if (
                fault.remaining > 0
                and fault.method in ("*", request.method)
                and self._path_matches(request.path, fault.pattern)
            ):
                fault.remaining -= 1
                raise _fault_error(fault)

    def _path_matches(self, path: str, pattern: str) -> bool:
        short = path[len(self.base_path) :] if path.startswith(self.base_path + "/") else path
        return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(short, pattern)

    def _authenticate(self, request: RecordedRequest, auth: str) -> AdminKey | ApiKey:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        now = self._now()
        admin = next(
            (
                k
                for k in self.admin_keys.values()
                if k.value == token and not k.deleted and (k.expires_at is None or k.expires_at > now)
            ),
            None,
        )
        key = self._key_by_value(token)
        live_key = key if key is not None and self._alive(key) else None
        principal: AdminKey | ApiKey | None = admin if auth == "admin" else live_key
        if principal is not None:
            principal.last_used_at = now
            return principal
        if admin is not None or live_key is not None:
            raise ApiError(
                403,
                "You have insufficient permissions for this operation. Missing scopes: "
                + ("api.management.read." if auth == "admin" else "api.model.read."),
            )
        raise ApiError(
            401,
            f"Incorrect API key provided: {_mask(token)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    # ---- data plane ------------------------------------------------------------------------

    def _list_models(self, call: _Call) -> Body:
        models = ("gpt-4o-mini", "gpt-4o", "gpt-4.1")
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in models],
        }

    def _me(self, call: _Call) -> Body:
        key = call.actor
        assert isinstance(key, ApiKey)
        owner = self.users.get(key.owner_id)
        name = owner.name if owner else self.service_accounts[key.owner_id].name
        return {
            "object": "user",
            "id": key.owner_id,
            "name": name,
            "email": owner.email if owner else None,
            "orgs": {"object": "list", "data": [dict(self.org)]},
        }

    # ---- projects --------------------------------------------------------------------------

    def _list_projects(self, call: _Call) -> Body:
        include_archived = call.query.boolean("include_archived") or False
        projects = [p for p in self.projects.values() if include_archived or p.archived_at is None]
        return self._list(projects, call.query, self._project_json)

    def _create_project(self, call: _Call) -> Body:
        name = call.body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Missing required parameter: 'name'.", param="name")
        return self._project_json(self.projects[self.add_project(name)])

    def _retrieve_project(self, call: _Call) -> Body:
        return self._project_json(self._project(call.params["project_id"]))

    def _archive_project(self, call: _Call) -> Body:
        project = self._project(call.params["project_id"])
        self.archive_project(project.id)
        self._audit("project.archived", project.id, {"id": project.id}, call.actor)
        return self._project_json(project)

    # ---- project API keys ------------------------------------------------------------------

    def _list_project_api_keys(self, call: _Call) -> Body:
        project = self._project(call.params["project_id"])
        access = call.query.get("owner_project_access") or "active"
        if access not in ("active", "inactive", "any"):
            raise ApiError(
                400, "Invalid 'owner_project_access': expected active, inactive or any.", param="owner_project_access"
            )
        keys = [
            k
            for k in self.keys.values()
            if k.project_id == project.id and not k.deleted and access in ("any", k.owner_project_access)
        ]
        return self._list(keys, call.query, self._key_json)

    def _retrieve_project_api_key(self, call: _Call) -> Body:
        return self._key_json(self._project_key(call))

    def _update_project_api_key(self, call: _Call) -> Body:
        """Replace a key's scopes and/or set its expiry relative to now (neither may be null)."""
        key, body = self._project_key(call), call.body
        if "scopes" not in body and "expires_in_seconds" not in body:
            raise ApiError(400, "Provide at least one of 'scopes' or 'expires_in_seconds'.")
        if key.expires_at is not None and key.expires_at <= self._now():
            raise ApiError(400, f"API key '{key.id}' has expired and cannot be updated.")
        changes: Body = {}
        if "scopes" in body:
            key.scopes = changes["scopes"] = _scopes(body["scopes"])
        if "expires_in_seconds" in body:
            changes["expires_in_seconds"] = ttl = _ttl(body["expires_in_seconds"], nullable=False)
            key.expires_at = self._now() + ttl
        self._audit("api_key.updated", key.project_id, {"id": key.id, "changes_requested": changes}, call.actor)
        return self._key_json(key)

    def _delete_project_api_key(self, call: _Call) -> Body:
        key = self._project_key(call)
        if key.owner_type == "service_account" and self.legacy_service_account_delete:
            raise ApiError(
                400, "API keys owned by a service account cannot be deleted. Delete the service account instead."
            )
        self._delete_key(key)
        self._audit("api_key.deleted", key.project_id, {"id": key.id}, call.actor)
        return {"object": "organization.project.api_key.deleted", "id": key.id, "deleted": True}

    # ---- service accounts ------------------------------------------------------------------

    def _list_service_accounts(self, call: _Call) -> Body:
        project = self._open_project(call.params["project_id"])
        accounts = [s for s in self.service_accounts.values() if s.project_id == project.id and not s.deleted]
        return self._list(accounts, call.query, self._sa_json)

    def _create_service_account(self, call: _Call) -> Body:
        project = self._open_project(call.params["project_id"])
        name = call.body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Missing required parameter: 'name'.", param="name")
        only = bool(call.body.get("create_service_account_only"))
        ttl = _ttl(call.body.get("expires_in_seconds"))
        if only and ttl is not None:
            raise ApiError(
                400,
                "'expires_in_seconds' cannot be used with 'create_service_account_only'.",
                param="expires_in_seconds",
            )
        sa = self.service_accounts[self.add_service_account(project.id, name)]
        sa.role = "none" if only else "member"
        self._audit("service_account.created", project.id, {"id": sa.id, "data": {"role": sa.role}}, call.actor)
        api_key = None if only else self._mint_sa_key(sa, "Secret Key", call.actor, ttl=ttl)
        return {**self._sa_json(sa), "api_key": api_key}

    def _retrieve_service_account(self, call: _Call) -> Body:
        return self._sa_json(self._service_account(call))

    def _update_service_account(self, call: _Call) -> Body:
        sa = self._service_account(call)
        role = call.body.get("role")
        if role is not None and role not in _SA_ROLES:
            raise ApiError(400, f"Invalid value for 'role': expected one of {', '.join(_SA_ROLES)}.", param="role")
        sa.name = call.body.get("name") or sa.name
        sa.role = role or sa.role
        self._audit(
            "service_account.updated", sa.project_id, {"id": sa.id, "changes_requested": {"role": sa.role}}, call.actor
        )
        return self._sa_json(sa)

    def _delete_service_account(self, call: _Call) -> Body:
        sa = self._service_account(call)
        sa.deleted = True
        self._revoked_at[sa.id] = self._seconds()
        for key in self.keys.values():
            if key.owner_type == "service_account" and key.owner_id == sa.id and not key.deleted:
                self._delete_key(key)
                self._audit("api_key.deleted", key.project_id, {"id": key.id}, call.actor)
        self._audit("service_account.deleted", sa.project_id, {"id": sa.id}, call.actor)
        return {"object": "organization.project.service_account.deleted", "id": sa.id, "deleted": True}

    def _create_sa_key(self, call: _Call) -> Body:
        sa = self._service_account(call)
        scopes = _scopes(call.body.get("scopes", []))
        ttl = _ttl(call.body.get("expires_in_seconds"))
        return self._mint_sa_key(sa, call.body.get("name") or "Secret Key", call.actor, scopes, ttl)

    def _mint_sa_key(
        self,
        sa: ServiceAccount,
        name: str,
        actor: AdminKey | ApiKey,
        scopes: list[str] | None = None,
        ttl: int | None = None,
    ) -> Body:
        key = self.keys[self.add_service_account_key(sa.project_id, sa.id, name=name)[0]]
        key.scopes = list(scopes or [])
        key.expires_at = key.created_at + ttl if ttl is not None else None
        self._audit("api_key.created", sa.project_id, {"id": key.id, "data": {"scopes": key.scopes}}, actor)
        return {
            "object": "organization.project.service_account.api_key",
            "value": key.value,
            "name": key.name,
            "created_at": key.created_at,
            "id": key.id,
            "expires_at": key.expires_at,
        }

    # ---- admin API keys --------------------------------------------------------------------

    def _list_admin_keys(self, call: _Call) -> Body:
        keys = [k for k in self.admin_keys.values() if not k.deleted]
        if call.query.get("order") == "desc":
            keys.reverse()
        return self._list(keys, call.query, self._admin_key_json)

    def _create_admin_key(self, call: _Call) -> Body:
        name = call.body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Missing required parameter: 'name'.", param="name")
        ttl = _ttl(call.body.get("expires_in_seconds"))
        key = self._admin_key(self.add_admin_key(name))
        key.expires_at = key.created_at + ttl if ttl is not None else None
        return {**self._admin_key_json(key), "value": key.value}

    def _retrieve_admin_key(self, call: _Call) -> Body:
        return self._admin_key_json(self._admin_key_by_id(call.params["key_id"]))

    def _delete_admin_key(self, call: _Call) -> Body:
        key = self._admin_key_by_id(call.params["key_id"])
        key.deleted = True
        self._audit("api_key.deleted", None, {"id": key.id}, call.actor)
        return {"id": key.id, "object": "organization.admin_api_key.deleted", "deleted": True}

    # ---- usage, costs, audit logs ----------------------------------------------------------

    def _usage_completions(self, call: _Call) -> Body:
        return completions_page(self.usage_records, call.query, self._now())

    def _costs(self, call: _Call) -> Body:
        return costs_page(self.usage_records, call.query, self._now())

    def _audit_logs(self, call: _Call) -> Body:
        query, bounds = call.query, call.query.nested("effective_at")
        tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        filters = {
            "type": set(query.getlist("event_types")),
            "project": set(query.getlist("project_ids")),
            "resource": set(query.getlist("resource_ids")),
            "actor": set(query.getlist("actor_ids")),
        }
        events = [
            e
            for e in reversed(self.audit_events)
            if all(not wanted or _audit_field(e, name) in wanted for name, wanted in filters.items())
            and all(tests[op](e["effective_at"], int(v)) for op, v in bounds.items() if op in tests)
        ]
        return self._list(events, query, dict, key=lambda e: e["id"])

    def _audit(self, type_: str, project_id: str | None, details: Body, actor: AdminKey | ApiKey | Body) -> None:
        event: Body = {
            "id": _new_id("audit_log-", 12),
            "type": type_,
            "effective_at": self._now(),
            "actor": actor if isinstance(actor, dict) else self._actor_json(actor),
            type_: details,
        }
        if project_id is not None:
            event["project"] = {"id": project_id, "name": self.projects[project_id].name}
        self._order[event["id"]] = len(self._order)
        self.audit_events.append(event)

    # ---- helpers ---------------------------------------------------------------------------

    def _list(
        self, items: list, query: Query, render: Callable[[Any], Body], key: Callable[[Any], str] = lambda item: item.id
    ) -> Body:
        limit = min(100, max(1, query.integer("limit", 20) or 1))
        after = query.get("after")
        if after:
            if after not in self._order:
                raise ApiError(400, f"Invalid 'after': no object with id '{after}'.", param="after")
            ids = [key(item) for item in items]
            items = (
                items[ids.index(after) + 1 :]
                if after in ids
                else [item for item in items if self._order[key(item)] > self._order[after]]
            )
        page = [render(item) for item in items[:limit]]
        first = key(items[0]) if page else None
        last = key(items[len(page) - 1]) if page else None
        return {"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": len(items) > limit}

    def _remember(self, table: dict, item: Any) -> None:
        with self._lock:
            self._order[item.id] = len(self._order)
            table[item.id] = item

    def _now(self) -> int:
        return _epoch(self._clock())

    def _default_user(self) -> str:
        return next(iter(self.users)) if self.users else self.add_user()

    def _seconds(self) -> float:
        when = self._clock()
        if isinstance(when, datetime):
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        return float(when)

    def _delete_key(self, key: ApiKey) -> None:
        key.deleted = True
        self._revoked_at[key.id] = self._seconds()

    def _alive(self, key: ApiKey) -> bool:
        """Does the data plane accept the key? A revocation (of the key, its service account or its
        project) takes ``revocation_delay_s`` to reach it; one with no recorded time (a test set
        ``deleted`` by hand) at once."""
        project = self.projects[key.project_id]
        sa = self.service_accounts.get(key.owner_id)
        revoked = [
            thing.id
            for thing, gone in ((key, key.deleted), (project, project.archived_at is not None), (sa, sa and sa.deleted))
            if gone
        ]
        now = self._seconds()
        if key.expires_at is not None and key.expires_at <= now:
            return False
        return all(
            thing in self._revoked_at and now < self._revoked_at[thing] + self.revocation_delay_s for thing in revoked
        )

    def _key_by_value(self, value: str) -> ApiKey | None:
        return next((k for k in self.keys.values() if k.value == value), None)

    def _project(self, project_id: str) -> Project:
        try:
            return self.projects[project_id]
        except KeyError:
            raise ApiError(404, f"No such project: '{project_id}'.") from None

    def _open_project(self, project_id: str) -> Project:
        project = self._project(project_id)
        if project.archived_at is not None:
            raise ApiError(400, f"Project '{project_id}' is archived.")
        return project

    def _project_key(self, call: _Call) -> ApiKey:
        key = self.keys.get(call.params["key_id"])
        if key is None or key.deleted or key.project_id != call.params["project_id"]:
            raise ApiError(404, f"No such API key: '{call.params['key_id']}'.")
        return key

    def _service_account(self, call: _Call) -> ServiceAccount:
        sa = self.service_accounts.get(call.params["sa_id"])
        if sa is None or sa.deleted or sa.project_id != call.params["project_id"]:
            raise ApiError(404, f"No such service account: '{call.params['sa_id']}'.")
        return sa

    def _admin_key(self, value: str) -> AdminKey:
        return next(k for k in self.admin_keys.values() if k.value == value)

    def _admin_key_by_id(self, key_id: str) -> AdminKey:
        key = self.admin_keys.get(key_id)
        if key is None or key.deleted:
            raise ApiError(404, f"No such admin API key: '{key_id}'.")
        return key

    def _redacted(self, value: str) -> str:
        return f"{value[: self.redact_head]}...{value[-self.redact_tail :] if self.redact_tail else ''}"

    def _project_json(self, p: Project) -> Body:
        return {
            "id": p.id,
            "object": "organization.project",
            "name": p.name,
            "created_at": p.created_at,
            "archived_at": p.archived_at,
            "status": "archived" if p.archived_at else "active",
        }

    def _user_json(self, user_id: str) -> Body:
        u = self.users[user_id]
        return {"id": u.id, "email": u.email, "name": u.name, "created_at": u.created_at, "role": u.role}

    def _sa_json(self, sa: ServiceAccount) -> Body:
        return {
            "object": "organization.project.service_account",
            "id": sa.id,
            "name": sa.name,
            "role": sa.role,
            "created_at": sa.created_at,
        }

    def _key_json(self, k: ApiKey) -> Body:
        if k.owner_type == "user":
            owner: Body = {"type": "user", "user": self._user_json(k.owner_id)}
        else:
            sa = self.service_accounts[k.owner_id]
            owner = {
                "type": "service_account",
                "service_account": {"id": sa.id, "name": sa.name, "created_at": sa.created_at, "role": sa.role},
            }
        return {
            "object": "organization.project.api_key",
            "redacted_value": self._redacted(k.value),
            "name": k.name,
            "created_at": k.created_at,
            "last_used_at": k.last_used_at,
            "id": k.id,
            "owner_project_access": k.owner_project_access,
            "owner": owner,
            "expires_at": k.expires_at,
        }

    def _admin_key_json(self, k: AdminKey) -> Body:
        owner = {"type": "user", "object": "organization.user", **self._user_json(k.owner_id), "role": "owner"}
        return {
            "object": "organization.admin_api_key",
            "id": k.id,
            "name": k.name,
            "redacted_value": self._redacted(k.value),
            "created_at": k.created_at,
            "expires_at": k.expires_at,
            "last_used_at": k.last_used_at,
            "owner": owner,
        }

    def _actor_json(self, actor: AdminKey | ApiKey) -> Body:
        if isinstance(actor, AdminKey) or actor.owner_type == "user":
            user = self.users[actor.owner_id]
            return {
                "type": "api_key",
                "api_key": {"id": actor.id, "type": "user", "user": {"id": user.id, "email": user.email}},
            }
        return {
            "type": "api_key",
            "api_key": {"id": actor.id, "type": "service_account", "service_account": {"id": actor.owner_id}},
        }


def _fault_error(fault: _Fault) -> ApiError:
    if fault.status == 429:
        headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
        return ApiError(429, fault.message or _RATE_LIMIT, "requests", "rate_limit_exceeded", headers=headers)
    if fault.status >= 500:
        return ApiError(fault.status, fault.message or _SERVER_ERROR, "server_error")
    if fault.status == 401:
        return ApiError(401, fault.message or "Invalid authorization header.", code="invalid_api_key")
    if fault.status == 403:
        return ApiError(403, fault.message or "You have insufficient permissions for this operation.")
    if fault.status == 404:
        return ApiError(404, fault.message or "Not found.")
    return ApiError(fault.status, fault.message or "Injected error.")


def _ttl(value: Any, *, nullable: bool = True) -> int | None:
    """A validated ``expires_in_seconds`` (1..31536000); None when absent or null (if allowed)."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_TTL:
        raise ApiError(
            400,
            f"Invalid 'expires_in_seconds': expected an integer between 1 and {_MAX_TTL}.",
            param="expires_in_seconds",
        )
    return value


def _scopes(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ApiError(400, "Invalid type for 'scopes': expected an array of strings.", param="scopes")
    return list(value)


def _audit_field(event: Body, name: str) -> str | None:
    if name == "type":
        return event["type"]
    if name == "project":
        return (event.get("project") or {}).get("id")
    if name == "resource":
        return (event.get(event["type"]) or {}).get("id")
    return ((event.get("actor") or {}).get("api_key") or {}).get("id")


def _json_body(request: RecordedRequest) -> Body:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _json_response(status: int, body: Body, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json=body, headers={"x-request-id": "req_" + secrets.token_hex(16), **(headers or {})}
    )


def _mask(token: str) -> str:
    """How OpenAI echoes a rejected key: a few leading characters, stars, the last four."""
    if len(token) <= 12:
        return "*" * len(token)
    return token[:8] + "*" * min(len(token) - 12, 32) + token[-4:]


def _epoch(when: datetime | float) -> int:
    if isinstance(when, datetime):
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)
        return int(aware.timestamp())
    return int(when)


def _epoch_or_none(when: datetime | float | None) -> int | None:
    return None if when is None else _epoch(when)


__all__ = ["ApiError", "OpenAIEmulator", "RecordedRequest", "new_key_value"]


def _require_scope(actor: AdminKey | ApiKey, scope: str | None, admin_shape: str = "object") -> None:
    """A restricted key without the route's scope authenticates but is refused: OpenAI answers a
    project key 401 with "insufficient permissions ... Missing scopes", code null (not
    ``invalid_api_key``), and an admin key 403 (in ``admin_shape``, one of MISSING_SCOPE_BODIES)."""
    if scope and isinstance(actor, ApiKey) and actor.scopes and scope not in actor.scopes:
        raise ApiError(401, _MISSING_SCOPES.format(scope=scope))
    if scope and isinstance(actor, AdminKey) and actor.scopes is not None and scope not in actor.scopes:
        raise ApiError(403, _MISSING_SCOPES.format(scope=scope), shape=admin_shape)
