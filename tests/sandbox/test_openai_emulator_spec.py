"""The OpenAI emulator's answers, validated against OpenAI's published OpenAPI spec.

Success answers (and the 400/429 answers an operation declares) go through ``openapi-core``'s
response validation for the matched operation; error bodies of undeclared statuses are checked
against ``components.schemas.ErrorResponse``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.sandbox.openai import new_key_value

HOUR = 3600
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the emulator fixture's clock (tests/sandbox/conftest.py)


def _openapi_request(request: httpx.Request):
    from openapi_core.testing import MockRequest

    return MockRequest(
        "https://api.openai.com",
        request.method.lower(),
        request.url.path,
        args=list(request.url.params.multi_items()),
        headers=dict(request.headers),
        data=request.content,
    )


def _openapi_response(response: httpx.Response):
    from openapi_core.testing import MockResponse

    return MockResponse(response.content, response.status_code, dict(response.headers), "application/json")


@pytest.fixture
def conforms(openai_spec):
    """``conforms(response)``: validate an emulator answer against its operation in the spec."""

    def check(response: httpx.Response) -> dict:
        openai_spec.validate_response(_openapi_request(response.request), _openapi_response(response))
        return response.json()

    return check


@pytest.fixture
def is_error_body(openai_spec_dict):
    """``is_error_body(response)``: validate a body against ``ErrorResponse`` (fields exactly as OpenAI's)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:openai", Resource.from_contents(openai_spec_dict, DRAFT202012))
    validator = Draft202012Validator({"$ref": "urn:openai#/components/schemas/ErrorResponse"}, registry=registry)

    def check(response: httpx.Response) -> dict:
        body = response.json()
        validator.validate(body)
        assert set(body["error"]) == {"message", "type", "param", "code"}
        return body["error"]

    return check


def test_the_validator_rejects_a_malformed_answer(conforms, api, emulator):
    """A negative control: the spec check is not vacuous."""
    emulator.add_project("prod")
    response = api.get("/organization/projects")
    body = response.json()
    body["data"][0]["created_at"] = "yesterday"
    broken = httpx.Response(200, json=body, request=response.request)
    with pytest.raises(Exception, match="created_at|not of type|not valid"):
        conforms(broken)


def test_list_projects_pages_with_after_and_hides_archived(conforms, api, emulator):
    for name in ("a", "b", "c"):
        emulator.add_project(name)
    emulator.add_project("old", archived=True)

    first = conforms(api.get("/organization/projects", params={"limit": 2}))
    assert [p["name"] for p in first["data"]] == ["a", "b"]
    assert first["has_more"] is True and first["last_id"] == first["data"][-1]["id"]

    rest = conforms(api.get("/organization/projects", params={"after": first["last_id"], "include_archived": "true"}))
    assert [(p["name"], p["status"]) for p in rest["data"]] == [("c", "active"), ("old", "archived")]
    assert rest["has_more"] is False

    clamped = conforms(api.get("/organization/projects", params={"limit": 1000}))
    assert len(clamped["data"]) == 3  # limit is clamped to 1..100, archived hidden by default


def test_list_project_api_keys_honours_owner_project_access(conforms, api, emulator):
    project = emulator.add_project("prod")
    active_id, value = emulator.add_user_key(project, name="laptop")
    inactive_id, _ = emulator.add_user_key(project, name="ex-employee", owner_project_access="inactive")
    sa = emulator.add_service_account(project, "deploy bot")
    sa_key_id, _ = emulator.add_service_account_key(project, sa)

    def ids(access: str | None) -> list[str]:
        params = {"owner_project_access": access} if access else {}
        return [k["id"] for k in conforms(api.get(f"/organization/projects/{project}/api_keys", params=params))["data"]]

    assert ids(None) == ids("active") == [active_id, sa_key_id]
    assert ids("inactive") == [inactive_id]
    assert ids("any") == [active_id, inactive_id, sa_key_id]

    listed = conforms(api.get(f"/organization/projects/{project}/api_keys/{active_id}"))
    assert listed["object"] == "organization.project.api_key"
    head, tail = listed["redacted_value"].split("...")
    assert value.startswith(head) and value.endswith(tail) and value not in json.dumps(listed)
    assert listed["owner"]["type"] == "user" and listed["owner"]["user"]["id"].startswith("user-")


def test_delete_project_api_key_of_a_user_and_of_a_service_account(conforms, is_error_body, api, emulator):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    sa = emulator.add_service_account(project)
    sa_key_id, sa_value = emulator.add_service_account_key(project, sa)
    sibling_id, sibling = emulator.add_service_account_key(project, sa, name="sibling")

    deleted = conforms(api.delete(f"/organization/projects/{project}/api_keys/{key_id}"))
    assert deleted == {"object": "organization.project.api_key.deleted", "id": key_id, "deleted": True}
    assert not emulator.is_live(value)
    assert [e["api_key.deleted"]["id"] for e in emulator.audit_events if e["type"] == "api_key.deleted"] == [key_id]

    again = api.delete(f"/organization/projects/{project}/api_keys/{key_id}")
    assert again.status_code == 404 and is_error_body(again)["type"] == "invalid_request_error"

    # the 2026 API: one service-account key goes, the account and its other keys stay
    one = conforms(api.delete(f"/organization/projects/{project}/api_keys/{sa_key_id}"))
    assert one == {"object": "organization.project.api_key.deleted", "id": sa_key_id, "deleted": True}
    assert not emulator.is_live(sa_value) and emulator.is_live(sibling)
    assert conforms(api.get(f"/organization/projects/{project}/service_accounts/{sa}"))["id"] == sa
    listed = conforms(api.get(f"/organization/projects/{project}/api_keys"))
    assert {k["id"] for k in listed["data"]} == {sibling_id}

    emulator.legacy_service_account_delete = True  # an older API refuses a service-account key
    refused = api.delete(f"/organization/projects/{project}/api_keys/{sibling_id}")
    assert refused.status_code == 400 and emulator.is_live(sibling)
    conforms(refused)  # delete-project-api-key declares its 400 ErrorResponse


def test_a_restricted_admin_key_is_refused_outside_its_scopes(is_error_body, emulator):
    project = emulator.add_project("prod")
    reader = emulator.add_admin_key("reader", scopes=["api.management.read"])

    def call(method: str, path: str) -> httpx.Response:
        with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.openai.com/v1") as client:
            return client.request(method, path, headers={"Authorization": f"Bearer {reader}"})

    assert call("GET", f"/organization/projects/{project}/api_keys").status_code == 200
    for method, path, scope in [
        ("GET", "/organization/usage/completions?start_time=0", "api.usage.read"),
        ("GET", "/organization/costs?start_time=0", "api.usage.read"),
        ("GET", "/organization/audit_logs", "api.audit_logs.read"),
        ("POST", f"/organization/projects/{project}/service_accounts", "api.management.write"),
    ]:
        refused = call(method, path)
        assert refused.status_code == 403, path
        assert f"Missing scopes: {scope}." in is_error_body(refused)["message"]

    emulator.missing_scope_body = "string"
    assert call("GET", "/organization/costs?start_time=0").json() == {"error": emulator_message("api.usage.read")}
    emulator.missing_scope_body = "text"
    text = call("GET", "/organization/costs?start_time=0")
    assert text.status_code == 403 and text.text == emulator_message("api.usage.read")
    assert text.headers["content-type"].startswith("text/plain")


def emulator_message(scope: str) -> str:
    from cauterize.sandbox.openai import _MISSING_SCOPES

    return _MISSING_SCOPES.format(scope=scope)


def test_service_accounts_create_mint_and_cascade_delete(conforms, api, emulator):
    project = emulator.add_project("prod")
    created = conforms(api.post(f"/organization/projects/{project}/service_accounts", json={"name": "replacement"}))
    assert created["role"] == "member" and created["id"].startswith("svc_acct_")
    api_key = created["api_key"]
    assert api_key["object"] == "organization.project.service_account.api_key"
    assert api_key["value"].startswith("sk-svcacct-") and emulator.is_live(api_key["value"])

    bare = conforms(
        api.post(
            f"/organization/projects/{project}/service_accounts",
            json={"name": "no key", "create_service_account_only": True},
        )
    )
    assert bare["api_key"] is None and bare["role"] == "none"

    extra = conforms(api.post(f"/organization/projects/{project}/service_accounts/{created['id']}/api_keys", json={}))
    listed = conforms(api.get(f"/organization/projects/{project}/service_accounts"))
    assert {sa["id"] for sa in listed["data"]} == {created["id"], bare["id"]}

    gone = conforms(api.delete(f"/organization/projects/{project}/service_accounts/{created['id']}"))
    assert gone == {"object": "organization.project.service_account.deleted", "id": created["id"], "deleted": True}
    assert not emulator.is_live(api_key["value"]) and not emulator.is_live(extra["value"])


def test_admin_api_keys_list(conforms, api, emulator):
    emulator.add_admin_key("second")
    listed = conforms(api.get("/organization/admin_api_keys", params={"order": "desc"}))
    assert [k["name"] for k in listed["data"]] == ["second", "cauterize admin"]
    assert all(k["redacted_value"].startswith("sk-admin") for k in listed["data"])


def test_usage_completions_buckets_groups_and_both_array_forms(conforms, is_error_body, api, emulator):
    project = emulator.add_project("prod")
    key_id, _ = emulator.add_user_key(project)
    other_id, _ = emulator.add_user_key(project)
    emulator.add_usage(key_id, project, NOW - timedelta(hours=3), NOW, 60, 10, 20, 1)
    emulator.add_usage(other_id, project, NOW - timedelta(hours=3), NOW, 3600, 1000, 1000, 5)
    start = int((NOW - timedelta(hours=3)).timestamp()) + 125  # not aligned: buckets still are

    bracket = api.get(
        "/organization/usage/completions",
        params=[
            ("start_time", start),
            ("bucket_width", "1h"),
            ("api_key_ids[]", key_id),
            ("group_by[]", "api_key_id"),
            ("group_by[]", "model"),
        ],
    )
    page = conforms(bracket)
    repeated = api.get(
        f"/organization/usage/completions?start_time={start}&bucket_width=1h"
        f"&api_key_ids={key_id}&group_by=api_key_id&group_by=model"
    )
    assert repeated.json() == page

    assert page["object"] == "page" and page["has_more"] is False and page["next_page"] is None
    assert [b["start_time"] % HOUR for b in page["data"]] == [0, 0, 0]
    results = [r for b in page["data"] for r in b["results"]]
    assert {r["object"] for r in results} == {"organization.usage.completions.result"}
    assert {(r["api_key_id"], r["model"], r["project_id"], r["user_id"]) for r in results} == {
        (key_id, "gpt-4o-mini", None, None)
    }
    # The first minute of the window (before start_time) is outside [start_time, end_time).
    assert sum(r["num_model_requests"] for r in results) == 180 - 3
    assert sum(r["input_tokens"] for r in results) == 10 * (180 - 3)

    too_many = api.get(
        "/organization/usage/completions", params={"start_time": start, "bucket_width": "1h", "limit": 169}
    )
    assert too_many.status_code == 400 and is_error_body(too_many)["param"] == "limit"
    missing = api.get("/organization/usage/completions")
    assert missing.status_code == 400 and is_error_body(missing)["param"] == "start_time"


def test_usage_completions_pages_follow_next_page(conforms, api, emulator):
    project = emulator.add_project("prod")
    key_id, _ = emulator.add_user_key(project)
    emulator.add_usage(key_id, project, NOW - timedelta(hours=30), NOW, HOUR, 1, 1, 1)
    params = {"start_time": int((NOW - timedelta(hours=30)).timestamp()), "bucket_width": "1h"}

    first = conforms(api.get("/organization/usage/completions", params=params))
    assert len(first["data"]) == 24 and first["has_more"] and first["next_page"].startswith("page_")
    second = conforms(api.get("/organization/usage/completions", params={**params, "page": first["next_page"]}))
    assert len(second["data"]) == 6 and second["has_more"] is False
    assert second["data"][0]["start_time"] == first["data"][-1]["end_time"]
    total = sum(r["num_model_requests"] for page in (first, second) for b in page["data"] for r in b["results"])
    assert total == 30


def test_costs_are_daily_and_grouped(conforms, api, emulator):
    project = emulator.add_project("prod")
    key_id, _ = emulator.add_user_key(project)
    emulator.add_usage(key_id, project, NOW - timedelta(days=2), NOW, HOUR, 1_000_000, 0, 1)
    page = conforms(
        api.get(
            "/organization/costs",
            params=[("start_time", int((NOW - timedelta(days=2)).timestamp())), ("group_by[]", "api_key_id")],
        )
    )
    results = [r for b in page["data"] for r in b["results"]]
    assert {r["object"] for r in results} == {"organization.costs.result"}
    assert {r["api_key_id"] for r in results} == {key_id} and {r["line_item"] for r in results} == {None}
    assert sum(r["amount"]["value"] for r in results) == pytest.approx(48 * 0.15)
    hourly = api.get("/organization/costs", params={"start_time": 0, "bucket_width": "1h"})
    assert hourly.status_code == 400


def test_audit_logs_record_deletions_by_the_admin_key(conforms, api, emulator):
    project = emulator.add_project("prod")
    key_id, _ = emulator.add_user_key(project)
    api.delete(f"/organization/projects/{project}/api_keys/{key_id}")
    logs = conforms(api.get("/organization/audit_logs", params=[("event_types[]", "api_key.deleted")]))
    (event,) = logs["data"]
    assert event["api_key.deleted"] == {"id": key_id} and event["actor"]["type"] == "api_key"
    assert event["project"]["id"] == project


def test_data_plane_liveness_and_auth_errors(conforms, is_error_body, emulator, admin_key):
    project = emulator.add_project("prod")
    key_id, value = emulator.add_user_key(project)
    unknown = new_key_value("proj")

    def get(path: str, key: str) -> httpx.Response:
        with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.openai.com/v1") as client:
            return client.get(path, headers={"Authorization": f"Bearer {key}"})

    assert conforms(get("/models", value))["object"] == "list"
    assert get("/me", value).status_code == 200
    dead = get("/models", unknown)
    assert dead.status_code == 401 and is_error_body(dead)["code"] == "invalid_api_key"
    assert unknown not in dead.text  # OpenAI echoes a masked form only

    forbidden = get("/organization/projects", value)  # a project key on an admin route
    assert forbidden.status_code == 403 and is_error_body(forbidden)["type"] == "invalid_request_error"
    assert get("/organization/projects", unknown).status_code == 401
    assert get("/organization/projects", admin_key).status_code == 200

    with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.openai.com/v1") as client:
        assert client.get("/models").status_code == 401  # no Authorization header
    emulator.keys[key_id].deleted = True
    assert get("/models", value).status_code == 401


def test_injected_429_carries_retry_after_and_the_error_body(conforms, api, emulator):
    emulator.fail_next("GET", "/organization/usage/*", status=429, retry_after=1)
    emulator.fail_next("GET", "/v1/organization/usage/completions", status=429, retry_after=None)
    params = {"start_time": int(NOW.timestamp()) - HOUR}

    limited = api.get("/organization/usage/completions", params=params)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert conforms(limited)["error"]["code"] == "rate_limit_exceeded"  # usage-completions declares its 429

    quota = api.get("/organization/usage/completions", params=params)
    assert quota.status_code == 429 and "retry-after" not in quota.headers
    conforms(quota)

    assert api.get("/organization/usage/completions", params=params).status_code == 200
    assert [r.method for r in emulator.calls(path="/organization/usage/completions")] == ["GET"] * 3


@pytest.mark.parametrize("status", [500, 503, 401])
def test_injected_errors_use_the_error_body(is_error_body, api, emulator, status):
    emulator.fail_next("*", "/organization/projects", status=status, count=2)
    for _ in range(2):
        response = api.get("/organization/projects")
        assert response.status_code == status
        is_error_body(response)
    assert api.get("/organization/projects").status_code == 200


def test_requests_are_recorded_with_raw_query_and_headers(api, emulator):
    api.get("/organization/projects", params=[("include_archived", "true"), ("limit", "5")])
    (recorded,) = emulator.calls("GET", "/v1/organization/projects")
    assert recorded.query == "include_archived=true&limit=5"
    assert recorded.headers["authorization"].startswith("Bearer sk-admin-")
    assert "sk-admin" not in repr(recorded)
