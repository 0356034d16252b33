"""The Secret Manager emulator against the documented REST surface (httpx), then the official client on a socket.

Secret values and tokens are generated at run time.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from google.api_core import exceptions as core
from google.cloud import secretmanager_v1 as sm
from google.oauth2.credentials import Credentials

from cauterize.sandbox.gcp_secret_manager import GcpSecretManagerEmulator
from cauterize.sandbox.server import serve
from cauterize.stores.gcp_secret_manager import crc32c, make_client

SECRET = "/v1/projects/demo/secrets/openai"


@pytest.fixture
def gsm(make_key) -> GcpSecretManagerEmulator:
    emulator = GcpSecretManagerEmulator(page_size=2)
    emulator.add_secret("demo", "openai", make_key(), make_key(), labels={"team": "ml"})
    return emulator


@pytest.fixture
def api(gsm):
    with httpx.Client(transport=httpx.MockTransport(gsm), base_url="https://secretmanager.googleapis.com",
                      headers={"Authorization": f"Bearer {gsm.add_token()}"}) as client:
        yield client


def error_of(response: httpx.Response, code: int, status: str) -> str:
    assert response.status_code == code
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status and error["message"]
    return error["message"]


def add(api: httpx.Client, value: bytes, **payload) -> httpx.Response:
    return api.post(f"{SECRET}:addVersion", json={"payload": {"data": base64.b64encode(value).decode(), **payload}})


def test_crc32c_is_castagnoli():
    assert crc32c(b"123456789") == 0xE3069283 and crc32c(b"") == 0


def test_add_then_access_round_trips_base64_with_a_crc32c_string(api, gsm, make_key):
    value = make_key().encode()
    added = add(api, value, dataCrc32c=str(crc32c(value))).json()
    number = gsm.project_number("demo")
    assert added["name"] == f"projects/{number}/secrets/openai/versions/3", "answers name the project by number"
    assert added["state"] == "ENABLED" and added["clientSpecifiedPayloadChecksum"] is True
    assert added["createTime"].endswith("Z") and added["replicationStatus"] == {"automatic": {}}
    body = api.get(f"/v1/projects/{number}/secrets/openai/versions/latest:access").json()
    assert body["name"] == added["name"]
    assert base64.b64decode(body["payload"]["data"]) == value and body["payload"]["dataCrc32c"] == str(crc32c(value))


def test_a_wrong_checksum_an_empty_or_an_oversized_payload_is_invalid_argument(api, make_key):
    value = make_key().encode()
    error_of(add(api, value, dataCrc32c=str(crc32c(value) ^ 1)), 400, "INVALID_ARGUMENT")
    error_of(add(api, b""), 400, "INVALID_ARGUMENT")
    error_of(add(api, b"x" * 65537), 400, "INVALID_ARGUMENT")
    error_of(api.post(f"{SECRET}:addVersion", json={"payload": {"data": "not base64!"}}), 400, "INVALID_ARGUMENT")


def test_latest_is_the_newest_version_whatever_its_state(api, gsm):
    disabled = api.post(f"{SECRET}/versions/2:disable").json()
    assert disabled["state"] == "DISABLED"
    message = error_of(api.get(f"{SECRET}/versions/latest:access"), 400, "FAILED_PRECONDITION")
    assert message == f"Secret Version [projects/{gsm.project_number('demo')}/secrets/openai/versions/2] is in DISABLED state."
    assert api.get(f"{SECRET}/versions/1:access").status_code == 200
    assert api.post(f"{SECRET}/versions/2:enable").json()["state"] == "ENABLED"
    assert api.get(f"{SECRET}/versions/latest:access").status_code == 200


def test_destroy_drops_the_data_for_good(api, gsm):
    destroyed = api.post(f"{SECRET}/versions/1:destroy").json()
    assert destroyed["state"] == "DESTROYED" and destroyed["destroyTime"]
    assert gsm.value_of("demo", "openai", 1) is None
    error_of(api.post(f"{SECRET}/versions/1:enable"), 400, "FAILED_PRECONDITION")
    error_of(api.get(f"{SECRET}/versions/1:access"), 400, "FAILED_PRECONDITION")


def test_versions_list_newest_first_in_pages_and_enums_follow_the_encoding_asked(api, gsm, make_key):
    gsm.add_version("demo", "openai", make_key(), state="DISABLED")
    first = api.get(f"{SECRET}/versions").json()
    assert [v["name"].rsplit("/", 1)[1] for v in first["versions"]] == ["3", "2"]
    assert first["totalSize"] == 3 and first["versions"][0]["state"] == "DISABLED"
    second = api.get(f"{SECRET}/versions", params={"pageToken": first["nextPageToken"]}).json()
    assert [v["name"].rsplit("/", 1)[1] for v in second["versions"]] == ["1"] and second["nextPageToken"] == ""
    numeric = api.get(f"{SECRET}/versions", params={"$alt": "json;enum-encoding=int", "pageSize": 5}).json()
    assert [v["state"] for v in numeric["versions"]] == [2, 1, 1]


def test_secrets_list_and_get(api, gsm):
    gsm.add_secret("demo", "anthropic")
    gsm.add_secret("elsewhere", "hidden")
    listed = api.get("/v1/projects/demo/secrets").json()
    assert [s["name"].rsplit("/", 1)[1] for s in listed["secrets"]] == ["anthropic", "openai"]
    got = api.get(SECRET).json()
    assert got["labels"] == {"team": "ml"} and got["replication"] == {"automatic": {}}


def test_missing_things_are_not_found(api, gsm):
    gsm.add_secret("demo", "empty")
    assert "not found or has no versions" in error_of(api.get("/v1/projects/demo/secrets/empty/versions/latest:access"),
                                                      404, "NOT_FOUND")
    error_of(api.get(f"{SECRET}/versions/9"), 404, "NOT_FOUND")
    error_of(api.get("/v1/projects/demo/secrets/nope"), 404, "NOT_FOUND")
    error_of(api.get("/v1/projects/demo/somewhere"), 404, "NOT_FOUND")


def test_auth_is_checked_before_existence(gsm):
    transport = httpx.MockTransport(gsm)
    with httpx.Client(transport=transport, base_url="https://secretmanager.googleapis.com") as anonymous:
        error_of(anonymous.get(f"{SECRET}/versions/latest:access"), 401, "UNAUTHENTICATED")
    token = gsm.add_token(["secretmanager.versions.access"])
    with httpx.Client(transport=transport, base_url="https://secretmanager.googleapis.com",
                      headers={"Authorization": f"Bearer {token}"}) as narrow:
        response = narrow.post("/v1/projects/demo/secrets/nope/versions/1:disable")
        message = error_of(response, 403, "PERMISSION_DENIED")
        assert message == ("Permission 'secretmanager.versions.disable' denied for resource "
                           "'projects/demo/secrets/nope/versions/1' (or it may not exist).")
        assert response.json()["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"


def test_injected_faults_count_down_and_429_carries_retry_after(api, gsm):
    gsm.fail_next("GET", f"{SECRET}/versions/*", status=429, retry_after=3, count=2)
    for _ in range(2):
        response = api.get(f"{SECRET}/versions/1:access")
        error_of(response, 429, "RESOURCE_EXHAUSTED")
        assert response.headers["retry-after"] == "3"
    assert api.get(f"{SECRET}/versions/1:access").status_code == 200
    gsm.fail_next("*", "*", status=503)
    error_of(api.get(SECRET), 503, "UNAVAILABLE")
    assert [r.path for r in gsm.calls("GET", f"{SECRET}/versions/*")] == [f"{SECRET}/versions/1:access"] * 3


def test_the_official_client_pages_and_maps_errors_on_a_real_socket(gsm, make_key):
    for index in range(3):
        gsm.add_secret("demo", f"extra-{index}", make_key())
    with serve(gsm) as app:
        client = make_client(app.url, Credentials(token=gsm.add_token()))
        names = [s.name.rsplit("/", 1)[1] for s in client.list_secrets(parent="projects/demo", retry=None)]
        assert names == ["extra-0", "extra-1", "extra-2", "openai"]
        versions = list(client.list_secret_versions(parent="projects/demo/secrets/openai", retry=None))
        assert [v.state for v in versions] == [sm.SecretVersion.State.ENABLED] * 2
        with pytest.raises(core.NotFound):
            client.access_secret_version(name="projects/demo/secrets/nope/versions/latest", retry=None)
    assert len(gsm.calls("GET", "/v1/projects/demo/secrets")) == 2, "the client followed nextPageToken"
