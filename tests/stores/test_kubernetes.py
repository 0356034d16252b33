"""The Kubernetes store with the official client, against the apiserver emulator on a real socket.

The client is configured the way an operator's machine is: a kubeconfig file (written here at
test time) named by KUBECONFIG. Tokens and keys are generated at run time.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from kubernetes import client as k8s

from cauterize.errors import InputError, StoreError
from cauterize.runbook import KubernetesStore as KubernetesConfig
from cauterize.sandbox.kubernetes import KubernetesEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import Secret
from cauterize.stores import open_store
from cauterize.stores.kubernetes import LAST_APPLIED, KubernetesStore

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
SECRET = "/api/v1/namespaces/prod/secrets/openai"


@pytest.fixture
def old_key(make_key) -> str:
    return make_key()


@pytest.fixture
def cluster(old_key) -> KubernetesEmulator:
    emulator = KubernetesEmulator()
    emulator.add_secret("prod", "openai", {"OPENAI_API_KEY": old_key, "DATABASE_URL": "postgres://db/app"})
    emulator.add_workload("prod", "app")
    return emulator


@pytest.fixture
def served(cluster):
    with serve(cluster) as app:
        yield app


def write_kubeconfig(path, server: str, token: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
        "users": [{"name": "cauterize", "user": {"token": token}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "cauterize", "namespace": "prod"}}],
        "current-context": "sandbox",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch, served, cluster):
    """KUBECONFIG pointing at the served emulator; call it again with ``rules`` for a narrower identity."""

    def configure(rules=None) -> str:
        token = cluster.add_token("system:serviceaccount:ops:cauterize", rules=rules)
        path = write_kubeconfig(tmp_path / f"kubeconfig-{len(cluster.tokens)}", served.url, token)
        monkeypatch.setenv("KUBECONFIG", path)
        return path

    configure()
    return configure


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_store(kubeconfig, sleeps):
    def make(restart: str | None = "deployment/app", **kwargs) -> KubernetesStore:
        return KubernetesStore(
            "prod", "openai", "OPENAI_API_KEY", restart, sleep=sleeps.append, clock=lambda: NOW, **kwargs
        )

    return make


def test_read_write_keeps_other_keys_restarts_and_undo_restores(make_store, cluster, old_key, make_key):
    store = make_store()
    assert store.read() == Secret(old_key)
    before = cluster.objects[("secrets", "prod", "openai")]["metadata"]["resourceVersion"]
    new = make_key()

    write = store.write(Secret(new))

    assert cluster.secret_data("prod", "openai") == {"OPENAI_API_KEY": new, "DATABASE_URL": "postgres://db/app"}
    assert store.read() == Secret(new)
    assert int(write.version) > int(before) and write.details["previousResourceVersion"] == before
    assert write.details["restarted"] == "deployments/app" and write.details["restartedAt"] == "2026-03-01T12:30:00Z"
    assert [(r.kind, r.name, r.restarted_at) for r in cluster.restarts] == [
        ("deployments", "app", "2026-03-01T12:30:00Z")
    ]
    assert write.lingering == [] and write.store == "kubernetes prod/openai OPENAI_API_KEY"
    (patch_request,) = cluster.calls("PATCH", SECRET)
    assert patch_request.headers["content-type"] == "application/strategic-merge-patch+json"
    assert json.loads(patch_request.body)["data"].keys() == {"OPENAI_API_KEY"}, "only the one key is sent"

    write.undo()
    assert cluster.secret_data("prod", "openai") == {"OPENAI_API_KEY": old_key, "DATABASE_URL": "postgres://db/app"}
    assert len(cluster.restarts) == 1, "undo does not restart again"


def test_a_missing_key_reads_none_is_added_and_undo_removes_it(kubeconfig, cluster, make_key):
    store = KubernetesStore("prod", "openai", "ANTHROPIC_API_KEY")
    assert store.read() is None
    write = store.write(Secret(make_key("sk-ant-api03-")))
    assert "ANTHROPIC_API_KEY" in cluster.secret_data("prod", "openai") and not cluster.restarts
    write.undo()
    assert set(cluster.secret_data("prod", "openai")) == {"OPENAI_API_KEY", "DATABASE_URL"}


def test_a_missing_secret_reads_none_and_is_not_created(kubeconfig, cluster, make_key):
    store = KubernetesStore("staging", "openai", "OPENAI_API_KEY")
    assert store.read() is None
    with pytest.raises(StoreError, match="secret staging/openai does not exist"):
        store.write(Secret(make_key()))
    assert ("secrets", "staging", "openai") not in cluster.objects


def test_a_concurrent_change_is_a_409_then_the_patch_is_redone_on_fresh_data(cluster, make_key):
    admin = cluster.add_token()
    edits = []

    def edit_between_read_and_patch(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and not edits:  # someone else writes first
            headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/merge-patch+json"}
            body = json.dumps({"stringData": {"ADDED_MEANWHILE": "yes"}})
            edits.append(cluster(httpx.Request("PATCH", request.url, headers=headers, content=body)).status_code)
        return cluster(request)

    new = make_key()
    with serve(edit_between_read_and_patch) as racing:
        configuration = k8s.Configuration(host=racing.url, api_key={"authorization": f"Bearer {admin}"})
        KubernetesStore("prod", "openai", "OPENAI_API_KEY", configuration=configuration).write(Secret(new))
    assert edits == [200]
    assert len(cluster.calls("PATCH", SECRET)) == 3  # ours (409 Conflict), the racing edit, ours again
    assert cluster.secret_data("prod", "openai")["ADDED_MEANWHILE"] == "yes"
    assert cluster.secret_data("prod", "openai")["OPENAI_API_KEY"] == new


def test_rbac_without_patch_on_secrets_is_a_store_error_naming_the_verbs(kubeconfig, make_store, make_key):
    kubeconfig(rules=[("get", "secrets")])
    new = make_key()
    with pytest.raises(StoreError) as info:
        make_store().write(Secret(new))
    message = info.value.message
    assert "cannot patch secrets prod/openai: Forbidden (403)" in message
    assert 'User "system:serviceaccount:ops:cauterize" cannot patch resource "secrets"' in message
    assert "get and patch secrets in namespace prod" in info.value.remediation
    assert "patch deployments (API group apps)" in info.value.remediation
    assert new not in info.value.one_line()


def test_a_failed_restart_puts_the_secret_back(kubeconfig, make_store, cluster, old_key, make_key):
    kubeconfig(rules=[("get", "secrets"), ("patch", "secrets")])
    with pytest.raises(StoreError) as info:
        make_store().write(Secret(make_key()))
    assert "cannot patch deployments prod/app: Forbidden (403)" in info.value.message
    assert "the secret was put back to its previous value" in info.value.message
    assert cluster.secret_data("prod", "openai")["OPENAI_API_KEY"] == old_key
    assert not cluster.restarts


def test_bad_credentials_are_401(kubeconfig, served, tmp_path, monkeypatch, make_store, make_key):
    monkeypatch.setenv("KUBECONFIG", write_kubeconfig(tmp_path / "bad", served.url, "not-a-token"))
    with pytest.raises(StoreError, match="cannot get secrets prod/openai: Unauthorized \\(401\\)") as info:
        make_store().read()
    assert "KUBECONFIG" in info.value.remediation


def test_429_is_retried_after_retry_after(make_store, cluster, sleeps, old_key):
    cluster.fail_next("GET", SECRET, status=429, retry_after=2)
    assert make_store().read() == Secret(old_key)
    assert sleeps == [2.0]


def test_persistent_503_is_a_retryable_store_error(make_store, cluster):
    cluster.fail_next("GET", SECRET, status=503, count=10)
    with pytest.raises(StoreError, match="ServiceUnavailable \\(503\\)") as info:
        make_store().read()
    assert info.value.retryable


def test_last_applied_configuration_holding_the_old_value_is_reported(kubeconfig, cluster, make_key):
    old = make_key()
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "applied"}, "stringData": {"K": old}}
    cluster.add_secret("prod", "applied", {"K": old}, annotations={LAST_APPLIED: json.dumps(manifest)})
    (lingering,) = KubernetesStore("prod", "applied", "K").write(Secret(make_key())).lingering
    assert LAST_APPLIED in lingering and "prod/applied" in lingering and old not in lingering


def test_an_in_process_configuration_and_the_registry(served, cluster, monkeypatch, tmp_path, make_key):
    configuration = k8s.Configuration(host=served.url, api_key={"authorization": f"Bearer {cluster.add_token()}"})
    new = make_key()
    KubernetesStore("prod", "openai", "OPENAI_API_KEY", configuration=configuration).write(Secret(new))
    assert cluster.secret_data("prod", "openai")["OPENAI_API_KEY"] == new

    monkeypatch.setenv("KUBECONFIG", write_kubeconfig(tmp_path / "kc", served.url, cluster.add_token()))
    config = KubernetesConfig(
        type="kubernetes", namespace="prod", secret="openai", key="OPENAI_API_KEY", restart="deploy/app"
    )
    store = open_store(config, None)
    assert store.read() == Secret(new)
    assert store.restart == ("deployments", "app")


def test_an_unreachable_apiserver_is_a_retryable_store_error(tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}", "t"))
    with pytest.raises(StoreError, match="cannot reach the Kubernetes API") as info:
        KubernetesStore("prod", "openai", "K").read()
    assert info.value.retryable


def test_no_kubeconfig_is_a_store_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(StoreError, match="no usable Kubernetes configuration"):
        KubernetesStore("prod", "openai", "K").read()


@pytest.mark.parametrize("restart", ["app", "job/app", "deployment/"])
def test_a_bad_restart_target_is_an_input_error(restart):
    with pytest.raises(InputError, match="deployment/NAME"):
        KubernetesStore("prod", "openai", "K", restart)
