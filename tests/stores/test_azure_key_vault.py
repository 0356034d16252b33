"""The Azure Key Vault store with the official client, against the emulator over HTTPS on a real socket.

The client performs Key Vault's challenge authentication with a tiny static credential (no
azure-identity, no network), trusts a CA generated at test time (``connection_verify``) and keeps
``verify_challenge_resource`` on. Keys and tokens are generated at run time.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.secrets._shared import http_challenge_cache

from cauterize.errors import StoreError
from cauterize.sandbox.azure_key_vault import AzureKeyVaultEmulator, make_tls_files, serve_tls
from cauterize.secret import Secret
from cauterize.stores import open_store
from cauterize.stores.azure_key_vault import AzureKeyVaultStore, make_client, scan

NAME = "openai-api-key"


class StaticToken:
    """A TokenCredential that hands out one token and remembers what it was asked for."""

    def __init__(self, token: str):
        self.token, self.requests = token, []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.requests.append((scopes, kwargs.get("tenant_id")))
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def old_key(make_key) -> str:
    return make_key()


@pytest.fixture
def vault(old_key) -> AzureKeyVaultEmulator:
    emulator = AzureKeyVaultEmulator(page_size=2)  # small pages: every listing pages
    emulator.add_secret(NAME, old_key, content_type="text/plain", tags={"app": "chat"})
    return emulator


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def served(vault, tls):
    with serve_tls(vault, tls) as app:
        yield app


@pytest.fixture
def credentials() -> list[StaticToken]:
    return []


@pytest.fixture
def connect(vault, served, tls, credentials):
    """A SecretClient on the served vault: ``connect(permissions=None, token=None, **client_options)``."""

    def make(permissions=None, token: str | None = None, **options):
        credential = StaticToken(token or vault.add_token(permissions))
        credentials.append(credential)
        settings = {"connection_verify": str(tls.ca), "retry_backoff_factor": 0.01} | options
        return make_client(served.url, credential, **settings)

    return make


@pytest.fixture
def make_store(served, connect):
    def make(permissions=None, name: str = NAME, **options) -> AzureKeyVaultStore:
        return AzureKeyVaultStore(served.url, name, client=connect(permissions, **options))

    return make


def states(vault: AzureKeyVaultEmulator, name: str = NAME) -> list[bool]:
    return [version.enabled for version in vault.secrets[name.lower()].versions]


def test_write_sets_a_version_verifies_disables_the_old_one_and_undo_restores(make_store, vault, old_key, make_key):
    store = make_store()
    assert store.read() == Secret(old_key)
    old_version = vault.version(NAME).id
    new = make_key()

    write = store.write(Secret(new))

    current = vault.version(NAME)
    assert current.value == new and write.version == current.id and store.read() == Secret(new)
    assert (current.content_type, current.tags) == ("text/plain", {"app": "chat"}), "kept from the old version"
    assert states(vault) == [False, True] and write.details["disabled_versions"] == [old_version]
    assert write.details["previous_version"] == old_version
    assert write.lingering == [
        f"{store.describe()}: version {old_version} is disabled but still holds the old value "
        + "(Key Vault deletes versions only with the whole secret)"
    ]
    assert store.describe() == f"azure-key-vault {served_netloc(vault)}/{NAME}"

    write.undo()
    assert states(vault) == [True, False, True], "the old version is back, the written one disabled"
    assert store.read() == Secret(old_key), "the current version stays readable"


def served_netloc(vault: AzureKeyVaultEmulator) -> str:
    return vault.requests[-1].headers["host"]


def test_every_enabled_version_holding_the_old_key_is_disabled_others_are_kept(make_store, vault, old_key, make_key):
    vault.add_secret(NAME, make_key())
    vault.add_secret(NAME, make_key(), enabled=False)
    vault.add_secret(NAME, old_key)
    versions = [v.id for v in vault.secrets[NAME].versions]
    write = make_store().write(Secret(make_key()))
    assert states(vault) == [False, True, False, False, True]
    assert sorted(write.details["disabled_versions"]) == sorted([versions[0], versions[3]])
    assert any(f"version {versions[2]} is disabled and may still hold" in line for line in write.lingering)
    assert len(vault.calls("GET", f"/secrets/{NAME}/versions")) == 3, "every page is read (nextLink)"


def test_a_rerun_with_the_new_key_in_place_changes_nothing(make_store, vault, make_key):
    new = Secret(make_key())
    store = make_store()
    first = store.write(new)
    again = store.write(new)
    assert again.version == first.version and again.details["unchanged"] and again.undo is None
    assert states(vault) == [False, True] and len(vault.calls("PUT")) == 1


def test_a_new_secret_is_created_and_undo_disables_it(make_store, vault, make_key):
    store = make_store(name="brand-new")
    assert store.read() is None
    write = store.write(Secret(make_key()))
    assert write.details["previous_version"] is None and write.lingering == []
    write.undo()
    assert states(vault, "brand-new") == [False] and store.read() is None


def test_the_challenge_flow_runs_once_with_resource_verification_on(make_store, vault, served, credentials):
    http_challenge_cache.clear()  # the client caches challenges per host:port for the process
    store = make_store()
    store.read()
    store.read()
    first, second, third = vault.requests
    assert "authorization" not in first.headers, "the first request elicits the challenge"
    assert second.headers["authorization"] == third.headers["authorization"] == f"Bearer {credentials[0].token}"
    port = served.url.rsplit(":", 1)[1]
    assert credentials[0].requests == [((f"https://0.0.1:{port}/.default",), vault.tenant_id)]


def test_the_runbook_factory_builds_the_store():
    config = SimpleNamespace(type="azure-key-vault", vault_url="https://prod-kv.vault.azure.net/", name=NAME)
    store = open_store(config, None)
    assert isinstance(store, AzureKeyVaultStore) and store.describe() == f"azure-key-vault prod-kv.vault.azure.net/{NAME}"


def test_plain_http_is_refused_by_the_client():
    client = make_client("http://127.0.0.1:9", StaticToken("t"), retry_backoff_factor=0.01)
    store = AzureKeyVaultStore("http://127.0.0.1:9", NAME, client=client)
    with pytest.raises(StoreError, match="ServiceRequestError") as info:
        store.read()
    assert "HTTPS" in info.value.remediation and info.value.retryable


def test_429_is_retried_after_retry_after(make_store, vault, old_key):
    vault.fail_next("GET", f"/secrets/{NAME}/", status=429, retry_after=1)
    started = time.monotonic()
    assert make_store().read() == Secret(old_key)
    assert time.monotonic() - started >= 1.0, "azure-core waited for Retry-After"
    assert len(vault.calls("GET", f"/secrets/{NAME}/")) == 3  # the challenge, the 429, the retry


def test_persistent_5xx_is_a_retryable_store_error(make_store, vault):
    vault.fail_next("GET", f"/secrets/{NAME}/", status=500, count=10)
    with pytest.raises(StoreError, match=r"get_secret failed \(500 InternalServerError\)") as info:
        make_store().read()
    assert info.value.retryable and len(vault.calls("GET", f"/secrets/{NAME}/")) == 1 + 4  # challenge + 1 + 3 retries


def test_403_names_the_permission_and_is_not_retried(make_store, make_key, vault):
    new = make_key()
    with pytest.raises(StoreError, match="does not have secrets set permission") as info:
        make_store(permissions=["get", "list"]).write(Secret(new))
    assert "Key Vault Secrets Officer" in info.value.remediation and not info.value.retryable
    assert new not in info.value.one_line() and info.value.__cause__ is None
    assert len(vault.calls("PUT")) == 1, "a 403 is not retried"


def test_an_unknown_token_is_401_with_the_credentials_hint(connect, served):
    store = AzureKeyVaultStore(served.url, NAME, client=connect(token="eyJ0eXAi.unknown"))
    with pytest.raises(StoreError, match=r"\(401 Unauthorized\)") as info:
        store.read()
    assert "DefaultAzureCredential" in info.value.remediation


def test_a_failed_disable_does_not_fail_the_write_and_is_lingering(make_store, vault, make_key):
    old_version = vault.version(NAME).id
    vault.fail_next("PATCH", "*", status=403, count=1, message="denied")
    new = make_key()
    write = make_store().write(Secret(new))
    assert vault.version(NAME).value == new and states(vault) == [True, True]
    assert write.lingering == [f"{write.store}: version {old_version} still holds the old value (disabling it failed)"]
    assert "denied" in write.details["disable_errors"][0]


def test_scan_finds_every_secret_whose_current_version_holds_the_key(vault, served, connect, old_key, make_key):
    vault.add_secret("Copy", make_key())
    vault.add_secret("Copy", old_key)
    vault.add_secret("rotated", old_key)
    vault.add_secret("rotated", make_key())
    vault.add_secret("disabled", old_key, enabled=False)
    assert scan(Secret(old_key), vault_url=served.url + "/", client=connect()) == [
        f"{served.url}/secrets/Copy",
        f"{served.url}/secrets/{NAME}",
    ]


def test_scan_skips_an_unreadable_secret_when_asked_and_raises_otherwise(vault, served, connect, old_key):
    vault.add_secret("broken", old_key)
    client = connect()
    vault.fail_next("GET", "/secrets/broken/", status=403, message="denied here")
    skipped: list[str] = []
    assert scan(Secret(old_key), vault_url=served.url, client=client, skipped=skipped) == [
        f"{served.url}/secrets/{NAME}"
    ]
    assert len(skipped) == 1 and "broken: get_secret failed (403 Forbidden): denied here" in skipped[0]
    vault.fail_next("GET", "/secrets/broken/", status=403)
    with pytest.raises(StoreError, match="403"):
        scan(Secret(old_key), vault_url=served.url, client=client)
