"""The Anthropic emulator against Anthropic's public Admin API contract (provider-apis.md 2 and 7.2).

Every key is generated at run time; no key-shaped literal is committed. The fixtures here replace
the OpenAI ones of ``tests/sandbox/conftest.py`` for this module.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.sandbox.anthropic import AnthropicEmulator, new_key_value
from cauterize.sandbox.server import serve

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VERSION = {"anthropic-version": "2023-06-01"}
KEYS = "/v1/organizations/api_keys"
USAGE = "/v1/organizations/usage_report/messages"


@pytest.fixture
def emulator() -> AnthropicEmulator:
    """An empty organisation whose clock stands still at 2026-03-01 12:00 UTC."""
    return AnthropicEmulator(now=lambda: NOW)


@pytest.fixture
def admin_key(emulator) -> str:
    return emulator.add_admin_key()


@pytest.fixture
def api(emulator, admin_key):
    """A client on the emulator at Anthropic's real base URL, sending the admin key and the version."""
    with httpx.Client(
        transport=httpx.MockTransport(emulator),
        base_url="https://api.anthropic.com",
        headers={"x-api-key": admin_key, **VERSION},
    ) as client:
        yield client


def error_of(response: httpx.Response, status: int, error_type: str) -> str:
    """Check Anthropic's error shape and the request id; return the message."""
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"] and body["request_id"].startswith("req_")
    return body["error"]["message"]


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def test_key_values_have_anthropic_shape():
    pattern = r"sk-ant-(?:api03|admin01)-[\w\-]{93}AA"  # the shape scanners look for (provider-apis.md 2.5)
    assert re.fullmatch(pattern, new_key_value())
    assert re.fullmatch(pattern, new_key_value("admin01"))
    assert new_key_value() != new_key_value()


def test_list_api_keys_pages_with_after_id_and_before_id(api, emulator):
    ids = [emulator.add_key(name=f"key-{index}")[0] for index in range(25)]

    default = api.get(KEYS).json()
    assert len(default["data"]) == 20 and default["has_more"] is True  # limit defaults to 20

    first = api.get(KEYS, params={"limit": 10}).json()
    assert [k["id"] for k in first["data"]] == ids[:10]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[0], ids[9], True)
    second = api.get(KEYS, params={"limit": 10, "after_id": first["last_id"]}).json()
    assert [k["id"] for k in second["data"]] == ids[10:20]
    last = api.get(KEYS, params={"limit": 10, "after_id": second["last_id"]}).json()
    assert [k["id"] for k in last["data"]] == ids[20:] and last["has_more"] is False

    before = api.get(KEYS, params={"limit": 3, "before_id": ids[10]}).json()
    assert [k["id"] for k in before["data"]] == ids[7:10] and before["has_more"] is True
    assert api.get(KEYS, params={"limit": 1000}).json()["has_more"] is False

    for limit in (0, 1001):
        assert "limit" in error_of(api.get(KEYS, params={"limit": limit}), 400, "invalid_request_error")
    error_of(api.get(KEYS, params={"after_id": "apikey_01unknown"}), 400, "invalid_request_error")


def test_list_api_keys_filters(api, emulator):
    workspace = emulator.add_workspace("prod")
    other_user = emulator.add_user("Sam Sre")
    active, _ = emulator.add_key(workspace_id=workspace)
    inactive, _ = emulator.add_key(status="inactive", user_id=other_user)
    archived, _ = emulator.add_key(status="archived")
    expired, _ = emulator.add_key(expires_at=NOW - timedelta(days=1))

    def ids(**params: str) -> list[str]:
        return [k["id"] for k in api.get(KEYS, params=params).json()["data"]]

    assert ids() == [active, inactive, archived, expired]  # every status by default
    assert [ids(status=s) for s in ("active", "inactive", "archived", "expired")] == [
        [active],
        [inactive],
        [archived],
        [expired],
    ]
    assert ids(workspace_id=workspace) == [active]
    assert ids(created_by_user_id=other_user) == [inactive]
    error_of(api.get(KEYS, params={"status": "deleted"}), 400, "invalid_request_error")
    assert ids(beta="true") == ids()  # the SDKs' ?beta=true is accepted and ignored


def test_api_key_objects_never_hold_the_secret(api, emulator):
    workspace = emulator.add_workspace("prod")
    robot = emulator.add_service_account("deploy bot")
    key_id, value = emulator.add_key(name="ci", workspace_id=workspace, service_account_id=robot)
    default_id, _ = emulator.add_key(expires_at=NOW + timedelta(days=30))

    listed = api.get(f"{KEYS}/{key_id}").json()
    assert value not in json.dumps(api.get(KEYS).json())
    assert (listed["type"], listed["id"], listed["name"], listed["status"]) == ("api_key", key_id, "ci", "active")
    assert listed["id"].startswith("apikey_") and datetime.fromisoformat(listed["created_at"]) == NOW
    hint = listed["partial_key_hint"]
    assert re.fullmatch(r"sk-ant-api03-[\w\-]{3}\.\.\.[\w\-]{2}AA", hint)  # like sk-ant-api03-R2D...igAA
    head, tail = hint.split("...")
    assert value.startswith(head) and value.endswith(tail)
    assert listed["workspace_id"] == workspace
    assert listed["scope"] == {"type": "workspace", "workspace_id": workspace}
    assert listed["principal"] == {"type": "service_account_actor", "service_account_id": robot}
    assert listed["created_by"]["type"] == "user" and listed["expires_at"] is None

    default = api.get(f"{KEYS}/{default_id}").json()
    assert default["workspace_id"] is None  # deprecated field: null in the default workspace
    assert default["scope"] == {"type": "workspace", "workspace_id": emulator.default_workspace}
    assert default["principal"]["type"] == "user_actor"
    assert datetime.fromisoformat(default["expires_at"]) == NOW + timedelta(days=30)
    assert "not found" in error_of(api.get(f"{KEYS}/apikey_01missing"), 404, "not_found_error")


def test_status_transitions_and_archived_is_terminal(api, emulator):
    key_id, value = emulator.add_key()
    path = f"{KEYS}/{key_id}"

    def post(body: dict) -> httpx.Response:
        return api.post(path, json=body)

    assert post({"status": "inactive"}).json()["status"] == "inactive" and not emulator.is_live(value)
    assert post({"status": "active", "name": "back"}).json()["name"] == "back" and emulator.is_live(value)
    assert "expired" in error_of(post({"status": "expired"}), 400, "invalid_request_error")
    error_of(post({"status": "deleted"}), 400, "invalid_request_error")
    error_of(post({"name": ""}), 400, "invalid_request_error")
    error_of(post({"name": "x" * 501}), 400, "invalid_request_error")
    error_of(post({"owner": "someone"}), 400, "invalid_request_error")

    assert post({"status": "archived"}).json()["status"] == "archived"
    assert "archived" in error_of(post({"status": "active"}), 400, "invalid_request_error")
    error_of(post({"status": "inactive"}), 400, "invalid_request_error")
    assert post({"status": "archived"}).status_code == 200  # no change: accepted
    assert not emulator.is_live(value)
    assert [{k: u[k] for k in u if k != "at"} for u in emulator.updates] == [
        {"api_key_id": key_id, "status": "inactive"},
        {"api_key_id": key_id, "name": "back", "status": "active"},
        {"api_key_id": key_id, "status": "archived"},
    ]

    expired_id, _ = emulator.add_key(expires_at=NOW - timedelta(seconds=1))
    assert api.get(f"{KEYS}/{expired_id}").json()["status"] == "expired"
    error_of(api.post(f"{KEYS}/{expired_id}", json={"status": "active"}), 400, "invalid_request_error")


def test_auth_rules_and_the_version_header(emulator, admin_key):
    key_id, value = emulator.add_key()

    def get(path: str, headers: dict[str, str]) -> httpx.Response:
        with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.anthropic.com") as client:
            return client.get(path, headers=headers)

    assert get(KEYS, {"x-api-key": admin_key, **VERSION}).status_code == 200
    assert get(KEYS + "?beta=true", {"authorization": f"Bearer {admin_key}", **VERSION}).status_code == 200
    assert get(KEYS, {"x-api-key": admin_key, "anthropic-version": "2026-10-21"}).status_code == 200
    assert "anthropic-version" in error_of(get(KEYS, {"x-api-key": admin_key}), 400, "invalid_request_error")
    error_of(get(KEYS, VERSION), 401, "authentication_error")
    error_of(get(KEYS, {"x-api-key": new_key_value("admin01"), **VERSION}), 401, "authentication_error")
    denied = get(KEYS, {"x-api-key": value, **VERSION})  # a standard key on an admin route
    error_of(denied, 403, "permission_error")
    assert value not in denied.text

    assert get("/v1/models", {"x-api-key": value, **VERSION}).json()["data"][0]["type"] == "model"
    assert get("/v1/models", {"authorization": f"Bearer {value}", **VERSION}).status_code == 200
    error_of(get("/v1/models", {"x-api-key": new_key_value(), **VERSION}), 401, "authentication_error")
    error_of(get("/v1/models", {"x-api-key": admin_key, **VERSION}), 401, "authentication_error")
    for status in ("inactive", "archived"):
        emulator.keys[key_id].status = status
        error_of(get("/v1/models", {"x-api-key": value, **VERSION}), 401, "authentication_error")
    _, expiring = emulator.add_key(expires_at=NOW)
    error_of(get("/v1/models", {"x-api-key": expiring, **VERSION}), 401, "authentication_error")

    emulator.dead_key_status = 404  # the knob for trufflehog's "disabled" 404
    error_of(get("/v1/models", {"x-api-key": value, **VERSION}), 404, "not_found_error")
    error_of(get("/v1/nowhere", {"x-api-key": value, **VERSION}), 404, "not_found_error")


def test_a_key_of_a_forbidden_workspace_authenticates_but_gets_permission_error(emulator):
    _, value = emulator.add_key(workspace_id=emulator.add_workspace("locked", forbidden=True))
    with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.anthropic.com") as client:
        denied = client.get("/v1/models", headers={"x-api-key": value, **VERSION})
    assert "permission" in error_of(denied, 403, "permission_error") and value not in denied.text
    assert emulator.is_live(value)


def test_every_answer_carries_a_request_id(api):
    ok = api.get(KEYS)
    assert ok.status_code == 200 and ok.headers["request-id"].startswith("req_")
    assert ok.headers["request-id"] != api.get(KEYS).headers["request-id"]


def test_usage_report_buckets_groups_and_filters(api, emulator):
    workspace = emulator.add_workspace("prod")
    key_id, _ = emulator.add_key(workspace_id=workspace)
    other_id, _ = emulator.add_key()
    start = NOW - timedelta(hours=3)
    emulator.add_usage(key_id, start, NOW, 60, 10, 20, cache_creation_input_tokens=3, cache_read_input_tokens=4)
    emulator.add_usage(other_id, start, NOW, 3600, 1000, 1000, web_search_requests=1)
    unaligned = iso(start + timedelta(minutes=2, seconds=5))  # buckets still snap to the hour

    bracket = api.get(
        USAGE,
        params=[("starting_at", unaligned), ("bucket_width", "1h"), ("api_key_ids[]", key_id)]
        + [("group_by[]", "api_key_id"), ("group_by[]", "model")],
    ).json()
    repeated = api.get(
        f"{USAGE}?starting_at={unaligned}&bucket_width=1h&api_key_ids={key_id}&group_by=api_key_id&group_by=model"
    ).json()
    assert repeated == bracket
    assert bracket["has_more"] is False and bracket["next_page"] is None
    assert [b["starting_at"] for b in bracket["data"]] == [iso(start + timedelta(hours=h)) for h in range(3)]
    assert bracket["data"][0]["ending_at"] == iso(start + timedelta(hours=1))
    results = [r for b in bracket["data"] for r in b["results"]]
    assert {(r["api_key_id"], r["model"], r["workspace_id"], r["service_tier"]) for r in results} == {
        (key_id, "claude-sonnet-4-5-20250929", None, None)  # dimensions are null unless grouped
    }
    assert sum(r["uncached_input_tokens"] for r in results) == 180 * 10
    assert sum(r["cache_creation"]["ephemeral_5m_input_tokens"] for r in results) == 180 * 3
    assert sum(r["cache_read_input_tokens"] for r in results) == 180 * 4
    assert sum(r["output_tokens"] for r in results) == 180 * 20
    assert {r["cache_creation"]["ephemeral_1h_input_tokens"] for r in results} == {0}

    by_workspace = api.get(USAGE, params=[("starting_at", iso(start)), ("group_by[]", "workspace_id")]).json()
    totals = {r["workspace_id"]: r for b in by_workspace["data"] for r in b["results"]}
    assert set(totals) == {workspace, None}  # the default workspace reports null
    assert totals[None]["server_tool_use"] == {"web_search_requests": 3} and totals[None]["api_key_id"] is None
    assert len(by_workspace["data"]) == 1  # bucket_width defaults to 1d


def test_usage_report_pages_follow_next_page(api, emulator):
    key_id, _ = emulator.add_key()
    emulator.add_usage(key_id, NOW - timedelta(hours=30), NOW, 3600, 1, 1)
    params = {"starting_at": iso(NOW - timedelta(hours=30)), "bucket_width": "1h"}

    first = api.get(USAGE, params=params).json()
    assert len(first["data"]) == 24 and first["has_more"] is True and first["next_page"]
    second = api.get(USAGE, params={**params, "page": first["next_page"]}).json()
    assert len(second["data"]) == 6 and second["has_more"] is False and second["next_page"] is None
    assert second["data"][0]["starting_at"] == first["data"][-1]["ending_at"]
    pages = first["data"] + second["data"]
    assert sum(r["output_tokens"] for b in pages for r in b["results"]) == 30

    minutes = api.get(USAGE, params={"starting_at": iso(NOW - timedelta(hours=2)), "bucket_width": "1m"}).json()
    assert len(minutes["data"]) == 60  # 1m: default limit 60
    assert len(api.get(USAGE, params={**params, "limit": 168}).json()["data"]) == 30


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"starting_at": "yesterday"},
        {"starting_at": iso(NOW - timedelta(days=1)), "bucket_width": "1w"},
        {"starting_at": iso(NOW - timedelta(days=1)), "bucket_width": "1h", "limit": 169},
        {"starting_at": iso(NOW - timedelta(days=40)), "bucket_width": "1d", "limit": 32},
        {"starting_at": iso(NOW - timedelta(days=1)), "bucket_width": "1m", "limit": 1441},
        {"starting_at": iso(NOW - timedelta(days=1)), "group_by[]": "user_id"},
        {"starting_at": iso(NOW - timedelta(days=1)), "page": "page_garbage"},
        {"starting_at": iso(NOW), "ending_at": iso(NOW - timedelta(days=1))},
    ],
)
def test_usage_report_rejects_bad_parameters(api, params):
    error_of(api.get(USAGE, params=params), 400, "invalid_request_error")


def test_injected_429_with_and_without_retry_after(api, emulator):
    emulator.fail_next("GET", KEYS, status=429, retry_after=1)
    emulator.fail_next("GET", KEYS, status=429, retry_after=None)  # the spend-cap variant

    limited = api.get(KEYS)
    error_of(limited, 429, "rate_limit_error")
    assert limited.headers["retry-after"] == "1"
    capped = api.get(KEYS)
    error_of(capped, 429, "rate_limit_error")
    assert "retry-after" not in capped.headers
    assert api.get(KEYS).status_code == 200


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(500, "api_error"), (529, "overloaded_error"), (401, "authentication_error"), (404, "not_found_error")],
)
def test_injected_errors_use_the_error_body(api, emulator, status, error_type):
    key_id, _ = emulator.add_key()
    emulator.fail_next("*", f"{KEYS}/*", status=status, count=2)
    for _ in range(2):
        error_of(api.post(f"{KEYS}/{key_id}", json={"status": "inactive"}), status, error_type)
    assert emulator.updates == []  # a failed request changes nothing
    assert api.get(f"{KEYS}/{key_id}").json()["status"] == "active"


def test_requests_are_recorded_with_raw_query_and_headers(api, emulator, admin_key):
    api.get(KEYS, params=[("limit", "5"), ("beta", "true")])
    (recorded,) = emulator.calls("GET", KEYS)
    assert recorded.query == "limit=5&beta=true" and recorded.params.get("limit") == "5"
    assert recorded.headers["x-api-key"] == admin_key and recorded.headers["anthropic-version"] == "2023-06-01"
    assert admin_key not in repr(recorded)
    assert emulator.calls("POST") == []


def test_served_over_a_real_socket(emulator, admin_key):
    _, value = emulator.add_key()
    with serve(emulator) as app, httpx.Client(base_url=app.url, headers=VERSION) as client:
        listed = client.get(KEYS, headers={"x-api-key": admin_key})
        assert listed.status_code == 200 and listed.headers["request-id"].startswith("req_")
        assert client.get("/v1/models", headers={"x-api-key": value}).status_code == 200
        error_of(client.get("/v1/models", headers={"x-api-key": new_key_value()}), 401, "authentication_error")
    assert emulator.calls("GET", "/v1/models")[0].headers["host"].startswith("127.0.0.1:")
