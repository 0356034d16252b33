"""Vault KV v2 store against a real OpenBao dev server (see conftest.py)."""

from __future__ import annotations

import hvac
import pytest

from cauterize.errors import KeySourceError, StoreError
from cauterize.runbook import VaultKv2Store as StoreConfig
from cauterize.secret import Secret, load_key
from cauterize.stores import vault
from cauterize.stores.base import open_store
from cauterize.stores.vault import VaultKv2Store, scan

FIELD = "OPENAI_API_KEY"


def _kv(client: hvac.Client):
    return client.secrets.kv.v2


def _put(client: hvac.Client, path: str, data: dict, mount: str = "secret") -> int:
    return _kv(client).create_or_update_secret(path=path, secret=data, mount_point=mount)["data"]["version"]


def _version(client: hvac.Client, path: str, version: int | None = None) -> dict:
    response = _kv(client).read_secret_version(
        path=path, version=version, mount_point="secret", raise_on_deleted_version=True
    )
    return response["data"]["data"]


def _history(client: hvac.Client, path: str, older: str, old: str) -> None:
    """v1 holds an older key; v2 and v3 hold the old key (v3 after an unrelated field changed)."""
    _put(client, path, {FIELD: older, "DATABASE_URL": "postgres://app@db/app"})
    _put(client, path, {FIELD: old, "DATABASE_URL": "postgres://app@db/app"})
    _put(client, path, {FIELD: old, "DATABASE_URL": "postgres://app@db2/app", "ratio": 1.5})


def test_cas_write_keeps_other_fields_and_lists_the_versions_holding_the_old_key(vault_client, kv_path, make_key):
    older, old, new = make_key(), make_key(), make_key()
    _history(vault_client, kv_path, older, old)
    store = VaultKv2Store("secret", kv_path, FIELD)
    assert store.read() == Secret(old)

    write = store.write(Secret(new))

    assert write.version == "4"
    assert _version(vault_client, kv_path) == {FIELD: new, "DATABASE_URL": "postgres://app@db2/app", "ratio": 1.5}
    assert write.lingering == [f"vault-kv2 secret/{kv_path}: version {n} still holds the old value" for n in (2, 3)]
    assert write.details["destroyed_versions"] == [] and write.details["previous_version"] == 3
    assert store.read() == Secret(new)
    assert old not in repr(write) and new not in repr(write)


def test_destroy_old_versions_destroys_exactly_the_versions_with_the_old_key(vault_client, kv_path, make_key):
    older, old, new = make_key(), make_key(), make_key()
    _history(vault_client, kv_path, older, old)

    write = VaultKv2Store("secret", kv_path, FIELD, destroy_old_versions=True).write(Secret(new))

    versions = _kv(vault_client).read_secret_metadata(path=kv_path, mount_point="secret")["data"]["versions"]
    assert {int(n): info["destroyed"] for n, info in versions.items()} == {1: False, 2: True, 3: True, 4: False}
    assert write.details["destroyed_versions"] == [2, 3] and write.lingering == []
    assert _version(vault_client, kv_path, 1)[FIELD] == older


def test_a_soft_deleted_version_is_reported_as_possibly_lingering(vault_client, kv_path, make_key):
    old, new = make_key(), make_key()
    _put(vault_client, kv_path, {FIELD: old})
    _put(vault_client, kv_path, {FIELD: old, "x": "1"})
    _kv(vault_client).delete_secret_versions(path=kv_path, versions=[1], mount_point="secret")

    write = VaultKv2Store("secret", kv_path, FIELD, destroy_old_versions=True).write(Secret(new))

    assert write.details["destroyed_versions"] == [2]
    assert write.lingering == [
        f"vault-kv2 secret/{kv_path}: version 1 is deleted, not destroyed, and may still hold the old value"
    ]


def test_undo_writes_the_previous_data_back_as_a_new_version(vault_client, kv_path, make_key):
    old, new = make_key(), make_key()
    _put(vault_client, kv_path, {FIELD: old, "OTHER": "kept"})
    store = VaultKv2Store("secret", kv_path, FIELD)
    write = store.write(Secret(new))

    write.undo()

    assert store.read() == Secret(old)
    assert _version(vault_client, kv_path) == {FIELD: old, "OTHER": "kept"}
    assert _kv(vault_client).read_secret_metadata(path=kv_path, mount_point="secret")["data"]["current_version"] == 3


def test_a_new_path_is_created_with_cas_zero_and_undo_destroys_it(vault_client, kv_path, make_key):
    new = make_key()
    store = VaultKv2Store("secret", kv_path, FIELD)
    assert store.read() is None

    write = store.write(Secret(new))

    assert write.version == "1" and write.lingering == []
    assert _version(vault_client, kv_path) == {FIELD: new}
    write.undo()
    assert store.read() is None
    versions = _kv(vault_client).read_secret_metadata(path=kv_path, mount_point="secret")["data"]["versions"]
    assert versions["1"]["destroyed"] is True


def test_a_cas_conflict_with_another_writer_is_a_clear_store_error(vault_env, vault_client, kv_path, make_key):
    old, theirs, new = make_key(), make_key(), make_key()
    _put(vault_client, kv_path, {FIELD: old})
    addr, token = vault_env
    racing = hvac.Client(url=addr, token=token)
    real_write = _kv(racing).create_or_update_secret

    def another_writer_first(**params):
        _put(vault_client, kv_path, {FIELD: theirs})  # bumps the version between our read and our write
        return real_write(**params)

    _kv(racing).create_or_update_secret = another_writer_first

    with pytest.raises(StoreError) as caught:
        VaultKv2Store("secret", kv_path, FIELD, client=racing).write(Secret(new))

    line = caught.value.one_line()
    assert f"vault-kv2 secret/{kv_path}: another writer changed the secret" in line
    assert "check-and-set on version 1 failed" in line and caught.value.retryable
    assert new not in line and old not in line and theirs not in line
    assert _version(vault_client, kv_path) == {FIELD: theirs}


def test_a_token_without_the_policy_gets_a_one_line_error_naming_the_capabilities(
    vault_env, vault_client, kv_path, make_key
):
    old, new = make_key(), make_key()
    _put(vault_client, kv_path, {FIELD: old})
    policy = (
        f'path "secret/data/{kv_path}" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/{kv_path}" {{ capabilities = ["read"] }}'
    )
    limited = hvac.Client(url=vault_env[0], token=_token(vault_client, "read-only-" + kv_path, policy))

    with pytest.raises(StoreError) as caught:
        VaultKv2Store("secret", kv_path, FIELD, destroy_old_versions=True, client=limited).write(Secret(new))

    error = caught.value
    line = error.one_line()
    assert error.message.startswith(f"vault-kv2 secret/{kv_path}: create_or_update_secret failed (HTTP 403")
    assert f'path "secret/data/{kv_path}" {{ capabilities = ["read", "create", "update"] }}' in error.remediation
    assert f'path "secret/metadata/{kv_path}" {{ capabilities = ["read"] }}' in error.remediation
    assert f'path "secret/destroy/{kv_path}" {{ capabilities = ["update"] }}' in error.remediation
    assert "\n" not in line and new not in line and old not in line
    assert _version(vault_client, kv_path) == {FIELD: old}


def _token(vault_client: hvac.Client, name: str, policy: str) -> str:
    name = name.replace("/", "-")
    vault_client.sys.create_or_update_policy(name=name, policy=policy)
    return vault_client.auth.token.create(policies=[name], ttl="5m")["auth"]["client_token"]


def test_a_destroy_that_is_refused_keeps_the_write_and_reports_the_versions(vault_env, vault_client, kv_path, make_key):
    old, new = make_key(), make_key()
    _put(vault_client, kv_path, {FIELD: old})
    policy = (
        f'path "secret/data/{kv_path}" {{ capabilities = ["read", "create", "update"] }}\n'
        f'path "secret/metadata/{kv_path}" {{ capabilities = ["read"] }}'
    )  # no destroy
    no_destroy = hvac.Client(url=vault_env[0], token=_token(vault_client, "no-destroy-" + kv_path, policy))

    write = VaultKv2Store("secret", kv_path, FIELD, destroy_old_versions=True, client=no_destroy).write(Secret(new))

    assert _version(vault_client, kv_path) == {FIELD: new}
    assert write.lingering == [f"vault-kv2 secret/{kv_path}: version 1 still holds the old value"]
    assert "destroy_secret_versions failed (HTTP 403" in write.details["destroy_error"]
    assert write.details["destroyed_versions"] == []


def test_an_unreachable_vault_is_a_retryable_store_error(vault_env, monkeypatch, kv_path, make_key):
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")  # discard: nothing listens
    waits: list[float] = []
    with pytest.raises(StoreError) as caught:
        VaultKv2Store("secret", kv_path, FIELD, sleep=waits.append).write(Secret(make_key()))
    assert "ConnectionError" in caught.value.message and "VAULT_ADDR" in caught.value.remediation
    assert caught.value.retryable and waits == [1.0, 2.0], "the metadata read was tried three times"


def test_a_throttled_or_failing_vault_is_retried_but_a_write_is_never_resent(vault_env, monkeypatch, kv_path,
                                                                              vault_client, make_key):
    """A proxy in front of OpenBao answers the next N requests of a method itself (429 or 502), then forwards."""
    import httpx

    from cauterize.sandbox.server import serve

    addr, _ = vault_env
    failing = {"status": 429, "left": 2, "method": "GET", "seen": []}

    def proxy(request: httpx.Request) -> httpx.Response:
        failing["seen"].append(request.method)
        if failing["left"] > 0 and request.method == failing["method"]:
            failing["left"] -= 1
            return httpx.Response(failing["status"], json={"errors": ["injected"]})
        answer = httpx.request(request.method, addr + request.url.raw_path.decode(), headers=request.headers,
                               content=request.content)
        return httpx.Response(answer.status_code, content=answer.content, headers={"content-type": "application/json"})

    old = make_key()
    _put(vault_client, kv_path, {FIELD: old})
    waits: list[float] = []
    with serve(proxy) as app:
        monkeypatch.setenv("VAULT_ADDR", app.url)
        store = VaultKv2Store("secret", kv_path, FIELD, sleep=waits.append)
        assert store.read() == Secret(old) and waits == [1.0, 2.0], "two 429s waited out, the third try read"
        failing.update(status=502, left=3, method="POST", seen=[])
        with pytest.raises(StoreError) as caught:
            store.write(Secret(make_key()))
    assert failing["seen"].count("POST") == 1, "a write that met a 502 may have been applied: never re-sent"
    assert caught.value.retryable and "rerun in a minute" in caught.value.remediation
    assert _version(vault_client, kv_path)[FIELD] == old


def test_resolve_reference(vault_client, kv_path, make_key):
    key = make_key()
    _put(vault_client, kv_path, {FIELD: key, "OTHER": "x"})
    assert vault.resolve_reference(f"secret/{kv_path}#{FIELD}") == Secret(key)
    assert load_key(f"vault:secret/{kv_path}#{FIELD}") == Secret(key)  # through the key source dispatch
    with pytest.raises(KeySourceError, match="no such secret or field"):
        vault.resolve_reference(f"secret/{kv_path}#ABSENT")
    with pytest.raises(KeySourceError, match="MOUNT/PATH#FIELD"):
        load_key(f"vault:secret/{kv_path}")


def test_scan_walks_nested_paths_and_finds_only_the_fingerprint(vault_client, kv_mount, make_key):
    leaked, other = make_key(), make_key()
    _put(vault_client, "top", {"KEY": leaked, "USER": "app"}, kv_mount)
    _put(vault_client, "team/app/prod/openai", {FIELD: leaked}, kv_mount)
    _put(vault_client, "team/app/staging/openai", {FIELD: other}, kv_mount)
    _put(vault_client, "team/other", {"note": "no key here"}, kv_mount)

    assert scan(Secret(leaked), mount=kv_mount) == [f"{kv_mount}/team/app/prod/openai#{FIELD}", f"{kv_mount}/top#KEY"]
    assert scan(Secret(other), mount=kv_mount + "/") == [f"{kv_mount}/team/app/staging/openai#{FIELD}"]


def test_scan_of_an_empty_mount_finds_nothing(vault_env, kv_mount, make_key):
    assert scan(Secret(make_key()), mount=kv_mount) == []


def test_the_registry_opens_the_store_from_its_runbook_config(kv_path):
    config = StoreConfig(type="vault-kv2", mount="secret", path=kv_path, field=FIELD, destroy_old_versions=True)
    store = open_store(config, None)
    assert isinstance(store, VaultKv2Store) and store.destroy_old_versions
    assert store.describe() == f"vault-kv2 secret/{kv_path} {FIELD}"
