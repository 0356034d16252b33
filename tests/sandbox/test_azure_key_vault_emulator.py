"""The Key Vault emulator against the documented REST surface (httpx), then over HTTPS with the official client.

Secret values and tokens are generated at run time.
"""

from __future__ import annotations

import ssl
import time

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient

from cauterize.sandbox.azure_key_vault import AzureKeyVaultEmulator, make_tls_files, serve_tls

VAULT = "https://prod-kv.vault.azure.net"
API = {"api-version": "7.6"}


@pytest.fixture
def vault(make_key) -> AzureKeyVaultEmulator:
    emulator = AzureKeyVaultEmulator(page_size=2)
    emulator.add_secret("openai", make_key())
    emulator.add_secret("openai", make_key(), content_type="text/plain")
    return emulator


@pytest.fixture
def api(vault):
    with httpx.Client(transport=httpx.MockTransport(vault), base_url=VAULT, params=API,
                      headers={"Authorization": f"Bearer {vault.add_token()}"}) as client:
        yield client


def error_of(response: httpx.Response, status: int, code: str, inner: str | None = None) -> str:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert error.get("innererror", {}).get("code") == inner
    return error["message"]


def test_an_unauthenticated_request_gets_the_challenge(vault):
    with httpx.Client(transport=httpx.MockTransport(vault), base_url=VAULT, params=API) as anonymous:
        response = anonymous.get("/secrets/openai/")
    assert error_of(response, 401, "Unauthorized").startswith("AKV10000")
    assert response.headers["www-authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{vault.tenant_id}", '
        'resource="https://vault.azure.net"'
    ), "the resource is the vault host's DNS suffix"


def test_set_get_and_get_by_version(api, vault, make_key):
    value = make_key()
    created = api.put("/secrets/OpenAI", json={"value": value, "tags": {"app": "chat"}}).json()
    version = created["id"].rsplit("/", 1)[1]
    assert created["id"] == f"{VAULT}/secrets/openai/{version}" and created["value"] == value
    assert created["attributes"]["enabled"] is True and isinstance(created["attributes"]["created"], int)
    assert created["tags"] == {"app": "chat"} and "contentType" not in created, "each version has its own"
    assert api.get("/secrets/OPENAI").json()["value"] == value, "names are case-insensitive"
    first = vault.secrets["openai"].versions[0]
    assert api.get(f"/secrets/openai/{first.id}").json()["value"] == first.value


def test_the_current_version_is_the_newest_even_when_disabled(api, vault):
    current = vault.version("openai").id
    updated = api.patch(f"/secrets/openai/{current}", json={"attributes": {"enabled": False}}).json()
    assert updated["attributes"]["enabled"] is False and "value" not in updated
    error_of(api.get("/secrets/openai/"), 403, "Forbidden", "SecretDisabled")
    error_of(api.get(f"/secrets/openai/{current}"), 403, "Forbidden", "SecretDisabled")
    older = vault.secrets["openai"].versions[0].id
    assert api.get(f"/secrets/openai/{older}").status_code == 200


def test_versions_and_secrets_list_in_pages_with_next_link(api, vault, make_key):
    vault.add_secret("openai", make_key())
    vault.add_secret("anthropic", make_key())
    first = api.get("/secrets/openai/versions").json()
    assert len(first["value"]) == 2 and "value" not in first["value"][0]
    assert first["nextLink"].startswith(f"{VAULT}/secrets/openai/versions?api-version=7.6&$skiptoken=2")
    second = httpx.Client(transport=httpx.MockTransport(vault), headers=api.headers).get(first["nextLink"]).json()
    assert len(second["value"]) == 1 and second["nextLink"] is None
    listed = api.get("/secrets", params={"maxresults": 25}).json()
    assert [item["id"] for item in listed["value"]] == [f"{VAULT}/secrets/anthropic", f"{VAULT}/secrets/openai"]
    error_of(api.get("/secrets", params={"maxresults": 26}), 400, "BadParameter")


def test_errors_have_key_vault_shapes(api, vault):
    assert "was not found in this key vault" in error_of(api.get("/secrets/nope/"), 404, "SecretNotFound")
    error_of(api.get(f"/secrets/openai/{'0' * 32}"), 404, "SecretNotFound")
    error_of(api.put("/secrets/bad_name", json={"value": "x"}), 400, "BadParameter")
    error_of(api.put("/secrets/ok", json={"tags": {}}), 400, "BadParameter")
    error_of(api.get("/secrets/openai/", params={"api-version": "1.0"}), 400, "BadParameter")


def test_access_policy_permissions_are_enforced(vault):
    token = vault.add_token(["get"])
    with httpx.Client(transport=httpx.MockTransport(vault), base_url=VAULT, params=API,
                      headers={"Authorization": f"Bearer {token}"}) as reader:
        assert reader.get("/secrets/openai/").status_code == 200
        message = error_of(reader.put("/secrets/openai", json={"value": "x"}), 403, "Forbidden", "AccessDenied")
        assert "does not have secrets set permission on key vault 'prod-kv;" in message


def test_injected_faults_count_down_and_429_carries_retry_after(api, vault):
    vault.fail_next("GET", "/secrets/openai*", status=429, retry_after=4)
    response = api.get("/secrets/openai/")
    error_of(response, 429, "Throttled")
    assert response.headers["retry-after"] == "4"
    assert api.get("/secrets/openai/").status_code == 200
    assert [r.method for r in vault.calls(path="/secrets/openai/")] == ["GET", "GET"]


class StaticToken:
    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def test_https_with_the_generated_ca_and_the_official_client(vault, tmp_path, make_key):
    tls = make_tls_files(tmp_path)
    with serve_tls(vault, tls) as app:
        assert app.url.startswith("https://127.0.0.1:")
        token = vault.add_token()
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{app.url}/secrets/openai/", params=API, headers=headers, verify=ssl.create_default_context(
            cafile=str(tls.ca))).status_code == 200
        with pytest.raises(httpx.ConnectError):  # not trusted without the generated CA
            httpx.get(f"{app.url}/secrets/openai/", params=API, headers=headers)
        client = SecretClient(app.url, StaticToken(token), connection_verify=str(tls.ca))
        value = make_key()
        assert client.set_secret("openai", value).value == value
        assert [p.enabled for p in client.list_properties_of_secret_versions("openai")] == [True, True, True]
        assert [p.name for p in client.list_properties_of_secrets()] == ["openai"]


def test_a_foreign_challenge_resource_is_refused_by_the_client(make_key, tmp_path):
    vault = AzureKeyVaultEmulator(resource="https://vault.azure.net")
    vault.add_secret("openai", make_key())
    tls = make_tls_files(tmp_path)
    with serve_tls(vault, tls) as app:
        client = SecretClient(app.url, StaticToken(vault.add_token()), connection_verify=str(tls.ca))
        with pytest.raises(ValueError, match="does not match the requested domain"):
            client.get_secret("openai")
