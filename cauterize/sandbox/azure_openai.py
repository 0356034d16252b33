"""A faithful local emulator of Azure OpenAI's key surfaces: ARM (management) and the data plane.

Two faces behind one handler, routed by path (provider-apis.md 4 and 7.4):

* **ARM**, as ``azure-mgmt-cognitiveservices`` calls it: account lists (by subscription or by
  resource group, paged with an absolute ``nextLink``), account GET and PATCH
  (``properties.disableLocalAuth``), ``listKeys``, ``regenerateKey``, and the Azure Monitor metrics
  of an account (``{resourceId}/providers/Microsoft.Insights/metrics``): one series per account and
  metric, no key dimension, as in Azure. Every ARM call needs ``api-version`` (else 400
  ``MissingApiVersionParameter``) and ``Authorization: Bearer`` with a token from
  ``add_admin_token()`` (else 401 ``InvalidAuthenticationToken``); a token may be limited to some
  actions (403 ``AuthorizationFailed``). Errors are ``{"error": {"code", "message"}}``; answers
  carry ``x-ms-ratelimit-remaining-subscription-reads|writes``; paths are case-insensitive.
* **The data plane**, with header ``api-key``: ``GET /openai/models?api-version=...`` (Models - List)
  and the v1 API's ``GET /openai/v1/models`` (``api-version`` optional: ``v1`` or ``preview``): 200
  ``{data, object: "list"}``, or 401 ``{"error": {"code": "401", "message": "Access denied..."}}``,
  or 403 ``AuthenticationTypeDisabled`` when key authentication is off. ``api-version`` is checked
  as Azure does: missing, 404 ``Resource not found``; retired or unknown (``2023-03-15-preview``),
  400 ``BadRequest`` "API version not supported". ``data_api_versions`` says which are served
  (``DATA_API_VERSIONS`` by default); ``/openai/deployments``, gone from every served version,
  answers 404.

Host independence: Azure pins the account through the host name (``{account}.openai.azure.com``).
One emulator serves every account behind one base URL, so the data-plane route accepts the key of
any account and records which account it matched in ``RecordedRequest.account``; tests assert that
field where Azure would have used the host. ``regenerateKey`` replaces the slot's value at once:
the old value answers 401 from then on.

    emulator = AzureOpenAIEmulator()
    token = emulator.add_admin_token()
    key1, key2 = emulator.add_account(subscription, "rg-prod", "contoso-openai")
    arm = httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://management.azure.com")

``cauterize.sandbox.server.serve(emulator)`` serves the same handler over a real socket. Requests
are recorded in ``emulator.requests``; ``fail_next`` injects 401/403/404/429/5xx answers. Key values
(32 lowercase hex, or the 84-character format) and tokens are generated at run time.
"""

from __future__ import annotations

import base64
import fnmatch
import hmac
import json
import re
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

Clock = Callable[[], "datetime | float"]
Body = dict[str, Any]

_ALNUM = string.ascii_letters + string.digits
_PROVIDER = "/providers/Microsoft.CognitiveServices/accounts"
_ACCOUNT = "/subscriptions/{subscription}/resourceGroups/{resource_group}" + _PROVIDER + "/{account}"
_INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
#: metric name -> (localized name, MetricRecord field)
METRICS = {
    "ProcessedPromptTokens": ("Processed Prompt Tokens", "prompt_tokens"),
    "GeneratedTokens": ("Generated Completion Tokens", "generated_tokens"),
    "AzureOpenAIRequests": ("Azure OpenAI Requests", "requests"),
}
INTERVALS = {
    "PT1M": 60,
    "PT5M": 300,
    "PT15M": 900,
    "PT30M": 1800,
    "PT1H": 3600,
    "PT6H": 21600,
    "PT12H": 43200,
    "P1D": 86400,
}
_AGGREGATIONS = ("total", "count")  # what Count metrics such as these are read with
#: data-plane api-versions served: the GA releases (2024-10-21 the latest) and current previews; the
#: retired previews (2023-03-15-preview ... 2023-12-01-preview, retired 2024) are refused
DATA_API_VERSIONS = frozenset(
    {"2024-06-01", "2024-10-21", "2025-03-01-preview", "2025-04-01-preview", "2025-05-01-preview"}
)
_V1_API_VERSIONS = ("v1", "preview")
#: the base models Models - List returns for every account (its deployments are added to them)
_BASE_MODELS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")


def new_key_value(key_format: str = "extended") -> str:
    """A fresh random account key: ``legacy`` (32 lowercase hex) or ``extended`` (84 characters:
    52 random, the ``JQQJ99`` marker, 22 random, ``ACOG``). Never a real key."""
    if key_format == "legacy":
        return secrets.token_hex(16)
    if key_format != "extended":
        raise ValueError(f"unknown key format {key_format!r}: expected 'legacy' or 'extended'")
    random = "".join(secrets.choice(_ALNUM) for _ in range(74))
    return f"{random[:52]}JQQJ99{random[52:]}ACOG"


def _new_token(object_id: str) -> str:
    """A JWT-shaped bearer token (header.payload.signature); the signature is random."""

    def part(data: Body) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"aud": "https://management.azure.com", "oid": object_id, "nonce": secrets.token_hex(8)}
    return f"{part({'typ': 'JWT', 'alg': 'RS256'})}.{part(claims)}.{secrets.token_urlsafe(48)}"


@dataclass
class RecordedRequest:
    """One request as the emulator received it; ``account`` names the account a data-plane key matched."""

    method: str
    path: str
    query: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(default=b"", repr=False)
    url: str = field(default="", repr=False)
    account: str | None = None

    @property
    def params(self) -> httpx.QueryParams:
        return httpx.QueryParams(self.query)


@dataclass
class Account:
    subscription: str
    resource_group: str
    name: str
    key1: str = field(repr=False)
    key2: str = field(repr=False)
    created_at: int
    location: str = "eastus"
    kind: str = "OpenAI"
    deployments: tuple[str, ...] = ("gpt-4o-mini",)
    disable_local_auth: bool = False

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}{_PROVIDER}/{self.name}"


@dataclass
class Token:
    value: str = field(repr=False)
    object_id: str
    actions: frozenset[str] | None  # None: every action


@dataclass(frozen=True)
class MetricRecord:
    """What one account did in one instant: the emulator sums these into Azure Monitor series."""

    account: str
    at: int
    prompt_tokens: int = 0
    generated_tokens: int = 0
    requests: int = 0


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class AzureError(Exception):
    """An answer in Azure's error shape: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> httpx.Response:
        return _json_response(self.status, {"error": {"code": self.code, "message": self.message}}, self.headers)


@dataclass
class _Call:
    params: dict[str, str]
    query: httpx.QueryParams
    body: Body
    token: Token
    request: RecordedRequest


_READ = "Microsoft.CognitiveServices/accounts/read"
_REGENERATE = "Microsoft.CognitiveServices/accounts/regenerateKey/action"
# method, path template, handler, the ARM action it needs (None: the data plane, keyed by api-key)
_ROUTES: list[tuple[str, str, str, str | None]] = [
    ("GET", "/subscriptions/{subscription}" + _PROVIDER, "_list_accounts", _READ),
    ("GET", "/subscriptions/{subscription}/resourceGroups/{resource_group}" + _PROVIDER, "_list_accounts", _READ),
    ("GET", _ACCOUNT, "_get_account", _READ),
    ("PATCH", _ACCOUNT, "_update_account", "Microsoft.CognitiveServices/accounts/write"),
    ("POST", _ACCOUNT + "/listKeys", "_list_keys", "Microsoft.CognitiveServices/accounts/listKeys/action"),
    ("POST", _ACCOUNT + "/regenerateKey", "_regenerate_key", _REGENERATE),
    ("GET", _ACCOUNT + "/providers/Microsoft.Insights/metrics", "_metrics", "Microsoft.Insights/metrics/read"),
    ("GET", "/openai/models", "_list_models", None),
    ("GET", "/openai/v1/models", "_list_models_v1", None),
]
_TABLE = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$", re.IGNORECASE), handler, action)
    for method, path, handler, action in _ROUTES
]


class AzureOpenAIEmulator:
    """In-memory Azure subscriptions of Azure OpenAI accounts behind an ``httpx`` handler."""

    def __init__(
        self,
        *,
        now: Clock | None = None,
        page_size: int = 20,
        key_format: str = "extended",
        data_api_versions: Collection[str] = DATA_API_VERSIONS,
    ):
        self._clock = now or (lambda: datetime.now(UTC))
        self.data_api_versions = frozenset(data_api_versions)
        self.page_size = page_size
        self.key_format = key_format
        self.accounts: dict[str, Account] = {}  # by name: account names are globally unique subdomains
        self.tokens: dict[str, Token] = {}
        self.metric_records: list[MetricRecord] = []
        self.requests: list[RecordedRequest] = []
        self.activity_log: list[Body] = []  # write and action operations, as the Azure Activity Log has them
        self._faults: list[_Fault] = []
        self._budget = {"reads": 12000, "writes": 1200}
        self._lock = threading.RLock()

    # ---- seeding ---------------------------------------------------------------------------

    def add_admin_token(self, *, actions: Collection[str] | None = None) -> str:
        """A management bearer token; ``actions`` limits what it may do (default: every action)."""
        object_id = str(uuid.uuid4())
        token = Token(_new_token(object_id), object_id, None if actions is None else frozenset(actions))
        self.tokens[token.value] = token
        return token.value

    def add_account(
        self,
        subscription: str,
        resource_group: str,
        name: str,
        *,
        location: str = "eastus",
        kind: str = "OpenAI",
        deployments: tuple[str, ...] = ("gpt-4o-mini",),
        disable_local_auth: bool = False,
    ) -> tuple[str, str]:
        """Create an account with two fresh keys; returns ``(key1, key2)``."""
        if name.lower() in (n.lower() for n in self.accounts):
            raise ValueError(f"an account named {name!r} exists already (names are global subdomains)")
        key1, key2 = new_key_value(self.key_format), new_key_value(self.key_format)
        self.accounts[name] = Account(
            subscription, resource_group, name, key1, key2, self._now(), location, kind, deployments, disable_local_auth
        )
        return key1, key2

    def add_metrics(
        self,
        account: str,
        start: datetime,
        end: datetime,
        bucket_seconds: int = 3600,
        prompt_tokens: int = 0,
        generated_tokens: int = 0,
        requests: int = 0,
    ) -> int:
        """Record the given figures once per ``bucket_seconds`` slot of ``[start, end)``; returns the slot count."""
        name = next(a.name for a in self.accounts.values() if _same(a.name, account))
        slots = range(_epoch(start), _epoch(end), bucket_seconds)
        self.metric_records.extend(MetricRecord(name, at, prompt_tokens, generated_tokens, requests) for at in slots)
        return len(slots)

    def is_live(self, value: str) -> bool:
        """Would the data plane accept this key value?"""
        account = self._account_by_key(value)
        return account is not None and not account.disable_local_auth

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

        ``path_pattern`` is a case-insensitive glob over the path (``*/regenerateKey``); ``method``
        may be ``*``. A 429 carries ``Retry-After: retry_after`` unless ``retry_after`` is None.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message))

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and case-insensitive path glob."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or _glob(r.path, path))
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
                str(request.url),
            )
            self.requests.append(recorded)
            try:
                return self._dispatch(recorded)
            except AzureError as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        self._inject_fault(request)
        for method, pattern, handler, action in _TABLE:
            match = pattern.match(request.path)
            if match is None or method != request.method:
                continue
            if action is None:
                return getattr(self, handler)(request)
            if not request.params.get("api-version"):
                raise AzureError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            token = self._authorize(request, action)
            call = _Call(match.groupdict(), request.params, _json_body(request), token, request)
            body = getattr(self, handler)(call)
            if action.endswith(("/write", "/action")):
                self._log_activity(action, call)
            return self._arm_response(request, body)
        if request.path.lower().startswith("/openai/"):
            version = request.params.get("api-version")
            if version and version not in self.data_api_versions and version not in _V1_API_VERSIONS:
                raise AzureError(400, "BadRequest", "API version not supported")
            raise AzureError(404, "404", "Resource not found")
        raise AzureError(404, "NotFound", f"No route matches {request.method} {request.path}.")

    def _authorize(self, request: RecordedRequest, action: str) -> Token:
        header = request.headers.get("authorization", "")
        if not header:
            raise AzureError(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        scheme, _, value = header.partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise AzureError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if token.actions is not None and action not in token.actions:
            scope = request.path.split("/providers/Microsoft.Insights")[0]
            raise AzureError(
                403,
                "AuthorizationFailed",
                f"The client '{token.object_id}' with object id '{token.object_id}' does not have authorization to "
                f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently "
                "granted, please refresh your credentials.",
            )
        return token

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in ("*", request.method) and _glob(request.path, fault.pattern):
                fault.remaining -= 1
                raise _fault_error(fault, request)

    # ---- ARM: accounts ---------------------------------------------------------------------

    def _list_accounts(self, call: _Call) -> Body:
        subscription, group = call.params["subscription"], call.params.get("resource_group")
        self._check_scope(subscription, group)
        accounts = [a for a in self.accounts.values() if _same(a.subscription, subscription)]
        accounts = [a for a in accounts if group is None or _same(a.resource_group, group)]
        offset = _skip(call.query.get("$skiptoken"))
        page = accounts[offset : offset + self.page_size]
        body: Body = {"value": [self._account_json(a) for a in page]}
        if offset + self.page_size < len(accounts):
            token = base64.urlsafe_b64encode(str(offset + self.page_size).encode()).decode()
            body["nextLink"] = str(httpx.URL(call.request.url).copy_set_param("$skiptoken", token))
        return body

    def _get_account(self, call: _Call) -> Body:
        return self._account_json(self._account(call))

    def _update_account(self, call: _Call) -> Body:
        account = self._account(call)
        properties = call.body.get("properties") or {}
        if not isinstance(properties, dict):
            raise AzureError(400, "InvalidRequestContent", "The request content was invalid: 'properties'.")
        if "disableLocalAuth" in properties:
            if not isinstance(properties["disableLocalAuth"], bool):
                raise AzureError(400, "InvalidRequestContent", "'properties.disableLocalAuth' must be a boolean.")
            account.disable_local_auth = properties["disableLocalAuth"]
        return self._account_json(account)

    def _list_keys(self, call: _Call) -> Body:
        account = self._account(call)
        if account.disable_local_auth:
            raise AzureError(400, "BadRequest", "Failed to list key. disableLocalAuth is set to be true")
        return {"key1": account.key1, "key2": account.key2}

    def _regenerate_key(self, call: _Call) -> Body:
        account = self._account(call)
        slot = str(call.body.get("keyName") or "").lower()
        if slot not in ("key1", "key2"):
            raise AzureError(
                400, "InvalidRequestContent", "The request content was invalid: 'keyName' must be Key1 or Key2."
            )
        setattr(account, slot, new_key_value(self.key_format))
        return {"key1": account.key1, "key2": account.key2}

    # ---- ARM: Azure Monitor metrics --------------------------------------------------------

    def _metrics(self, call: _Call) -> Body:
        account = self._account(call)
        names = [n.strip() for n in (call.query.get("metricnames") or "AzureOpenAIRequests").split(",") if n.strip()]
        for name in names:
            if name not in METRICS:
                raise AzureError(
                    400,
                    "BadRequest",
                    f"Failed to find metric configuration for provider: Microsoft.CognitiveServices, resource Type: "
                    f"accounts, metric: {name}, Valid metrics: {', '.join(METRICS)}",
                )
        interval = call.query.get("interval") or "PT1H"
        if interval.upper() not in INTERVALS:
            raise AzureError(400, "BadRequest", f"Invalid interval '{interval}': use one of {', '.join(INTERVALS)}.")
        step = INTERVALS[interval.upper()]
        start, end, timespan = self._timespan(call.query.get("timespan"))
        wanted = [a.strip().lower() for a in (call.query.get("aggregation") or "Total").split(",")]
        if any(a not in _AGGREGATIONS for a in wanted):
            raise AzureError(400, "BadRequest", f"Invalid aggregation: use {', '.join(_AGGREGATIONS)}.")
        records = [r for r in self.metric_records if r.account == account.name and start <= r.at < end]
        slots = range(start - start % step, end, step)
        return {
            "cost": len(slots) * len(names),
            "timespan": timespan,
            "interval": interval,
            "value": [self._series(account, name, records, slots, step, wanted) for name in names],
            "namespace": "Microsoft.CognitiveServices/accounts",
            "resourceregion": account.location,
        }

    def _series(
        self, account: Account, name: str, records: list[MetricRecord], slots: range, step: int, wanted: list[str]
    ) -> Body:
        local, attribute = METRICS[name]
        data = []
        for slot in slots:
            values = [getattr(r, attribute) for r in records if slot <= r.at < slot + step]
            figures = {"total": float(sum(values)), "count": float(len(values))}
            data.append({"timeStamp": _iso(slot), **{k: v for k, v in figures.items() if k in wanted}})
        return {
            "id": f"{account.id}/providers/Microsoft.Insights/metrics/{name}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": name, "localizedValue": local},
            "displayDescription": f"{local} of the account, all deployments and callers together.",
            "unit": "Count",
            "timeseries": [{"metadatavalues": [], "data": data}],
            "errorCode": "Success",
        }

    def _timespan(self, raw: str | None) -> tuple[int, int, str]:
        if not raw:
            end = self._now()
            return end - 3600, end, f"{_iso(end - 3600)}/{_iso(end)}"
        try:
            first, second = raw.split("/")
            start, end = _epoch(datetime.fromisoformat(first)), _epoch(datetime.fromisoformat(second))
        except ValueError:
            raise AzureError(400, "BadRequest", f"Invalid timespan '{raw}': expected start/end in ISO 8601.") from None
        if end <= start:
            raise AzureError(400, "BadRequest", "Invalid timespan: the end must come after the start.")
        return start, end, raw

    # ---- the data plane --------------------------------------------------------------------

    def _list_models(self, request: RecordedRequest) -> httpx.Response:
        """``GET /openai/models?api-version=...`` (Models - List): base and deployed models."""
        self._check_data_version(request.params.get("api-version"))
        account = self._data_account(request)
        data = [_model_json(model, account.created_at) for model in dict.fromkeys(_BASE_MODELS + account.deployments)]
        return _json_response(200, {"data": data, "object": "list"}, {"apim-request-id": str(uuid.uuid4())})

    def _list_models_v1(self, request: RecordedRequest) -> httpx.Response:
        """``GET /openai/v1/models`` (the v1 API: ``api-version`` optional, ``v1`` or ``preview``)."""
        version = request.params.get("api-version")
        if version is not None and version not in _V1_API_VERSIONS:
            raise AzureError(400, "BadRequest", "API version not supported")
        account = self._data_account(request)
        models = dict.fromkeys(_BASE_MODELS + account.deployments)
        data = [{**_model_json(model, account.created_at), "created": account.created_at} for model in models]
        return _json_response(200, {"object": "list", "data": data}, {"apim-request-id": str(uuid.uuid4())})

    def _check_data_version(self, version: str | None) -> None:
        if not version:
            raise AzureError(404, "404", "Resource not found")
        if version not in self.data_api_versions:
            raise AzureError(400, "BadRequest", "API version not supported")

    def _data_account(self, request: RecordedRequest) -> Account:
        """The account whose key is in ``api-key``: 401 for none or an unknown (regenerated) value."""
        value = request.headers.get("api-key", "")
        if not value:
            raise AzureError(
                401,
                "401",
                "Access denied due to missing subscription key. Make sure to include subscription key when "
                "making requests to an API.",
            )
        account = self._account_by_key(value)
        if account is None:
            raise AzureError(401, "401", _INVALID_KEY)
        request.account = account.name
        if account.disable_local_auth:
            raise AzureError(
                403, "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource."
            )
        return account

    # ---- helpers ---------------------------------------------------------------------------

    def _arm_response(self, request: RecordedRequest, body: Body) -> httpx.Response:
        kind = "reads" if request.method == "GET" else "writes"
        self._budget[kind] = max(0, self._budget[kind] - 1)
        return _json_response(200, body, {f"x-ms-ratelimit-remaining-subscription-{kind}": str(self._budget[kind])})

    def _log_activity(self, action: str, call: _Call) -> None:
        self.activity_log.append(
            {
                "operationName": {"value": action},
                "resourceId": self._account(call).id,
                "caller": call.token.object_id,
                "eventTimestamp": _iso(self._now()),
                "status": {"value": "Succeeded"},
            }
        )

    def _check_scope(self, subscription: str, group: str | None) -> None:
        accounts = [a for a in self.accounts.values() if _same(a.subscription, subscription)]
        if not accounts:
            raise AzureError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
        if group is not None and not any(_same(a.resource_group, group) for a in accounts):
            raise AzureError(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")

    def _account(self, call: _Call) -> Account:
        params = call.params
        self._check_scope(params["subscription"], params["resource_group"])
        account = next((a for a in self.accounts.values() if _same(a.name, params["account"])), None)
        if account is None or not (
            _same(account.subscription, params["subscription"])
            and _same(account.resource_group, params["resource_group"])
        ):
            raise AzureError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.CognitiveServices/accounts/{params['account']}' under resource group "
                f"'{params['resource_group']}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return account

    def _account_by_key(self, value: str) -> Account | None:
        """The account holding ``value`` in either slot (every slot compared in constant time)."""
        found = None
        for account in self.accounts.values():
            for slot in (account.key1, account.key2):
                if hmac.compare_digest(slot.encode(), value.encode()):
                    found = account
        return found

    def _account_json(self, a: Account) -> Body:
        return {
            "id": a.id,
            "name": a.name,
            "type": "Microsoft.CognitiveServices/accounts",
            "kind": a.kind,
            "location": a.location,
            "sku": {"name": "S0"},
            "etag": f'"{uuid.uuid5(uuid.NAMESPACE_URL, a.id)}"',
            "properties": {
                "endpoint": f"https://{a.name}.openai.azure.com/",
                "customSubDomainName": a.name,
                "provisioningState": "Succeeded",
                "disableLocalAuth": a.disable_local_auth,
                "publicNetworkAccess": "Enabled",
            },
            "systemData": {"createdAt": _iso(a.created_at), "createdByType": "User"},
        }

    def _now(self) -> int:
        return _epoch(self._clock())


def _fault_error(fault: _Fault, request: RecordedRequest) -> AzureError:
    data = request.path.lower().startswith("/openai/")
    status = fault.status
    headers: dict[str, str] = {}
    if status == 429:
        if fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
        if not data:
            headers[f"x-ms-ratelimit-remaining-subscription-{'reads' if request.method == 'GET' else 'writes'}"] = "0"
    if status in (401, 403, 404, 429):
        code, message = (_DATA_FAULTS if data else _ARM_FAULTS)[status]
    elif status >= 500:
        code, message = "InternalServerError", "Encountered internal server error. Please retry the request."
    else:
        code, message = (str(status) if data else "BadRequest"), "The request was refused."
    return AzureError(status, code, fault.message or message, headers)


_ARM_FAULTS = {
    401: ("InvalidAuthenticationToken", "The access token is invalid."),
    403: ("AuthorizationFailed", "The client does not have authorization to perform this action."),
    404: ("ResourceNotFound", "The Resource was not found."),
    429: ("TooManyRequests", "The request is being throttled as the limit has been reached for this operation type."),
}
_DATA_FAULTS = {
    401: ("401", _INVALID_KEY),
    403: ("403", "Forbidden"),
    404: ("404", "Resource not found"),
    429: ("429", "Requests have exceeded the call rate limit of your current pricing tier. Please retry later."),
}


def _model_json(model: str, created_at: int) -> Body:
    return {
        "status": "succeeded",
        "capabilities": {
            "fine_tune": False,
            "inference": True,
            "completion": False,
            "chat_completion": True,
            "embeddings": model.startswith("text-embedding"),
        },
        "lifecycle_status": "generally-available",
        "id": model,
        "created_at": created_at,
        "object": "model",
    }


def _json_body(request: RecordedRequest) -> Body:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except ValueError:
        raise AzureError(400, "InvalidRequestContent", "The request content was not valid JSON.") from None
    if not isinstance(body, dict):
        raise AzureError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def _json_response(status: int, body: Body, headers: dict[str, str] | None = None) -> httpx.Response:
    request_id = str(uuid.uuid4())
    base = {"x-ms-request-id": request_id, "x-ms-correlation-request-id": request_id}
    return httpx.Response(status, json=body, headers={**base, **(headers or {})})


def _skip(token: str | None) -> int:
    if not token:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(token.encode()).decode()))
    except ValueError:
        raise AzureError(400, "InvalidSkipToken", "The $skiptoken is not valid.") from None


def _glob(path: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path.lower(), pattern.lower())


def _same(left: str, right: str) -> bool:
    """ARM names compare case-insensitively."""
    return left.lower() == right.lower()


def _epoch(when: datetime | float) -> int:
    if isinstance(when, datetime):
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)
        return int(aware.timestamp())
    return int(when)


def _iso(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["METRICS", "AzureError", "AzureOpenAIEmulator", "MetricRecord", "RecordedRequest", "new_key_value"]
