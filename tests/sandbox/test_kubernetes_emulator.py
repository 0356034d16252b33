"""The Kubernetes apiserver emulator against the apiserver's documented behaviour.

Secret values and tokens are generated at run time.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from cauterize.sandbox.kubernetes import RESTARTED_AT, KubernetesEmulator
from cauterize.sandbox.server import serve

SECRET = "/api/v1/namespaces/prod/secrets/openai"
DEPLOYMENT = "/apis/apps/v1/namespaces/prod/deployments/app"
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def cluster(make_key) -> KubernetesEmulator:
    emulator = KubernetesEmulator()
    emulator.add_secret("prod", "openai", {"OPENAI_API_KEY": make_key(), "OTHER": "kept"})
    emulator.add_workload("prod", "app")
    return emulator


@pytest.fixture
def api(cluster):
    token = cluster.add_token()
    with httpx.Client(
        transport=httpx.MockTransport(cluster),
        base_url="https://kubernetes.default.svc",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


def status_of(response: httpx.Response, code: int, reason: str) -> dict:
    assert response.status_code == code
    body = response.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason and body["message"]
    return body


def patch(api: httpx.Client, path: str, body, headers=MERGE) -> httpx.Response:
    return api.patch(path, content=json.dumps(body), headers=headers)


def test_get_returns_a_v1_secret_with_base64_data_and_no_string_data(api, cluster):
    body = api.get(SECRET).json()
    assert body["kind"] == "Secret" and body["apiVersion"] == "v1" and body["type"] == "Opaque"
    assert set(body["metadata"]) >= {"name", "namespace", "uid", "resourceVersion", "creationTimestamp"}
    assert "stringData" not in body
    assert base64.b64decode(body["data"]["OTHER"]) == b"kept"


@pytest.mark.parametrize("headers", [MERGE, STRATEGIC])
def test_patch_changes_one_key_keeps_the_others_and_moves_resource_version(api, cluster, headers, make_key):
    before = api.get(SECRET).json()["metadata"]["resourceVersion"]
    new = make_key()
    after = patch(api, SECRET, {"data": {"OPENAI_API_KEY": b64(new)}}, headers).json()
    assert int(after["metadata"]["resourceVersion"]) > int(before)
    assert cluster.secret_data("prod", "openai") == {"OPENAI_API_KEY": new, "OTHER": "kept"}
    again = patch(api, SECRET, {"data": {"OPENAI_API_KEY": b64(new)}}, headers).json()
    assert again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"], "a no-op does not move it"


def test_string_data_is_folded_into_data_and_null_removes_a_key(api, cluster, make_key):
    new = make_key()
    body = patch(api, SECRET, {"stringData": {"OPENAI_API_KEY": new}, "data": {"OTHER": None}}).json()
    assert "stringData" not in body and set(body["data"]) == {"OPENAI_API_KEY"}
    assert cluster.secret_data("prod", "openai") == {"OPENAI_API_KEY": new}


def test_a_stale_resource_version_is_409_conflict_on_put_and_patch(api, cluster, make_key):
    current = api.get(SECRET).json()
    stale = current["metadata"]["resourceVersion"]
    patch(api, SECRET, {"data": {"OTHER": b64("moved")}})
    replaced = {**current, "data": {"OPENAI_API_KEY": b64(make_key())}}
    body = status_of(api.put(SECRET, json=replaced), 409, "Conflict")
    assert body["message"].startswith('Operation cannot be fulfilled on secrets "openai": the object has been modified')
    assert body["details"] == {"name": "openai", "kind": "secrets"}
    status_of(
        patch(api, SECRET, {"metadata": {"resourceVersion": stale}, "data": {"OTHER": b64("x")}}), 409, "Conflict"
    )
    assert cluster.secret_data("prod", "openai")["OTHER"] == "moved"

    fresh = api.get(SECRET).json()
    fresh["stringData"] = {"OPENAI_API_KEY": "replaced"}
    assert api.put(SECRET, json=fresh).status_code == 200
    assert cluster.secret_data("prod", "openai")["OPENAI_API_KEY"] == "replaced"


def test_validation_immutable_keys_and_base64(api, cluster):
    cluster.add_secret("prod", "frozen", {"K": "v"}, immutable=True)
    body = status_of(patch(api, "/api/v1/namespaces/prod/secrets/frozen", {"data": {"K": b64("w")}}), 422, "Invalid")
    assert "immutable" in body["message"]
    status_of(patch(api, SECRET, {"data": {"bad key": b64("v")}}), 422, "Invalid")
    status_of(patch(api, SECRET, {"data": {"K": "not base64!"}}), 400, "BadRequest")
    status_of(
        api.patch(SECRET, content=b"[]", headers={"Content-Type": "application/json-patch+json"}),
        415,
        "UnsupportedMediaType",
    )


def test_not_found_bodies_name_the_resource(api):
    body = status_of(api.get("/api/v1/namespaces/prod/secrets/missing"), 404, "NotFound")
    assert body["message"] == 'secrets "missing" not found'
    body = status_of(api.get("/apis/apps/v1/namespaces/prod/deployments/missing"), 404, "NotFound")
    assert body["message"] == 'deployments.apps "missing" not found'
    assert body["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}
    status_of(api.post("/api/v1/namespaces/prod/secrets", json={}), 404, "NotFound")
    status_of(api.delete(SECRET), 405, "MethodNotAllowed")


def test_rollout_restart_patch_bumps_generation_and_is_recorded(api, cluster):
    before = api.get(DEPLOYMENT).json()
    stamp = "2026-03-01T12:00:00Z"
    restart = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    after = patch(api, DEPLOYMENT, restart, STRATEGIC).json()
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["spec"]["template"]["metadata"]["labels"] == {"app": "app"}, "the merge keeps the rest of the template"
    assert [(r.namespace, r.kind, r.name, r.restarted_at) for r in cluster.restarts] == [
        ("prod", "deployments", "app", stamp)
    ]
    patch(api, DEPLOYMENT, restart, STRATEGIC)
    assert len(cluster.restarts) == 1, "the same stamp again is no restart"


def test_auth_and_rbac(cluster):
    def client(token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(transport=httpx.MockTransport(cluster), base_url="https://k8s", headers=headers)

    status_of(client(None).get(SECRET), 401, "Unauthorized")
    status_of(client("wrong").get(SECRET), 401, "Unauthorized")
    reader = client(cluster.add_token("alice", rules=[("get", "secrets")]))
    assert reader.get(SECRET).status_code == 200
    body = status_of(patch(reader, SECRET, {"data": {}}), 403, "Forbidden")
    assert body["message"] == (
        'secrets "openai" is forbidden: User "alice" cannot patch resource "secrets" in API group "" in the namespace "prod"'
    )
    body = status_of(patch(reader, DEPLOYMENT, {}, STRATEGIC), 403, "Forbidden")
    assert 'cannot patch resource "deployments" in API group "apps"' in body["message"]


def test_fail_next_429_with_retry_after(api, cluster):
    cluster.fail_next("GET", SECRET, status=429, retry_after=2)
    response = api.get(SECRET)
    status_of(response, 429, "TooManyRequests")
    assert response.headers["retry-after"] == "2"
    assert api.get(SECRET).status_code == 200
    assert len(cluster.calls("GET", SECRET)) == 2


def test_served_over_a_real_socket(cluster):
    token = cluster.add_token()
    with serve(cluster) as app, httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.get(SECRET).json()["metadata"]["name"] == "openai"
        assert patch(api, SECRET, {"stringData": {"OTHER": "wire"}}).status_code == 200
    assert cluster.secret_data("prod", "openai")["OTHER"] == "wire"
