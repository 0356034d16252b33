"""Contract tests: the official ``openai`` SDK drives the OpenAI emulator.

The SDK (``client.admin.organization.*``, ``client.models``) is how OpenAI itself calls its API:
bracketed array parameters, ``after=<last_id>`` list paging, ``page=<next_page>`` usage paging,
typed models for every answer. Each client here validates answers strictly
(``_strict_response_validation=True``): a missing field or a value outside a documented ``Literal``
fails the test, so the emulator follows the API as the vendor's own client reads it
(provider-apis.md 1.6 and 7.1). Where a test and the emulator disagree, the emulator is fixed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import httpx
import pytest

from cauterize.sandbox.openai import OpenAIEmulator
from cauterize.sandbox.server import serve

openai = pytest.importorskip("openai", minversion="3.51")
from openai.types import Model
from openai.types.admin.organization import (
    AdminAPIKey,
    AuditLogListResponse,
    Project,
    UsageCompletionsResponse,
    UsageCostsResponse,
)
from openai.types.admin.organization.projects import ProjectAPIKey, ProjectServiceAccount

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = 86400
BASE_URL = "https://api.openai.com/v1"


class Clock:
    """The emulator's clock: stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emulator(clock) -> OpenAIEmulator:
    return OpenAIEmulator(now=clock)


@pytest.fixture
def sdk(emulator, monkeypatch):
    """``sdk(admin_api_key=... | api_key=...)``: an official client on the emulator, no retries, no
    credential from the environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    clients = []

    def make(**credentials: str):
        client = openai.OpenAI(
            **credentials,
            base_url=BASE_URL,
            http_client=httpx.Client(transport=httpx.MockTransport(emulator)),
            max_retries=0,
            _strict_response_validation=True,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def org(emulator, sdk):
    """``client.admin.organization`` of an unrestricted admin key."""
    return sdk(admin_api_key=emulator.add_admin_key()).admin.organization


def _query(request) -> list[tuple[str, str]]:
    return parse_qsl(request.query, keep_blank_values=True)


# ---- projects and project API keys ---------------------------------------------------------


def test_projects_auto_page_past_100_with_after_last_id(emulator, org):
    ids = [emulator.add_project(f"p{index}") for index in range(130)]
    archived = emulator.add_project("old", archived=True)

    listed = list(org.projects.list(limit=100))
    assert [p.id for p in listed] == ids
    assert all(isinstance(p, Project) and p.object == "organization.project" and p.status == "active" for p in listed)
    calls = emulator.calls("GET", "/organization/projects")
    assert [dict(_query(c)).get("after") for c in calls] == [None, ids[99]]  # the SDK follows last_id

    page = org.projects.list(limit=100)
    assert (page.has_more, page.last_id, len(page.data)) == (True, ids[99], 100)
    with_archived = {p.id: p for p in org.projects.list(include_archived=True, limit=100)}
    assert len(with_archived) == 131 and with_archived[archived].status == "archived"
    assert with_archived[archived].archived_at == int(NOW.timestamp())
    assert dict(_query(emulator.requests[-1]))["include_archived"] == "true"


def test_project_api_keys_list_retrieve_and_owner_project_access(emulator, org):
    project = emulator.add_project("prod")
    user_key, user_value = emulator.add_user_key(project, name="laptop")
    hidden_key, _ = emulator.add_user_key(project, name="left the project", owner_project_access="inactive")
    robot = emulator.add_service_account(project, "deploy bot")
    robot_key, _ = emulator.add_service_account_key(project, robot, name="ci")

    every = list(org.projects.api_keys.list(project, owner_project_access="any", limit=2))
    assert [k.id for k in every] == [user_key, hidden_key, robot_key]  # two pages of two
    assert [dict(_query(c)).get("after") for c in emulator.calls("GET", "*/api_keys")] == [None, hidden_key]
    assert all(isinstance(k, ProjectAPIKey) and k.object == "organization.project.api_key" for k in every)
    assert [k.owner_project_access for k in every] == ["active", "inactive", "active"]
    assert [k.id for k in org.projects.api_keys.list(project)] == [user_key, robot_key]
    assert [k.id for k in org.projects.api_keys.list(project, owner_project_access="inactive")] == [hidden_key]

    mine = org.projects.api_keys.retrieve(user_key, project_id=project)
    head, tail = mine.redacted_value.split("...")
    assert user_value.startswith(head) and user_value.endswith(tail) and user_value != mine.redacted_value
    assert mine.owner.type == "user" and mine.owner.user.email == "dana.developer@example.com"
    assert (mine.name, mine.expires_at, mine.owner.service_account) == ("laptop", None, None)
    ci = org.projects.api_keys.retrieve(robot_key, project_id=project)
    assert ci.owner.type == "service_account" and ci.owner.service_account.id == robot
    assert ci.owner.service_account.role == "member"

    with pytest.raises(openai.NotFoundError):
        org.projects.api_keys.retrieve("key_missing", project_id=project)


def test_deleting_a_user_key_and_a_service_account_key(emulator, org, sdk):
    project = emulator.add_project("prod")
    user_key, user_value = emulator.add_user_key(project)
    robot = emulator.add_service_account(project)
    leaked, leaked_value = emulator.add_service_account_key(project, robot, name="leaked")
    sibling, sibling_value = emulator.add_service_account_key(project, robot, name="sibling")
    assert [m.id for m in sdk(api_key=user_value).models.list()]

    gone = org.projects.api_keys.delete(user_key, project_id=project)
    assert (gone.object, gone.id, gone.deleted) == ("organization.project.api_key.deleted", user_key, True)
    with pytest.raises(openai.AuthenticationError) as dead:
        sdk(api_key=user_value).models.list()
    assert dead.value.status_code == 401 and dead.value.code == "invalid_api_key"
    assert user_value not in str(dead.value)  # OpenAI echoes a masked key

    gone = org.projects.api_keys.delete(leaked, project_id=project)  # the 2026 API: just this key
    assert (gone.id, gone.deleted) == (leaked, True)
    with pytest.raises(openai.AuthenticationError):
        sdk(api_key=leaked_value).models.list()
    account = org.projects.service_accounts.retrieve(robot, project_id=project)
    assert isinstance(account, ProjectServiceAccount) and account.id == robot
    assert [k.id for k in org.projects.api_keys.list(project, owner_project_access="any")] == [sibling]
    assert [m.id for m in sdk(api_key=sibling_value).models.list()]
    with pytest.raises(openai.NotFoundError):
        org.projects.api_keys.delete(leaked, project_id=project)


def test_updating_a_project_keys_scopes_and_expiry(emulator, org, sdk, clock):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)

    narrowed = org.projects.api_keys.update(key_id, project_id=project, scopes=["api.files.read"])
    assert isinstance(narrowed, ProjectAPIKey) and narrowed.id == key_id
    with pytest.raises(openai.AuthenticationError) as refused:  # a restricted project key: 401, no code
        sdk(api_key=value).models.list()
    assert "Missing scopes" in refused.value.message and refused.value.code is None
    update = next(iter(org.audit_logs.list(event_types=["api_key.updated"])))
    assert update.api_key_updated.id == key_id
    assert update.api_key_updated.changes_requested.scopes == ["api.files.read"]

    dated = org.projects.api_keys.update(key_id, project_id=project, scopes=[], expires_in_seconds=60)
    assert dated.expires_at == int(NOW.timestamp()) + 60
    assert [m.id for m in sdk(api_key=value).models.list()]  # [] is "all permissions" again
    clock.now += timedelta(seconds=61)
    with pytest.raises(openai.AuthenticationError):
        sdk(api_key=value).models.list()
    with pytest.raises(openai.BadRequestError):  # expired keys cannot be updated
        org.projects.api_keys.update(key_id, project_id=project, expires_in_seconds=60)


# ---- service accounts -----------------------------------------------------------------------


def test_creating_a_service_account_returns_its_key_once(emulator, org, sdk):
    project = emulator.add_project("prod")

    made = org.projects.service_accounts.create(project, name="deploy bot")
    assert made.object == "organization.project.service_account" and made.role == "member"
    assert made.id.startswith("svc_acct_") and made.name == "deploy bot"
    assert made.api_key.object == "organization.project.service_account.api_key"
    assert made.api_key.value.startswith("sk-svcacct-") and made.api_key.expires_at is None
    assert [m.id for m in sdk(api_key=made.api_key.value).models.list()]
    listed = org.projects.api_keys.retrieve(made.api_key.id, project_id=project)
    assert made.api_key.value not in listed.redacted_value and listed.owner.service_account.id == made.id

    bare = org.projects.service_accounts.create(project, name="no key", create_service_account_only=True)
    assert (bare.api_key, bare.role) == (None, "none")
    with pytest.raises(openai.BadRequestError):  # an expiry needs a key to expire
        org.projects.service_accounts.create(project, name="x", create_service_account_only=True, expires_in_seconds=60)
    short = org.projects.service_accounts.create(project, name="short-lived", expires_in_seconds=3600)
    assert short.api_key.expires_at == short.api_key.created_at + 3600


def test_an_extra_key_on_a_service_account_with_scopes_and_expiry(emulator, org, sdk, clock):
    project = emulator.add_project("prod")
    robot = emulator.add_service_account(project, "deploy bot")
    first, _ = emulator.add_service_account_key(project, robot)

    minted = org.projects.service_accounts.api_keys.create(
        robot, project_id=project, name="replacement", scopes=["api.model.read"], expires_in_seconds=3600
    )
    assert (minted.object, minted.name) == ("organization.project.service_account.api_key", "replacement")
    assert minted.value.startswith("sk-svcacct-") and minted.expires_at == minted.created_at + 3600
    sent = emulator.calls("POST", "*/service_accounts/*/api_keys")[-1]
    assert sent.path.endswith(f"/organization/projects/{project}/service_accounts/{robot}/api_keys")
    assert httpx.Response(200, content=sent.body).json() == {
        "expires_in_seconds": 3600,
        "name": "replacement",
        "scopes": ["api.model.read"],
    }
    listed = {k.id: k for k in org.projects.api_keys.list(project, owner_project_access="any")}
    assert set(listed) == {first, minted.id} and listed[minted.id].expires_at == minted.expires_at
    assert listed[minted.id].owner.service_account.id == robot
    created = next(iter(org.audit_logs.list(event_types=["api_key.created"], resource_ids=[minted.id])))
    assert created.api_key_created.data.scopes == ["api.model.read"]

    assert [m.id for m in sdk(api_key=minted.value).models.list()]  # api.model.read is enough for /models
    clock.now += timedelta(seconds=3600)
    with pytest.raises(openai.AuthenticationError) as expired:
        sdk(api_key=minted.value).models.list()
    assert expired.value.code == "invalid_api_key"

    longest = org.projects.service_accounts.api_keys.create(robot, project_id=project, expires_in_seconds=31536000)
    assert longest.expires_at - longest.created_at == 31536000 and longest.name == "Secret Key"
    assert org.projects.service_accounts.api_keys.create(robot, project_id=project).expires_at is None
    for ttl in (0, 31536001):
        with pytest.raises(openai.BadRequestError) as refused:
            org.projects.service_accounts.api_keys.create(robot, project_id=project, expires_in_seconds=ttl)
        assert refused.value.param == "expires_in_seconds"


def test_service_account_role_update_list_and_delete(emulator, org, sdk):
    project = emulator.add_project("prod")
    robot = emulator.add_service_account(project, "deploy bot")
    key_id, value = emulator.add_service_account_key(project, robot)
    other = emulator.add_service_account(project, "batch")

    owner = org.projects.service_accounts.update(robot, project_id=project, role="owner")
    assert isinstance(owner, ProjectServiceAccount) and owner.role == "owner"
    assert httpx.Response(200, content=emulator.requests[-1].body).json() == {"role": "owner"}
    assert [(s.id, s.role) for s in org.projects.service_accounts.list(project, limit=1)] == [
        (robot, "owner"),
        (other, "member"),
    ]

    gone = org.projects.service_accounts.delete(robot, project_id=project)
    assert (gone.object, gone.id, gone.deleted) == ("organization.project.service_account.deleted", robot, True)
    with pytest.raises(openai.NotFoundError):
        org.projects.service_accounts.retrieve(robot, project_id=project)
    with pytest.raises(openai.AuthenticationError):  # its keys die with it
        sdk(api_key=value).models.list()
    assert key_id not in [k.id for k in org.projects.api_keys.list(project, owner_project_access="any")]
    events = [e.type for e in org.audit_logs.list(resource_ids=[robot, key_id])]
    assert events == ["service_account.deleted", "api_key.deleted", "service_account.updated"]


# ---- admin API keys -------------------------------------------------------------------------


def test_admin_api_keys_list_create_and_delete(emulator, sdk):
    admin_value = emulator.add_admin_key("responder")
    others = [emulator.add_admin_key(f"admin-{index}") for index in range(4)]
    org = sdk(admin_api_key=admin_value).admin.organization

    listed = list(org.admin_api_keys.list(limit=2))  # SyncCursorPage: after=<id of the last item>
    assert len(listed) == 5 and all(isinstance(k, AdminAPIKey) for k in listed)
    assert [dict(_query(c)).get("after") for c in emulator.calls("GET", "/organization/admin_api_keys")] == [
        None,
        listed[1].id,
        listed[3].id,
    ]
    assert next(iter(org.admin_api_keys.list(order="desc"))).name == "admin-3"
    mine = listed[0]
    head, tail = mine.redacted_value.split("...")
    assert admin_value.startswith(head) and admin_value.endswith(tail)
    assert mine.object == "organization.admin_api_key" and mine.owner.role == "owner"
    assert mine.owner.object == "organization.user" and mine.owner.type == "user"
    assert mine.last_used_at == int(NOW.timestamp())  # this very call used it

    made = org.admin_api_keys.create(name="rotated", expires_in_seconds=2592000)
    assert made.value.startswith("sk-admin-") and made.expires_at == made.created_at + 2592000
    assert org.admin_api_keys.retrieve(made.id).redacted_value.split("...")[0] == made.value[:8]
    assert org.admin_api_keys.create(name="forever").expires_at is None
    with pytest.raises(openai.BadRequestError):
        org.admin_api_keys.create(name="too long", expires_in_seconds=31536001)

    gone = org.admin_api_keys.delete(made.id)
    assert (gone.object, gone.id, gone.deleted) == ("organization.admin_api_key.deleted", made.id, True)
    with pytest.raises(openai.AuthenticationError):
        sdk(admin_api_key=made.value).admin.organization.projects.list()
    with pytest.raises(openai.NotFoundError):
        org.admin_api_keys.retrieve(made.id)
    assert len(others) == 4


# ---- usage, costs, audit logs ---------------------------------------------------------------


@pytest.fixture
def usage(emulator):
    """Three days of hourly usage by a leaked key and a bystander in one project."""
    project = emulator.add_project("prod")
    leaked, _ = emulator.add_user_key(project, name="leaked")
    bystander, _ = emulator.add_user_key(project, name="bystander")
    start = NOW - timedelta(days=3)
    emulator.add_usage(leaked, None, start, NOW, 3600, input_tokens=1000, output_tokens=100, requests=2)
    emulator.add_usage(bystander, None, start, NOW, 3600, input_tokens=7, output_tokens=7, requests=1)
    return project, leaked, bystander, int(start.timestamp())


def test_completions_usage_for_one_key_follows_next_page(emulator, org, usage):
    project, leaked, _, start = usage

    pages, page = [], None
    while True:
        answer = org.usage.completions(
            start_time=start,
            end_time=int(NOW.timestamp()),
            bucket_width="1h",
            group_by=["api_key_id"],
            api_key_ids=[leaked],
            limit=24,
            **({"page": page} if page else {}),
        )
        assert isinstance(answer, UsageCompletionsResponse) and answer.object == "page"
        pages.append(answer)
        if not answer.has_more:
            break
        page = answer.next_page
    assert len(pages) == 3 and pages[-1].next_page is None
    buckets = [bucket for answer in pages for bucket in answer.data]
    assert len(buckets) == 72 and all(b.object == "bucket" and b.end_time - b.start_time == 3600 for b in buckets)
    results = [result for bucket in buckets for result in bucket.results]
    assert {r.object for r in results} == {"organization.usage.completions.result"}
    assert {r.api_key_id for r in results} == {leaked}
    assert {(r.project_id, r.model, r.user_id, r.batch, r.api_source) for r in results} == {(None,) * 5}
    assert sum(r.input_tokens for r in results) == 72_000 and sum(r.num_model_requests for r in results) == 144

    sent = emulator.calls("GET", "/organization/usage/completions")
    assert ("api_key_ids[]", leaked) in _query(sent[0]) and ("group_by[]", "api_key_id") in _query(sent[0])
    assert [dict(_query(c)).get("page") for c in sent] == [None, pages[0].next_page, pages[1].next_page]

    by_source = org.usage.completions(start_time=start, group_by=["api_source", "project_id"], limit=3)
    assert {(r.api_source, r.project_id) for b in by_source.data for r in b.results} == {("unlabeled", project)}
    with pytest.raises(openai.BadRequestError):
        org.usage.completions(start_time=start, bucket_width="1h", limit=169)


def test_costs_per_key_and_line_item(emulator, org, usage):
    _, leaked, bystander, start = usage

    answer = org.usage.costs(start_time=start, group_by=["api_key_id", "line_item"], api_key_ids=[leaked], limit=4)
    assert isinstance(answer, UsageCostsResponse) and answer.object == "page" and answer.has_more is False
    results = [result for bucket in answer.data for result in bucket.results]
    assert {r.object for r in results} == {"organization.costs.result"} and {r.api_key_id for r in results} == {leaked}
    assert {r.line_item for r in results} == {"gpt-4o-mini, input", "gpt-4o-mini, output"}
    assert {r.amount.currency for r in results} == {"usd"} and {r.quantity_unit for r in results} == {"tokens"}
    assert sum(r.amount.value for r in results) == pytest.approx(72 * (1000 * 0.15 + 100 * 0.60) / 1e6)
    assert ("group_by[]", "line_item") in _query(emulator.requests[-1])

    by_user = org.usage.costs(start_time=start, group_by=["user_id"], line_items=["gpt-4o-mini, output"], limit=4)
    users = {r.user_id for b in by_user.data for r in b.results}
    assert users == {emulator.keys[leaked].owner_id} == {emulator.keys[bystander].owner_id}
    assert ("line_items[]", "gpt-4o-mini, output") in _query(emulator.requests[-1])
    with pytest.raises(openai.BadRequestError):
        org.usage.costs(start_time=start, limit=181)


def test_audit_logs_filter_with_bracketed_arrays_and_nested_bounds(emulator, org, clock):
    project = emulator.add_project("prod")
    first, _ = emulator.add_user_key(project)
    second, _ = emulator.add_user_key(project)
    org.projects.api_keys.delete(first, project_id=project)
    clock.now += timedelta(hours=1)
    org.projects.api_keys.delete(second, project_id=project)

    events = list(org.audit_logs.list(event_types=["api_key.deleted"], resource_ids=[first, second], limit=1))
    assert all(isinstance(e, AuditLogListResponse) for e in events)
    assert [e.api_key_deleted.id for e in events] == [second, first]  # newest first, one per page
    assert {(e.type, e.project.id, e.actor.type) for e in events} == {("api_key.deleted", project, "api_key")}
    assert events[0].actor.api_key.type == "user" and events[0].actor.api_key.user.id

    later = list(org.audit_logs.list(event_types=["api_key.deleted"], effective_at={"gte": int(NOW.timestamp()) + 1}))
    assert [e.api_key_deleted.id for e in later] == [second]
    sent = _query(emulator.requests[-1])
    assert ("event_types[]", "api_key.deleted") in sent and ("effective_at[gte]", str(int(NOW.timestamp()) + 1)) in sent
    paged = emulator.calls("GET", "/organization/audit_logs")[:2]  # the second page says has_more: false
    assert ("resource_ids[]", first) in _query(paged[0]) and ("resource_ids[]", second) in _query(paged[0])
    assert [dict(_query(c)).get("after") for c in paged] == [None, events[0].id]


# ---- the data plane and refusals ------------------------------------------------------------


def test_models_with_a_live_deleted_and_restricted_key(emulator, sdk):
    project = emulator.add_project("prod")
    _, value = emulator.add_user_key(project)

    models = list(sdk(api_key=value).models.list())
    assert models and all(isinstance(m, Model) and m.object == "model" for m in models)
    assert emulator.requests[-1].headers["authorization"] == f"Bearer {value}"

    with pytest.raises(openai.AuthenticationError) as unknown:
        sdk(api_key=value[:-4] + "AAAA").models.list()
    assert (unknown.value.status_code, unknown.value.code, unknown.value.type) == (
        401,
        "invalid_api_key",
        "invalid_request_error",
    )

    reader = emulator.add_admin_key(scopes=["api.usage.read"])
    restricted = sdk(admin_api_key=reader).admin.organization
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        restricted.projects.list()
    assert forbidden.value.status_code == 403 and "Missing scopes: api.management.read" in forbidden.value.message
    assert restricted.usage.completions(start_time=int(NOW.timestamp()) - DAY).object == "page"
    with pytest.raises(openai.PermissionDeniedError):  # a project key is no admin key
        sdk(admin_api_key=value).admin.organization.projects.list()


def test_the_sdk_over_a_real_socket(emulator, sdk):  # sdk: no credential from the environment
    admin = emulator.add_admin_key()
    ids = [emulator.add_project(f"p{index}") for index in range(105)]
    with serve(emulator) as app:
        client = openai.OpenAI(admin_api_key=admin, base_url=f"{app.url}/v1", max_retries=0)
        with client:
            assert [p.id for p in client.admin.organization.projects.list(limit=100)] == ids
            key_id, value = emulator.add_user_key(ids[0])
            assert client.admin.organization.projects.api_keys.delete(key_id, project_id=ids[0]).deleted is True
        data_plane = openai.OpenAI(api_key=value, base_url=f"{app.url}/v1", max_retries=0)
        with data_plane, pytest.raises(openai.AuthenticationError):
            data_plane.models.list()
