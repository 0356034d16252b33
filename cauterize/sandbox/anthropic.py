"""A faithful local emulator of Anthropic's Admin API (API keys, Messages usage report, cost report)
and of the ``GET /v1/models`` liveness route.

It follows Anthropic's public API reference and the emulator contract of provider-apis.md 2 and
7.2: every route needs an ``anthropic-version`` header and a key in ``x-api-key`` (or
``Authorization: Bearer``); admin routes take only ``sk-ant-admin01-`` keys; errors use Anthropic's
body ``{"type": "error", "error": {"type", "message"}, "request_id"}`` and every answer carries a
``request-id`` header; key lists page with ``before_id``/``after_id``; usage and cost reports
with ``page``/``next_page``; an inactive, archived or expired key answers 401 ``authentication_error``
on the data plane, and a key of a workspace seeded ``forbidden=True`` answers 403
``permission_error`` (it authenticates, it may not use the resource), as the errors page has them.

    emulator = AnthropicEmulator()
    admin_key = emulator.add_admin_key()
    workspace = emulator.add_workspace("prod")
    key_id, value = emulator.add_key(workspace_id=workspace)
    client = httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.anthropic.com")

``cauterize.sandbox.server.serve(emulator)`` serves the same handler over a real socket. Every
request is recorded in ``emulator.requests``; ``fail_next`` injects 429/5xx/401 answers; every
status or name change made through the API is appended to ``emulator.updates``. Key values are
generated at run time and shaped like real ones; none is ever a real key.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import secrets
import string
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cauterize.sandbox.openai_usage import InvalidParam, Query

Clock = Callable[[], "datetime | float"]
Body = dict[str, Any]

ADMIN_PREFIX = "sk-ant-admin01-"
STATUSES = ("active", "inactive", "archived", "expired")
#: bucket width -> (seconds, default limit, maximum limit) of the Messages usage report
USAGE_WIDTHS = {"1m": (60, 60, 1440), "1h": (3600, 24, 168), "1d": (86400, 7, 31)}
COST_WIDTHS = {"1d": (86400, 7, 31)}
COST_GROUPS = ("workspace_id", "description")
USAGE_GROUPS = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
)
#: array filter -> the dimension it tests (``api_key_ids[]``, ``models[]``, ``context_window[]``...)
_USAGE_FILTERS = {group if group == "context_window" else group + "s": group for group in USAGE_GROUPS}
_TOKENS = ("uncached_input_tokens", "cache_5m", "cache_1h", "cache_read_input_tokens", "output_tokens", "web_search")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_MODELS = (  # id, display name, line, max output tokens
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "opus", 32000),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "sonnet", 64000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "haiku", 64000),
)
#: list prices in USD per million tokens (input, output), for the emulator's cost report only
_PRICES = {"claude-opus-4-1-20250805": (15.0, 75.0), "claude-haiku-4-5-20251001": (1.0, 5.0)}
_DEFAULT_PRICE = (3.0, 15.0)
#: cost-report token types: usage field, price multiple of the input price (output: own price), label
_TOKEN_COSTS = (
    ("uncached_input_tokens", "uncached_input_tokens", 1.0, "Input Tokens"),
    ("output_tokens", "output_tokens", None, "Output Tokens"),
    ("cache_read_input_tokens", "cache_read_input_tokens", 0.1, "Cache Read"),
    ("cache_5m", "cache_creation.ephemeral_5m_input_tokens", 1.25, "5m Cache Write"),
    ("cache_1h", "cache_creation.ephemeral_1h_input_tokens", 2.0, "1h Cache Write"),
)
_WEB_SEARCH_CENTS = 1.0  # $10 per 1,000 searches
_URLSAFE = string.ascii_letters + string.digits + "_-"
_ALNUM = string.ascii_letters + string.digits


def new_key_value(kind: str = "api03") -> str:
    """A fresh random value shaped like an Anthropic key (``api03`` or ``admin01``); never a real key."""
    return f"sk-ant-{kind}-{''.join(secrets.choice(_URLSAFE) for _ in range(93))}AA"


def partial_key_hint(value: str) -> str:
    """How Anthropic lists a key: ``sk-ant-api03-R2D...igAA`` (prefix and 3 characters, ``...``, the last 4)."""
    prefix = re.match(r"sk-ant-[a-z]+\d*-", value)
    head = len(prefix.group(0)) + 3 if prefix else 8
    return f"{value[:head]}...{value[-4:]}"


def _new_id(prefix: str) -> str:
    return prefix + "01" + "".join(secrets.choice(_ALNUM) for _ in range(22))


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
class Workspace:
    id: str
    name: str
    created_at: datetime
    default: bool = False
    forbidden: bool = False  # its keys authenticate but get 403 permission_error on the data plane


@dataclass
class ApiKey:
    id: str
    value: str = field(repr=False)
    name: str
    workspace_id: str  # the real id, also for the default workspace
    created_at: datetime
    created_by: str  # a user id
    owner_type: str  # the principal: "user" | "service_account"
    owner_id: str
    status: str = "active"  # as set; ``expired`` is derived from ``expires_at``
    expires_at: datetime | None = None


@dataclass(frozen=True)
class UsageRecord:
    """Messages usage of one key at one instant (what the usage report aggregates)."""

    at: int
    api_key_id: str
    workspace_id: str | None  # null for the default workspace, as Anthropic reports it
    model: str
    account_id: str | None
    service_account_id: str | None
    uncached_input_tokens: int = 0
    cache_5m: int = 0
    cache_1h: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    web_search: int = 0
    service_tier: str = "standard"
    context_window: str = "0-200k"
    inference_geo: str = "global"
    speed: str = "standard"


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class ApiError(Exception):
    """An answer in Anthropic's error shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")

    def response(self, request_id: str) -> httpx.Response:
        body = {"type": "error", "error": {"type": self.type, "message": self.message}, "request_id": request_id}
        return httpx.Response(self.status, json=body, headers=self.headers)


@dataclass
class _Call:
    params: dict[str, str]
    query: Query
    body: Body
    actor: ApiKey


# method, path, handler name, auth ("admin" | "data")
_ROUTES: list[tuple[str, str, str, str]] = [
    ("GET", "/v1/models", "_list_models", "data"),
    ("GET", "/v1/organizations/api_keys", "_list_api_keys", "admin"),
    ("GET", "/v1/organizations/api_keys/{api_key_id}", "_get_api_key", "admin"),
    ("POST", "/v1/organizations/api_keys/{api_key_id}", "_update_api_key", "admin"),
    ("GET", "/v1/organizations/usage_report/messages", "_usage_messages", "admin"),
    ("GET", "/v1/organizations/cost_report", "_cost_report", "admin"),
]
_TABLE = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), handler, auth)
    for method, path, handler, auth in _ROUTES
]


class AnthropicEmulator:
    """In-memory Anthropic organisation behind an ``httpx`` handler: ``httpx.MockTransport(emulator)``.

    ``dead_key_status`` is what the data plane answers for an inactive, archived or expired key:
    401 ``authentication_error``, as documented; 404 is a knob for what trufflehog reports seeing in
    some disabled cases, which cauterize must read as unknown, not dead."""

    def __init__(self, *, now: Clock | None = None, dead_key_status: int = 401):
        self._clock = now or (lambda: datetime.now(UTC))
        self.dead_key_status = dead_key_status
        self.requests: list[RecordedRequest] = []
        self.updates: list[Body] = []
        self.usage_records: list[UsageRecord] = []
        self.workspaces: dict[str, Workspace] = {}
        self.users: dict[str, str] = {}  # id -> name
        self.service_accounts: dict[str, str] = {}  # id -> name
        self.keys: dict[str, ApiKey] = {}
        self.admin_keys: dict[str, ApiKey] = {}
        self._order: dict[str, int] = {}  # key id -> creation sequence, for cursors
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self.default_workspace = _new_id("wrkspc_")
        self.workspaces[self.default_workspace] = Workspace(self.default_workspace, "Default", self._now(), True)

    # ---- seeding ---------------------------------------------------------------------------

    def add_workspace(self, name: str, *, forbidden: bool = False) -> str:
        """A workspace; ``forbidden``: its keys get 403 ``permission_error`` from the data plane."""
        workspace = Workspace(_new_id("wrkspc_"), name, self._now(), forbidden=forbidden)
        self.workspaces[workspace.id] = workspace
        return workspace.id

    def add_user(self, name: str = "Dana Developer") -> str:
        user_id = _new_id("user_")
        self.users[user_id] = name
        return user_id

    def add_service_account(self, name: str = "deploy bot") -> str:
        sa_id = _new_id("svac_")
        self.service_accounts[sa_id] = name
        return sa_id

    def add_admin_key(self, name: str = "cauterize admin", *, value: str | None = None) -> str:
        """Create an Admin API key and return its value."""
        user = self._default_user()
        key = ApiKey(
            id=_new_id("apikey_"),
            value=value or new_key_value("admin01"),
            name=name,
            workspace_id="",  # admin keys belong to the organisation
            created_at=self._now(),
            created_by=user,
            owner_type="user",
            owner_id=user,
        )
        self.admin_keys[key.id] = key
        return key.value

    def add_key(
        self,
        value: str | None = None,
        name: str = "dev key",
        workspace_id: str | None = None,
        status: str = "active",
        *,
        user_id: str | None = None,
        service_account_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, str]:
        """Create an API key (in the default workspace unless ``workspace_id``); returns ``(key_id, value)``."""
        if status not in ("active", "inactive", "archived"):
            raise ValueError(f"status must be active, inactive or archived, not {status!r}")
        workspace = self.workspaces[workspace_id or self.default_workspace]
        creator = user_id or self._default_user()
        key = ApiKey(
            id=_new_id("apikey_"),
            value=value or new_key_value(),
            name=name,
            workspace_id=workspace.id,
            created_at=self._now(),
            created_by=creator,
            owner_type="service_account" if service_account_id else "user",
            owner_id=service_account_id or creator,
            status=status,
            expires_at=expires_at,
        )
        with self._lock:
            self._order[key.id] = len(self._order)
            self.keys[key.id] = key
        return key.id, key.value

    def add_usage(
        self,
        key_id: str,
        start: datetime,
        end: datetime,
        bucket_seconds: int = 60,
        uncached_input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        web_search_requests: int = 0,
        model: str = "claude-sonnet-4-5-20250929",
    ) -> int:
        """Record the given usage once per ``bucket_seconds`` slot of ``[start, end)``; returns the slot count.

        ``cache_creation_input_tokens`` are reported as 5-minute cache writes."""
        key = self.keys[key_id]
        workspace = self.workspaces[key.workspace_id]
        slots = range(_epoch(start), _epoch(end), bucket_seconds)
        self.usage_records.extend(
            UsageRecord(
                at=at,
                api_key_id=key.id,
                workspace_id=None if workspace.default else workspace.id,
                model=model,
                account_id=key.owner_id if key.owner_type == "user" else None,
                service_account_id=key.owner_id if key.owner_type == "service_account" else None,
                uncached_input_tokens=uncached_input_tokens,
                cache_5m=cache_creation_input_tokens,
                cache_read_input_tokens=cache_read_input_tokens,
                output_tokens=output_tokens,
                web_search=web_search_requests,
            )
            for at in slots
        )
        return len(slots)

    def is_live(self, value: str) -> bool:
        """Would the data plane accept this key value?"""
        key = self._key_by_value(value)
        return key is not None and self._status(key) == "active"

    def fail_next(
        self,
        method: str,
        path_glob: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (or ``*``) and the path glob with ``status``.

        A 429 carries ``retry-after: retry_after``; with ``retry_after=None`` it is the spend-cap
        variant, which has no ``retry-after``."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_glob, status, retry_after, count, message))

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
            headers = {k.lower(): v for k, v in request.headers.items()}
            recorded = RecordedRequest(
                request.method, request.url.path, request.url.query.decode(), headers, request.read()
            )
            self.requests.append(recorded)
            request_id = _new_id("req_")
            try:
                response = self._dispatch(recorded)
            except ApiError as exc:
                response = exc.response(request_id)
            except InvalidParam as exc:
                response = ApiError(400, str(exc)).response(request_id)
            response.headers["request-id"] = request_id
            return response

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining > 0 and matches:
                fault.remaining -= 1
                raise _fault_error(fault)
        for method, pattern, handler, auth in _TABLE:
            match = pattern.match(request.path)
            if match and method == request.method:
                if not request.headers.get("anthropic-version"):
                    raise ApiError(400, "anthropic-version: header is required")
                actor = self._authenticate(request, auth)
                call = _Call(match.groupdict(), Query(request.query), _json_body(request), actor)
                return httpx.Response(200, json=getattr(self, handler)(call))
        raise ApiError(404, f"Not found: {request.method} {request.path}")

    def _authenticate(self, request: RecordedRequest, auth: str) -> ApiKey:
        token = request.headers.get("x-api-key", "").strip()
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        token = token or (bearer.strip() if scheme.lower() == "bearer" else "")
        if not token:
            raise ApiError(401, "x-api-key header is required")
        admin = next((k for k in self.admin_keys.values() if k.value == token and self._status(k) == "active"), None)
        key = self._key_by_value(token)
        live = key if key is not None and self._status(key) == "active" else None
        if auth == "admin" and admin is not None:
            return admin
        if auth == "data" and live is not None:
            if self.workspaces[live.workspace_id].forbidden:
                raise ApiError(403, "Your API key does not have permission to use the specified resource.")
            return live
        if auth == "admin" and live is not None:
            raise ApiError(403, "This API key cannot access the Admin API; an Admin API key is required.")
        if auth == "data" and key is not None:
            raise ApiError(self.dead_key_status, "invalid x-api-key")
        raise ApiError(401, "invalid x-api-key")

    # ---- routes ----------------------------------------------------------------------------

    def _list_models(self, call: _Call) -> Body:
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": name,
                "created_at": "2025-10-01T00:00:00Z",
                "lifecycle": "active",  # required by the SDK's ModelInfo
                "deprecated_at": None,
                "retires_at": None,
                "line": line,
                "max_input_tokens": 200000,
                "max_tokens": max_tokens,
            }
            for model, name, line, max_tokens in _MODELS
        ]
        return {"data": data, "first_id": data[0]["id"], "last_id": data[-1]["id"], "has_more": False}

    def _list_api_keys(self, call: _Call) -> Body:
        query = call.query
        limit = query.integer("limit", 20)
        assert limit is not None
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit: Input should be between 1 and 1000")
        status, workspace, creator = query.get("status"), query.get("workspace_id"), query.get("created_by_user_id")
        if status and status not in STATUSES:
            raise ApiError(400, f"status: Input should be one of {', '.join(STATUSES)}")
        keys = [
            k
            for k in self.keys.values()
            if (not status or self._status(k) == status)
            and (not workspace or k.workspace_id == workspace)
            and (not creator or k.created_by == creator)
        ]
        before, after = query.get("before_id"), query.get("after_id")
        if before and after:
            raise ApiError(400, "before_id and after_id cannot be given together")
        for name, cursor in (("before_id", before), ("after_id", after)):
            if cursor and cursor not in self._order:
                raise ApiError(400, f"{name}: no API key with id '{cursor}'")
        if after:
            keys = [k for k in keys if self._order[k.id] > self._order[after]]
        page = keys[:limit]
        if before:
            keys = [k for k in keys if self._order[k.id] < self._order[before]]
            page = keys[-limit:]
        return {
            "data": [self._key_json(k) for k in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(keys) > limit,
        }

    def _get_api_key(self, call: _Call) -> Body:
        return self._key_json(self._key(call.params["api_key_id"]))

    def _update_api_key(self, call: _Call) -> Body:
        key, body = self._key(call.params["api_key_id"]), call.body
        extra = sorted(set(body) - {"name", "status"})
        if extra:
            raise ApiError(400, f"{extra[0]}: Extra inputs are not permitted")
        name, status = body.get("name"), body.get("status")  # null (the SDK's None): leave as is
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 500):
            raise ApiError(400, "name: String should have between 1 and 500 characters")
        if status is not None:
            current = self._status(key)
            if status == "expired":
                raise ApiError(400, "status: 'expired' cannot be set; a key expires when its expires_at passes")
            if status not in ("active", "inactive", "archived"):
                raise ApiError(400, "status: Input should be 'active', 'inactive' or 'archived'")
            if current == "archived" and status != "archived":
                raise ApiError(400, f"API key {key.id} is archived; an archived key cannot be changed")
            if current == "expired" and status == "active":
                raise ApiError(400, f"API key {key.id} has expired and cannot be re-activated")
        change: Body = {}
        if name is not None and name != key.name:
            key.name = change["name"] = name
        if status is not None and status != key.status:
            key.status = change["status"] = status
        if change:
            self.updates.append({"api_key_id": key.id, "at": self._now(), **change})
        return self._key_json(key)

    def _usage_messages(self, call: _Call) -> Body:
        return usage_page(self.usage_records, call.query, _epoch(self._clock()))

    def _cost_report(self, call: _Call) -> Body:
        return cost_page(self.usage_records, call.query, _epoch(self._clock()))

    # ---- helpers ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        return datetime.fromtimestamp(now, UTC) if isinstance(now, (int, float)) else _aware(now)

    def _status(self, key: ApiKey) -> str:
        if key.status != "archived" and key.expires_at is not None and _aware(key.expires_at) <= self._now():
            return "expired"
        return key.status

    def _default_user(self) -> str:
        return next(iter(self.users)) if self.users else self.add_user()

    def _key(self, key_id: str) -> ApiKey:
        key = self.keys.get(key_id)
        if key is None:
            raise ApiError(404, f"API key {key_id} was not found")
        return key

    def _key_by_value(self, value: str) -> ApiKey | None:
        return next((k for k in self.keys.values() if k.value == value), None)

    def _key_json(self, k: ApiKey) -> Body:
        workspace = self.workspaces[k.workspace_id]
        principal = (
            {"type": "user_actor", "user_id": k.owner_id}
            if k.owner_type == "user"
            else {"type": "service_account_actor", "service_account_id": k.owner_id}
        )
        return {
            "type": "api_key",
            "id": k.id,
            "name": k.name,
            "created_at": _iso(k.created_at),
            "created_by": {"id": k.created_by, "type": "user"},
            "expires_at": _iso(k.expires_at) if k.expires_at else None,
            "partial_key_hint": partial_key_hint(k.value),
            "status": self._status(k),
            "workspace_id": None if workspace.default else workspace.id,
            "scope": {"type": "workspace", "workspace_id": workspace.id},
            "principal": principal,
        }


def usage_page(records: Iterable[UsageRecord], query: Query, now: int) -> Body:
    """The answer of ``GET /v1/organizations/usage_report/messages``: one page of time buckets."""
    window = _ReportWindow(query, now, USAGE_WIDTHS)
    group_by = _report_groups(query, USAGE_GROUPS)
    filters = {fld: set(values) for name, fld in _USAGE_FILTERS.items() if (values := query.getlist(name))}
    sums: dict[tuple[int, tuple], Counter[str]] = defaultdict(Counter)
    for record in window.records(records):
        if all(getattr(record, f) in v for f, v in filters.items()):
            dims = tuple(getattr(record, g) for g in group_by)
            sums[window.index(record), dims].update({t: getattr(record, t) for t in _TOKENS})
    return window.page(sums, lambda dims, total: _usage_result(total, dict(zip(group_by, dims))))


def cost_page(records: Iterable[UsageRecord], query: Query, now: int) -> Body:
    """The answer of ``GET /v1/organizations/cost_report``: daily buckets of costs in cents (decimal
    strings); the item fields (description, cost_type, model, token_type...) are null unless grouped
    by ``description``, ``workspace_id`` null unless grouped by it (and for the default workspace)."""
    window = _ReportWindow(query, now, COST_WIDTHS)
    group_by = _report_groups(query, COST_GROUPS)
    sums: dict[tuple[int, tuple], float] = defaultdict(float)
    for record in window.records(records):
        workspace = (record.workspace_id,) if "workspace_id" in group_by else ()
        for item, cents in _cost_items(record):
            sums[window.index(record), workspace + (item if "description" in group_by else ())] += cents
    return window.page(sums, lambda dims, cents: _cost_result(cents, dims, group_by))


class _ReportWindow:
    """The time buckets one report page covers: ``bucket_width``, ``limit`` and the ``page`` cursor
    applied to ``[starting_at, ending_at)``, buckets snapped to UTC boundaries."""

    def __init__(self, query: Query, now: int, widths: dict[str, tuple[int, int, int]]):
        width = query.get("bucket_width") or "1d"
        if width not in widths:
            raise InvalidParam(f"bucket_width: Input should be {' or '.join(repr(w) for w in widths)}")
        self.seconds, default_limit, max_limit = widths[width]
        start = _timestamp(query, "starting_at")
        self.end = _timestamp(query, "ending_at", now)
        if self.end <= start:
            raise InvalidParam("ending_at: must be later than starting_at")
        limit = query.integer("limit", default_limit)
        assert limit is not None
        if not 1 <= limit <= max_limit:
            raise InvalidParam(f"limit: must be between 1 and {max_limit} for bucket_width {width}")
        self.first = start - start % self.seconds
        cursor = query.get("page")
        if cursor:
            self.first = _decode_page(cursor, self.first, self.seconds)
        self.edges = range(self.first, self.end, self.seconds)[:limit]

    def records(self, records: Iterable[UsageRecord]) -> Iterable[UsageRecord]:
        stop = min(self.end, self.edges[-1] + self.seconds) if self.edges else self.first
        return (record for record in records if self.first <= record.at < stop)

    def index(self, record: UsageRecord) -> int:
        return (record.at - self.first) // self.seconds

    def page(self, sums: dict[tuple[int, tuple], Any], render: Callable[[tuple, Any], Body]) -> Body:
        by_bucket: dict[int, list[Body]] = defaultdict(list)
        for (index, dims), total in sorted(sums.items(), key=lambda item: repr(item[0])):
            by_bucket[index].append(render(dims, total))
        data = [
            {"starting_at": _iso_epoch(edge), "ending_at": _iso_epoch(edge + self.seconds), "results": by_bucket[index]}
            for index, edge in enumerate(self.edges)
        ]
        following = self.first + len(self.edges) * self.seconds
        more = following < self.end
        return {"data": data, "has_more": more, "next_page": _encode_page(following) if more else None}


def _report_groups(query: Query, allowed: tuple[str, ...]) -> tuple[str, ...]:
    groups = query.getlist("group_by")
    for group in groups:
        if group not in allowed:
            raise InvalidParam(f"group_by: '{group}' is not one of {', '.join(allowed)}")
    return tuple(g for g in allowed if g in groups)


def _cost_items(record: UsageRecord) -> Iterable[tuple[tuple, float]]:
    """``((description, cost_type, model, service_tier, context_window, token_type), cents)`` per
    cost line of one usage record."""
    display = {model[0]: model[1] for model in _MODELS}.get(record.model, record.model)
    price_in, price_out = _PRICES.get(record.model, _DEFAULT_PRICE)
    for field_name, token_type, multiple, label in _TOKEN_COSTS:
        tokens = getattr(record, field_name)
        if tokens:
            usd = tokens * (price_out if multiple is None else price_in * multiple) / 1e6
            line = (f"{display} Usage - {label}", "tokens", record.model, record.service_tier, record.context_window)
            yield (*line, token_type), usd * 100
    if record.web_search:
        yield ("Web Search Usage", "web_search", None, None, None, None), record.web_search * _WEB_SEARCH_CENTS


def _cost_result(cents: float, dims: tuple, group_by: tuple[str, ...]) -> Body:
    workspace = dims[0] if "workspace_id" in group_by else None
    item = dims[1 if "workspace_id" in group_by else 0 :] or (None,) * 6
    fields = ("description", "cost_type", "model", "service_tier", "context_window", "token_type")
    return {
        "amount": f"{cents:.6f}".rstrip("0").rstrip("."),
        "currency": "USD",
        **dict(zip(fields, item)),
        "inference_geo": None,
        "workspace_id": workspace,
    }


def _usage_result(total: Counter[str], dims: Body) -> Body:
    return {
        **dict.fromkeys(USAGE_GROUPS),
        **dims,
        "uncached_input_tokens": total["uncached_input_tokens"],
        "cache_creation": {
            "ephemeral_1h_input_tokens": total["cache_1h"],
            "ephemeral_5m_input_tokens": total["cache_5m"],
        },
        "cache_read_input_tokens": total["cache_read_input_tokens"],
        "output_tokens": total["output_tokens"],
        "server_tool_use": {"web_search_requests": total["web_search"]},
    }


def _timestamp(query: Query, name: str, default: int | None = None) -> int:
    raw = query.get(name)
    if not raw:
        if default is None:
            raise InvalidParam(f"{name}: Field required", name)
        return default
    try:
        return _epoch(datetime.fromisoformat(raw))
    except ValueError:
        raise InvalidParam(f"{name}: Input should be an RFC 3339 date-time", name) from None


def _encode_page(edge: int) -> str:
    return "page_" + base64.urlsafe_b64encode(_iso_epoch(edge).encode()).decode().rstrip("=")


def _decode_page(cursor: str, first: int, seconds: int) -> int:
    try:
        token = cursor.removeprefix("page_")
        edge = _epoch(datetime.fromisoformat(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()))
    except ValueError:
        raise InvalidParam("page: invalid page cursor", "page") from None
    if edge < first or (edge - first) % seconds:
        raise InvalidParam("page: the cursor does not belong to this query", "page")
    return edge


def _fault_error(fault: _Fault) -> ApiError:
    if fault.status == 429 and fault.retry_after is not None:
        default = "Number of requests has exceeded your rate limit. Please try again later."
        return ApiError(429, fault.message or default, {"retry-after": str(fault.retry_after)})
    if fault.status == 429:
        return ApiError(429, fault.message or "You have reached your specified API usage limits.")
    defaults = {401: "invalid x-api-key", 403: "Permission denied", 404: "Not found", 529: "Overloaded"}
    return ApiError(fault.status, fault.message or defaults.get(fault.status, "Internal server error"))


def _json_body(request: RecordedRequest) -> Body:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    return body


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _epoch(when: datetime | float) -> int:
    return int(_aware(when).timestamp()) if isinstance(when, datetime) else int(when)


def _iso(when: datetime) -> str:
    return _aware(when).astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _iso_epoch(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "AnthropicEmulator",
    "ApiError",
    "RecordedRequest",
    "cost_page",
    "new_key_value",
    "partial_key_hint",
    "usage_page",
]
