"""Contract tests: the official ``anthropic`` SDK drives the Anthropic emulator over a real socket.

The SDK (``client.beta.organization.api_keys``, ``client.models``) sends the key as
``Authorization: Bearer``, ``anthropic-version`` of its own release and bracketed arrays, pages key
lists with ``after_id=<last_id>`` and validates every answer strictly here
(``_strict_response_validation=True``). The SDK has no methods for the legacy Messages usage report
and cost report (it moved to the analytics API), so those are called through its generic
``get_api_list`` with the SDK's own report cursor (``page=<next_page>`` while ``has_more``) and
models of the documented schema (platform.claude.com/docs/en/api/admin/usage_report,
.../cost_report). The emulator follows provider-apis.md 2 and 7.2; where it disagrees with the SDK,
the emulator is fixed. The SDK takes only ``httpx2`` clients, so the emulator is served with
``cauterize.sandbox.server.serve``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl

import pytest

from cauterize.sandbox.anthropic import AnthropicEmulator
from cauterize.sandbox.server import serve

anthropic = pytest.importorskip("anthropic", minversion="2.10")
from anthropic.pagination import SyncReportPageCursor
from anthropic.types.beta.organization import BetaAPIKey

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class UsageResult(anthropic.BaseModel):
    api_key_id: str | None
    workspace_id: str | None
    model: str | None
    service_tier: Literal["standard", "batch", "priority", "flex"] | None
    context_window: Literal["0-200k", "200k-1M"] | None
    uncached_input_tokens: int
    cache_creation: dict[Literal["ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"], int]
    cache_read_input_tokens: int
    output_tokens: int
    server_tool_use: dict[Literal["web_search_requests"], int] | None


class UsageBucket(anthropic.BaseModel):
    starting_at: datetime
    ending_at: datetime
    results: list[UsageResult]


class CostResult(anthropic.BaseModel):
    amount: str  # cents, as a decimal string
    currency: Literal["USD"]
    cost_type: Literal["tokens", "web_search", "code_execution"] | None
    description: str | None
    model: str | None
    service_tier: Literal["standard", "batch"] | None
    context_window: Literal["0-200k", "200k-1M"] | None
    token_type: (
        Literal[
            "uncached_input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation.ephemeral_1h_input_tokens",
            "cache_creation.ephemeral_5m_input_tokens",
        ]
        | None
    )
    workspace_id: str | None


class CostBucket(anthropic.BaseModel):
    starting_at: datetime
    ending_at: datetime
    results: list[CostResult]


@pytest.fixture
def emulator() -> AnthropicEmulator:
    return AnthropicEmulator(now=lambda: NOW)


@pytest.fixture
def sdk(emulator, monkeypatch):
    """``sdk(key)``: an official client on the served emulator, no retries, no credential from the
    environment."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with serve(emulator) as app:
        clients = []

        def make(key: str | None, **options):
            client = anthropic.Anthropic(
                api_key=key, base_url=app.url, max_retries=0, _strict_response_validation=True, **options
            )
            clients.append(client)
            return client

        yield make
        for client in clients:
            client.close()


@pytest.fixture
def admin(emulator, sdk):
    return sdk(emulator.add_admin_key())


def _query(request) -> list[tuple[str, str]]:
    return parse_qsl(request.query, keep_blank_values=True)


# ---- API keys -------------------------------------------------------------------------------


def test_list_api_keys_pages_with_after_id_and_filters(emulator, admin):
    workspace = emulator.add_workspace("prod")
    ids = [emulator.add_key(name=f"key-{index}", workspace_id=workspace)[0] for index in range(25)]
    inactive, _ = emulator.add_key(status="inactive")
    keys = admin.beta.organization.api_keys

    listed = list(keys.list(limit=10))
    assert [k.id for k in listed] == [*ids, inactive]
    assert all(isinstance(k, BetaAPIKey) and k.type == "api_key" for k in listed)
    calls = emulator.calls("GET", "/v1/organizations/api_keys")
    assert [dict(_query(c)).get("after_id") for c in calls] == [None, ids[9], ids[19]]
    assert {c.headers["authorization"].split()[0] for c in calls} == {"Bearer"}
    assert all(c.headers["anthropic-version"] for c in calls)

    page = keys.list(limit=10)
    assert (page.first_id, page.last_id, page.has_more) == (ids[0], ids[9], True)
    earlier = keys.list(before_id=ids[10], limit=3)
    assert [k.id for k in earlier.data] == ids[7:10] and earlier.has_more is True
    assert [k.id for k in keys.list(status="inactive")] == [inactive]
    assert [k.id for k in keys.list(workspace_id=workspace, status="active", limit=1000)] == ids
    assert dict(_query(emulator.requests[-1])) == {"workspace_id": workspace, "status": "active", "limit": "1000"}
    with pytest.raises(anthropic.BadRequestError):
        keys.list(limit=1001)


def test_retrieve_an_api_key(emulator, admin):
    workspace = emulator.add_workspace("prod")
    robot = emulator.add_service_account("deploy bot")
    key_id, value = emulator.add_key(name="ci", workspace_id=workspace, service_account_id=robot)
    dated, _ = emulator.add_key(expires_at=NOW + timedelta(days=30))

    key = admin.beta.organization.api_keys.retrieve(key_id)
    assert (key.id, key.name, key.status, key.created_at) == (key_id, "ci", "active", NOW)
    head, tail = key.partial_key_hint.split("...")
    assert value.startswith(head) and value.endswith(tail) and len(key.partial_key_hint) < len(value)
    assert (key.scope.type, key.scope.workspace_id) == ("workspace", workspace)
    assert (key.principal.type, key.principal.service_account_id) == ("service_account_actor", robot)
    assert key.created_by.type == "user" and key.expires_at is None
    default = admin.beta.organization.api_keys.retrieve(dated)
    assert default.scope.workspace_id == emulator.default_workspace and default.principal.type == "user_actor"
    assert default.expires_at == NOW + timedelta(days=30)
    with pytest.raises(anthropic.NotFoundError) as missing:
        admin.beta.organization.api_keys.retrieve("apikey_01missing")
    assert missing.value.body["error"]["type"] == "not_found_error" and missing.value.request_id


def test_update_status_inactive_archived_and_expired_refused(emulator, admin, sdk):
    key_id, value = emulator.add_key(name="leaked")
    keys = admin.beta.organization.api_keys
    assert [m.id for m in sdk(value).models.list()]

    off = keys.update(key_id, status="inactive")
    assert isinstance(off, BetaAPIKey) and off.status == "inactive"
    assert json.loads(emulator.requests[-1].body) == {"status": "inactive"}
    with pytest.raises(anthropic.AuthenticationError) as dead:
        sdk(value).models.list()
    assert dead.value.status_code == 401 and dead.value.body["error"]["type"] == "authentication_error"

    assert keys.update(key_id, name=None).name == "leaked"  # null leaves it as it is
    assert keys.update(key_id, name="leaked (revoked)").name == "leaked (revoked)"
    with pytest.raises(anthropic.BadRequestError) as refused:
        keys.update(key_id, status="expired")  # read-only
    assert "expired" in refused.value.message
    assert keys.update(key_id, status="archived").status == "archived"
    with pytest.raises(anthropic.BadRequestError):  # archived is terminal
        keys.update(key_id, status="active")
    assert [k.status for k in keys.list(status="archived")] == ["archived"]


# ---- usage and cost reports -----------------------------------------------------------------


@pytest.fixture
def usage(emulator):
    """Three days of hourly usage: a leaked key in a workspace, a bystander in the default one."""
    workspace = emulator.add_workspace("prod")
    leaked, _ = emulator.add_key(name="leaked", workspace_id=workspace)
    bystander, _ = emulator.add_key(name="bystander")
    start = NOW - timedelta(days=3)
    emulator.add_usage(leaked, start, NOW, 3600, 1000, 100, cache_read_input_tokens=50, web_search_requests=1)
    emulator.add_usage(bystander, start, NOW, 3600, 7, 7)
    return workspace, leaked, bystander, start


def _report(client, path: str, model: type, **params):
    return client.get_api_list(path, model=model, page=SyncReportPageCursor[model], options={"params": params})


def test_messages_usage_report_per_key_follows_next_page(emulator, admin, usage):
    workspace, leaked, _, start = usage

    report = _report(
        admin,
        "/v1/organizations/usage_report/messages",
        UsageBucket,
        starting_at=start.isoformat(),
        ending_at=NOW.isoformat(),
        bucket_width="1h",
        group_by=["api_key_id", "workspace_id"],
        api_key_ids=[leaked],
        limit=24,
    )
    buckets = list(report)
    assert len(buckets) == 72 and buckets[0].starting_at == start and buckets[-1].ending_at == NOW
    results = [result for bucket in buckets for result in bucket.results]
    assert {(r.api_key_id, r.workspace_id, r.model) for r in results} == {(leaked, workspace, None)}
    assert sum(r.uncached_input_tokens for r in results) == 72_000 and sum(r.output_tokens for r in results) == 7200
    assert sum(r.server_tool_use["web_search_requests"] for r in results) == 72

    sent = emulator.calls("GET", "/v1/organizations/usage_report/messages")
    assert len(sent) == 3
    assert ("group_by[]", "api_key_id") in _query(sent[0]) and ("api_key_ids[]", leaked) in _query(sent[0])
    cursors = [dict(_query(c)).get("page") for c in sent]
    assert cursors[0] is None and all(cursors[1:]) and len(set(cursors)) == 3
    with pytest.raises(anthropic.BadRequestError):
        admin.get("/v1/organizations/usage_report/messages", cast_to=object, options={"params": {"limit": 1}})


def test_cost_report_by_workspace_and_description(emulator, admin, usage):
    workspace, _, _, start = usage

    buckets = list(
        _report(
            admin,
            "/v1/organizations/cost_report",
            CostBucket,
            starting_at=start.isoformat(),
            group_by=["workspace_id", "description"],
            limit=2,
        )
    )
    assert len(buckets) == 4
    assert [bool(c.params.get("page")) for c in emulator.calls("GET", "/v1/organizations/cost_report")] == [False, True]
    results = [result for bucket in buckets for result in bucket.results]
    assert {r.currency for r in results} == {"USD"} and {r.workspace_id for r in results} == {workspace, None}
    mine = [r for r in results if r.workspace_id == workspace]
    assert {r.token_type for r in mine} == {"uncached_input_tokens", "output_tokens", "cache_read_input_tokens", None}
    assert {r.cost_type for r in mine} == {"tokens", "web_search"}
    assert all(r.model for r in mine if r.cost_type == "tokens")
    # Sonnet 4.5: $3 / $15 per million tokens, cache reads at a tenth, a web search a cent; in cents
    per_hour = (1000 * 3 + 100 * 15 + 50 * 0.3) / 1e6 * 100 + 1
    assert sum(float(r.amount) for r in mine) == pytest.approx(72 * per_hour)

    plain = list(_report(admin, "/v1/organizations/cost_report", CostBucket, starting_at=start.isoformat()))
    flat = [result for bucket in plain for result in bucket.results]
    assert all((r.description, r.model, r.token_type, r.workspace_id) == (None,) * 4 for r in flat)
    assert sum(float(r.amount) for r in flat) == pytest.approx(72 * per_hour + 72 * 7 * 18 / 1e6 * 100)
    for params in ({"group_by": ["api_key_id"]}, {"bucket_width": "1h"}, {"limit": 32}):
        with pytest.raises(anthropic.BadRequestError):
            _report(admin, "/v1/organizations/cost_report", CostBucket, starting_at=start.isoformat(), **params)


# ---- the data plane and refusals ------------------------------------------------------------


def test_models_with_live_inactive_and_forbidden_keys(emulator, sdk):
    _, live = emulator.add_key()
    _, inactive = emulator.add_key(status="inactive")
    _, forbidden = emulator.add_key(workspace_id=emulator.add_workspace("locked", forbidden=True))

    models = list(sdk(live).models.list())
    assert models and all(m.type == "model" and m.display_name for m in models)
    sent = emulator.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {live}" and "x-api-key" not in sent.headers
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", sent.headers["anthropic-version"])  # its own, not 2023-06-01

    with pytest.raises(anthropic.AuthenticationError) as dead:
        sdk(inactive).models.list()
    assert dead.value.body["error"]["type"] == "authentication_error" and dead.value.request_id
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        sdk(forbidden).models.list()
    assert refused.value.status_code == 403 and refused.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.PermissionDeniedError):  # a standard key is no admin key
        sdk(live).beta.organization.api_keys.list()

    by_header = sdk(None, default_headers={"x-api-key": live})  # the curl examples' header, same SDK
    assert [m.id for m in by_header.models.list()] == [m.id for m in models]
    assert emulator.requests[-1].headers["x-api-key"] == live and "authorization" not in emulator.requests[-1].headers
