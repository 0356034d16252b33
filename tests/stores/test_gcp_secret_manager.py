"""The GCP Secret Manager store with the official client (REST transport), against the emulator on a real socket.

Keys and access tokens are generated at run time.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import httpx
import pytest
from google.oauth2.credentials import Credentials

from cauterize.errors import StoreError
from cauterize.sandbox.gcp_secret_manager import GcpSecretManagerEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import Secret
from cauterize.stores import open_store
from cauterize.stores.gcp_secret_manager import (
    ENDPOINT_ENV,
    TOKEN_ENV,
    GcpSecretManagerStore,
    crc32c,
    make_client,
    scan,
)

PROJECT, NAME = "prod-project", "openai-api-key"
LATEST = f"/v1/projects/{PROJECT}/secrets/{NAME}/versions/latest:access"
ALL_BUT_DISABLE = [
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.list",
    "secretmanager.versions.enable",
]


@pytest.fixture
def old_key(make_key) -> str:
    return make_key()


@pytest.fixture
def gsm(old_key) -> GcpSecretManagerEmulator:
    emulator = GcpSecretManagerEmulator(page_size=2)  # small pages: every listing pages
    emulator.add_secret(PROJECT, NAME, old_key)
    return emulator


@pytest.fixture
def served(gsm):
    with serve(gsm) as app:
        yield app


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_store(gsm, served, sleeps):
    def make(permissions=None, name: str = NAME, **kwargs) -> GcpSecretManagerStore:
        client = make_client(served.url, Credentials(token=gsm.add_token(permissions)))
        return GcpSecretManagerStore(PROJECT, name, client=client, sleep=sleeps.append, **kwargs)

    return make


def states(gsm: GcpSecretManagerEmulator, name: str = NAME) -> list[str]:
    return [version.state for version in gsm.secrets[(PROJECT, name)].versions]


def test_write_adds_a_version_verifies_latest_disables_the_old_one_and_undo_restores(make_store, gsm, old_key,
                                                                                    make_key):
    store = make_store()
    assert store.read() == Secret(old_key)
    new = make_key()

    write = store.write(Secret(new))

    assert gsm.value_of(PROJECT, NAME) == new and store.read() == Secret(new)
    assert write.version == "2" and states(gsm) == ["DISABLED", "ENABLED"]
    assert write.details == {"project": PROJECT, "secret": NAME, "previous_version": "1", "disabled_versions": ["1"]}
    assert write.lingering == [
        f"gcp-secret-manager projects/{PROJECT}/secrets/{NAME}: version 1 is disabled, not destroyed, and still holds "
        + "the old value"
    ]
    (added,) = gsm.calls("POST", f"/v1/projects/{PROJECT}/secrets/{NAME}:addVersion")
    payload = json.loads(added.body)["payload"]
    assert base64.b64decode(payload["data"]).decode() == new
    assert payload["dataCrc32c"] == str(crc32c(new.encode())), "the client sends the checksum as an int64 string"
    assert added.headers["authorization"].startswith("Bearer ya29.")
    assert "enum-encoding=int" in added.params.get("$alt")

    write.undo()
    assert states(gsm) == ["ENABLED", "DISABLED", "ENABLED"], "the old version is back, the written one disabled"
    assert gsm.value_of(PROJECT, NAME) == old_key and store.read() == Secret(old_key), "latest stays readable"


def test_every_enabled_version_holding_the_old_key_is_disabled_others_are_kept(make_store, gsm, old_key, make_key):
    other = make_key()
    gsm.add_version(PROJECT, NAME, other)
    gsm.add_version(PROJECT, NAME, make_key(), state="DISABLED")
    gsm.add_version(PROJECT, NAME, old_key)  # latest: the leaked key, also in version 1
    write = make_store().write(Secret(make_key()))
    assert states(gsm) == ["DISABLED", "ENABLED", "DISABLED", "DISABLED", "ENABLED"]
    assert write.details["disabled_versions"] == ["1", "4"] and write.details["previous_version"] == "4"
    assert any("version 3 is disabled and may still hold the old value" in line for line in write.lingering)
    assert len(gsm.calls("GET", f"/v1/projects/{PROJECT}/secrets/{NAME}/versions")) == 3, "every page is read"


def test_destroy_old_versions_destroys_them_and_undo_adds_the_old_value_back(make_store, gsm, old_key, make_key):
    store = make_store(destroy_old_versions=True)
    write = store.write(Secret(make_key()))
    assert states(gsm) == ["DESTROYED", "ENABLED"] and gsm.value_of(PROJECT, NAME, 1) is None
    assert write.details["destroyed_versions"] == ["1"] and write.lingering == []
    write.undo()
    assert states(gsm) == ["DESTROYED", "DISABLED", "ENABLED"] and store.read() == Secret(old_key)


def test_a_secret_without_versions_is_written_and_undo_disables_the_written_version(make_store, gsm, make_key):
    gsm.add_secret(PROJECT, "fresh")
    store = make_store(name="fresh")
    assert store.read() is None
    write = store.write(Secret(make_key()))
    assert write.details["previous_version"] is None and write.lingering == []
    write.undo()
    assert states(gsm, "fresh") == ["DISABLED"] and store.read() is None


def test_a_rerun_with_the_new_key_in_place_changes_nothing(make_store, gsm, make_key):
    new = Secret(make_key())
    store = make_store()
    first = store.write(new)
    again = store.write(new)
    assert again.version == first.version and again.details["unchanged"] and again.undo is None
    assert states(gsm) == ["DISABLED", "ENABLED"]


def test_a_missing_secret_reads_none_and_is_not_created(make_store, gsm, make_key):
    store = make_store(name="nope")
    assert store.read() is None
    new = make_key()
    with pytest.raises(StoreError, match=r"add_secret_version failed \(NOT_FOUND: Secret \[projects/\d+") as info:
        store.write(Secret(new))
    assert "gcloud secrets create" in info.value.remediation and not info.value.retryable
    assert (PROJECT, "nope") not in gsm.secrets and new not in info.value.one_line()


def test_environment_endpoint_and_token_and_the_runbook_factory(gsm, served, monkeypatch, old_key):
    monkeypatch.setenv(ENDPOINT_ENV, served.url + "/")
    monkeypatch.setenv(TOKEN_ENV, gsm.add_token())
    config = SimpleNamespace(type="gcp-secret-manager", project=PROJECT, secret=NAME)
    store = open_store(config, None)
    assert isinstance(store, GcpSecretManagerStore) and store.describe() == f"gcp-secret-manager projects/{PROJECT}/secrets/{NAME}"
    assert store.read() == Secret(old_key)


def test_429_is_retried_after_retry_after(make_store, gsm, sleeps, old_key):
    gsm.fail_next("GET", LATEST, status=429, retry_after=2)
    assert make_store().read() == Secret(old_key)
    assert sleeps == [2.0]


def test_persistent_5xx_is_a_retryable_store_error_after_bounded_retries(make_store, gsm, sleeps):
    gsm.fail_next("GET", LATEST, status=503, count=10)
    with pytest.raises(StoreError, match=r"access_secret_version failed \(UNAVAILABLE") as info:
        make_store().read()
    assert info.value.retryable and sleeps == [0.5, 1.0, 2.0] and len(gsm.calls("GET", LATEST)) == 4


def test_add_version_is_not_resent_after_a_5xx(make_store, gsm, make_key, old_key):
    gsm.fail_next("POST", "*:addVersion", status=500)
    new = make_key()
    with pytest.raises(StoreError, match=r"add_secret_version failed \(INTERNAL") as info:
        make_store().write(Secret(new))
    assert info.value.retryable and info.value.__cause__ is None, "no chained exception holding the request"
    assert len(gsm.calls("POST", "*:addVersion")) == 1 and gsm.value_of(PROJECT, NAME) == old_key


def test_403_names_the_permission_and_the_roles(make_store, make_key):
    new = make_key()
    with pytest.raises(StoreError) as info:
        make_store(permissions=["secretmanager.versions.access"]).write(Secret(new))
    assert "PERMISSION_DENIED: Permission 'secretmanager.versions.add' denied" in info.value.message
    assert "roles/secretmanager.secretVersionManager" in info.value.remediation and not info.value.retryable
    assert new not in info.value.one_line()


def test_an_unknown_token_is_refused_with_the_credentials_hint(served, gsm, old_key):
    store = GcpSecretManagerStore(PROJECT, NAME, client=make_client(served.url, Credentials(token="ya29.unknown")))
    with pytest.raises(StoreError, match="the Google credentials were refused") as info:
        store.read()  # a static token cannot be refreshed after the 401: google-auth says so
    assert TOKEN_ENV in info.value.remediation and "application-default" in info.value.remediation
    assert gsm.calls("GET", LATEST)[0].headers["authorization"] == "Bearer ya29.unknown"


def test_a_failed_disable_does_not_fail_the_write_and_is_lingering(make_store, gsm, make_key):
    new = make_key()
    write = make_store(permissions=ALL_BUT_DISABLE).write(Secret(new))
    assert gsm.value_of(PROJECT, NAME) == new and states(gsm) == ["ENABLED", "ENABLED"]
    assert write.lingering == [
        f"gcp-secret-manager projects/{PROJECT}/secrets/{NAME}: version 1 still holds the old value (disable failed)"
    ]
    assert "PERMISSION_DENIED" in write.details["disable_errors"][0]


def test_another_writer_between_add_and_read_back_is_reported_not_undone(gsm, old_key, make_key):
    theirs = make_key()

    def racing(request: httpx.Request) -> httpx.Response:
        if request.url.path == LATEST and gsm.calls("POST") and len(gsm.secrets[(PROJECT, NAME)].versions) == 2:
            gsm.add_version(PROJECT, NAME, theirs)  # lands between our addVersion and our read-back
        return gsm(request)

    with serve(racing) as app:
        store = GcpSecretManagerStore(PROJECT, NAME, client=make_client(app.url, Credentials(token=gsm.add_token())))
        with pytest.raises(StoreError, match="another writer changed latest after version 2") as info:
            store.write(Secret(make_key()))
    assert info.value.retryable and states(gsm) == ["ENABLED"] * 3 and gsm.value_of(PROJECT, NAME) == theirs


def test_a_read_back_that_is_not_the_new_key_undoes_the_write(gsm, old_key, make_key):
    def tampering(request: httpx.Request) -> httpx.Response:
        response = gsm(request)
        if request.url.path == LATEST and response.json().get("name", "").endswith("/versions/2"):
            other = make_key().encode()
            body = response.json() | {"payload": {"data": base64.b64encode(other).decode(),
                                                  "dataCrc32c": str(crc32c(other))}}
            return httpx.Response(200, json=body)
        return response

    with serve(tampering) as app:
        store = GcpSecretManagerStore(PROJECT, NAME, client=make_client(app.url, Credentials(token=gsm.add_token())))
        with pytest.raises(StoreError, match="does not read back as version 2 with the new key; undone"):
            store.write(Secret(make_key()))
    assert states(gsm) == ["ENABLED", "DISABLED", "ENABLED"] and gsm.value_of(PROJECT, NAME) == old_key


def test_a_corrupted_payload_fails_its_crc32c_check(gsm, old_key):
    def corrupting(request: httpx.Request) -> httpx.Response:
        response = gsm(request)
        if request.url.path.endswith(":access") and response.status_code == 200:
            body = response.json()
            body["payload"]["dataCrc32c"] = str((int(body["payload"]["dataCrc32c"]) + 1) % 2**32)
            return httpx.Response(200, json=body)
        return response

    with serve(corrupting) as app:
        store = GcpSecretManagerStore(PROJECT, NAME, client=make_client(app.url, Credentials(token=gsm.add_token())))
        with pytest.raises(StoreError, match="failed its CRC32C check") as info:
            store.read()
    assert info.value.retryable


def test_scan_finds_every_secret_whose_latest_version_holds_the_key(gsm, served, old_key, make_key):
    gsm.add_secret(PROJECT, "copy", make_key(), old_key)
    gsm.add_secret(PROJECT, "rotated", old_key, make_key())  # only an older version holds it
    gsm.add_secret(PROJECT, "disabled", old_key)
    gsm.version(PROJECT, "disabled").state = "DISABLED"
    gsm.add_secret(PROJECT, "empty")
    gsm.add_secret("other-project", "elsewhere", old_key)
    client = make_client(served.url, Credentials(token=gsm.add_token()))
    assert scan(Secret(old_key), project=PROJECT, client=client) == [
        f"projects/{PROJECT}/secrets/copy",
        f"projects/{PROJECT}/secrets/{NAME}",
    ]


def test_scan_skips_an_unreadable_secret_when_asked_and_raises_otherwise(gsm, served, old_key):
    gsm.add_secret(PROJECT, "broken", old_key)
    client = make_client(served.url, Credentials(token=gsm.add_token()))
    gsm.fail_next("GET", "*/secrets/broken/versions/latest:access", status=403, message="denied here")
    skipped: list[str] = []
    assert scan(Secret(old_key), project=PROJECT, client=client, skipped=skipped) == [
        f"projects/{PROJECT}/secrets/{NAME}"
    ]
    assert skipped == [
        f"gcp-secret-manager projects/{PROJECT}/secrets/broken: access_secret_version failed "
        + "(PERMISSION_DENIED: denied here)"
    ]
    gsm.fail_next("GET", "*/secrets/broken/versions/latest:access", status=403)
    with pytest.raises(StoreError, match="PERMISSION_DENIED"):
        scan(Secret(old_key), project=PROJECT, client=client)
