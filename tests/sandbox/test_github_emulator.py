"""The GitHub Actions secrets emulator against GitHub's documented REST contract.

Values are sealed here with PyNaCl exactly as GitHub's docs tell clients to; the emulator must open
them with its private key. Tokens and values are generated at run time.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nacl.public import PublicKey, SealedBox

from cauterize.sandbox.github import GitHubEmulator
from cauterize.sandbox.server import serve

REPO = "/repos/org/app/actions/secrets"
ENV = "/repos/org/app/environments/production/secrets"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github(clock) -> GitHubEmulator:
    emulator = GitHubEmulator(now=clock)
    emulator.add_repo("org/app", environments=["production"])
    emulator.add_repo("org/other")
    return emulator


@pytest.fixture
def token(github) -> str:
    return github.add_token()


def client_for(
    github: GitHubEmulator, token: str | None, scheme: str = "Bearer", url: str | None = None
) -> httpx.Client:
    """A client with GitHub's recommended headers: through MockTransport, or over the wire to ``url``."""
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    if url is not None:
        return httpx.Client(base_url=url, headers=headers)
    return httpx.Client(transport=httpx.MockTransport(github), base_url="https://api.github.com", headers=headers)


@pytest.fixture
def api(github, token):
    with client_for(github, token) as client:
        yield client


def sealed(api: httpx.Client, scope: str, value: str) -> dict[str, str]:
    key = api.get(f"{scope}/public-key").json()
    box = SealedBox(PublicKey(base64.b64decode(key["key"])))
    return {"encrypted_value": base64.b64encode(box.encrypt(value.encode())).decode(), "key_id": key["key_id"]}


def github_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"message", "documentation_url", "status"} and body["status"] == str(status)
    assert body["documentation_url"].startswith("https://docs.github.com/")
    return body["message"]


def test_public_key_is_a_curve25519_key_with_an_id(api):
    body = api.get(f"{REPO}/public-key").json()
    assert set(body) == {"key_id", "key"} and body["key_id"].isdigit()
    assert len(base64.b64decode(body["key"])) == 32
    assert api.get(f"{ENV}/public-key").json()["key"] != body["key"], "each environment has its own key pair"


def test_put_creates_then_updates_and_the_emulator_decrypts_exactly_the_value(api, github, clock, make_key):
    first, second = make_key(), make_key()
    created = api.put(f"{REPO}/OPENAI_API_KEY", json=sealed(api, REPO, first))
    assert created.status_code == 201 and created.json() == {}
    assert github.secret_value("org/app", "OPENAI_API_KEY") == first
    clock.now += timedelta(minutes=5)
    updated = api.put(f"{REPO}/openai_api_key", json=sealed(api, REPO, second))
    assert updated.status_code == 204 and updated.content == b""
    assert github.secret_value("org/app", "OPENAI_API_KEY") == second

    metadata = api.get(f"{REPO}/OPENAI_API_KEY").json()
    assert metadata == {
        "name": "OPENAI_API_KEY",
        "created_at": "2026-03-01T12:00:00Z",
        "updated_at": "2026-03-01T12:05:00Z",
    }
    listed = api.get(REPO).json()
    assert listed == {"total_count": 1, "secrets": [metadata]}
    assert all(second not in r.text for r in (api.get(REPO), api.get(f"{REPO}/OPENAI_API_KEY")))


def test_a_stale_key_id_or_a_bad_ciphertext_is_422_and_changes_nothing(api, github, make_key):
    old = make_key()
    api.put(f"{REPO}/K", json=sealed(api, REPO, old))
    body = sealed(api, REPO, make_key())
    github.rotate_public_key("org/app")
    assert "improperly encrypted" in github_error(api.put(f"{REPO}/K", json=body), 422)
    tampered = {**sealed(api, REPO, make_key())}
    raw = bytearray(base64.b64decode(tampered["encrypted_value"]))
    raw[-1] ^= 1
    tampered["encrypted_value"] = base64.b64encode(bytes(raw)).decode()
    assert "improperly encrypted" in github_error(api.put(f"{REPO}/K", json=tampered), 422)
    assert "key_id" in github_error(api.put(f"{REPO}/K", json={"encrypted_value": body["encrypted_value"]}), 422)
    assert github_error(api.put(f"{REPO}/K", json={**body, "encrypted_value": "not base64!"}), 422)
    assert github.secret_value("org/app", "K") == old


@pytest.mark.parametrize("name", ["GITHUB_TOKEN", "1ABC", "WITH-DASH"])
def test_invalid_secret_names_are_422(api, name, make_key):
    assert "Secret names" in github_error(api.put(f"{REPO}/{name}", json=sealed(api, REPO, make_key())), 422)


def test_environment_secrets_are_separate_from_repository_secrets(api, github, make_key):
    value = make_key()
    assert api.put(f"{ENV}/OPENAI_API_KEY", json=sealed(api, ENV, value)).status_code == 201
    assert github.secret_value("org/app", "OPENAI_API_KEY", environment="production") == value
    assert api.get(f"{REPO}/OPENAI_API_KEY").status_code == 404
    assert api.get(f"{ENV}/OPENAI_API_KEY").json()["name"] == "OPENAI_API_KEY"
    assert github_error(api.get("/repos/org/app/environments/staging/secrets/public-key"), 404) == "Not Found"


def test_environment_names_may_be_url_encoded(api, github, make_key):
    github.add_environment("org/app", "prod eu")
    scope = "/repos/org/app/environments/prod%20eu/secrets"
    value = make_key()
    assert api.put(f"{scope}/K", json=sealed(api, scope, value)).status_code == 201
    assert github.secret_value("org/app", "K", environment="prod eu") == value


def test_auth_bad_credentials_and_token_scheme(github, token):
    with client_for(github, None) as anonymous:
        assert github_error(anonymous.get(f"{REPO}/public-key"), 401) == "Requires authentication"
    with client_for(github, github.add_token() + "x") as wrong:
        assert github_error(wrong.get(f"{REPO}/public-key"), 401) == "Bad credentials"
    with client_for(github, token, scheme="token") as classic:
        assert classic.get(f"{REPO}/public-key").status_code == 200


def test_a_token_sees_only_its_repositories_and_read_only_cannot_write(github, make_key):
    with client_for(github, github.add_token(repos=["org/other"])) as narrow:
        assert github_error(narrow.get(f"{REPO}/public-key"), 404) == "Not Found"
        assert narrow.get("/repos/org/other/actions/secrets/public-key").status_code == 200
    with client_for(github, github.add_token(permission="read")) as reader:
        body = sealed(reader, REPO, make_key())
        assert "not accessible" in github_error(reader.put(f"{REPO}/K", json=body), 403)


def test_unknown_repository_or_route_is_404(api):
    assert github_error(api.get("/repos/org/missing/actions/secrets/public-key"), 404) == "Not Found"
    assert github_error(api.get("/repos/org/app/actions/variables"), 404) == "Not Found"


def test_unsupported_api_version_is_400(github, token):
    with client_for(github, token) as client:
        response = client.get(f"{REPO}/public-key", headers={"X-GitHub-Api-Version": "1999-01-01"})
        assert "not supported" in github_error(response, 400)


def test_fail_next_secondary_and_primary_rate_limits(api, github):
    github.fail_next("GET", f"{REPO}/public-key", status=403, retry_after=7)
    response = api.get(f"{REPO}/public-key")
    assert "secondary rate limit" in github_error(response, 403)
    assert response.headers["retry-after"] == "7"
    github.fail_next("*", "/repos/*", status=429, retry_after=None)
    response = api.get(f"{REPO}/public-key")
    assert "rate limit exceeded" in github_error(response, 429)
    assert response.headers["x-ratelimit-remaining"] == "0" and int(response.headers["x-ratelimit-reset"]) > 0
    github.fail_next("GET", "*", status=502)
    assert github_error(api.get(f"{REPO}/public-key"), 502) == "Server Error"
    assert api.get(f"{REPO}/public-key").status_code == 200
    assert len(github.calls("GET", f"{REPO}/public-key")) == 4


def test_served_over_a_real_socket(github, token, make_key):
    value = make_key()
    with serve(github) as app, client_for(github, token, url=app.url) as local:
        response = local.put(f"{REPO}/K", json=sealed(local, REPO, value))
        assert response.status_code == 201
        assert response.headers["x-github-api-version-selected"] == "2022-11-28"
    assert github.secret_value("org/app", "K") == value
