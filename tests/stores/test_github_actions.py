"""The GitHub Actions store against the GitHub emulator: through MockTransport and over a real socket.

The emulator opens every sealed box with its private key, so the tests assert on the exact value
GitHub would hold. Tokens and keys are generated at run time.
"""

from __future__ import annotations

import httpx
import pytest

from cauterize.errors import InputError, StoreError
from cauterize.runbook import GithubActionsStore as GithubActionsConfig
from cauterize.sandbox.github import GitHubEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import Secret
from cauterize.stores import open_store
from cauterize.stores.github_actions import GithubActionsStore

SECRET_PATH = "/repos/org/app/actions/secrets/OPENAI_API_KEY"


@pytest.fixture
def github() -> GitHubEmulator:
    emulator = GitHubEmulator()
    emulator.add_repo("org/app", environments=["production"])
    return emulator


@pytest.fixture
def token(github) -> str:
    return github.add_token()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_store(github, token, sleeps):
    def make(transport: httpx.BaseTransport | None = None, **kwargs) -> GithubActionsStore:
        options = {"token": token, "transport": transport or httpx.MockTransport(github), "sleep": sleeps.append}
        return GithubActionsStore("org/app", "OPENAI_API_KEY", **{**options, **kwargs})

    return make


def test_write_creates_then_updates_and_github_holds_exactly_the_new_value(make_store, github, make_key):
    store = make_store()
    first, second = make_key(), make_key()
    created = store.write(Secret(first))
    assert github.secret_value("org/app", "OPENAI_API_KEY") == first
    assert created.details["status"] == "created" and created.version == created.details["updated_at"]
    updated = store.write(Secret(second))
    assert github.secret_value("org/app", "OPENAI_API_KEY") == second
    assert updated.details["status"] == "updated"
    assert updated.details["previous_updated_at"] == created.details["updated_at"]
    assert updated.undo is None and updated.lingering == []
    assert store.read() is None and store.write_only
    for request in github.requests:
        assert second.encode() not in request.body and first.encode() not in request.body
    (put, _) = github.calls("PUT", SECRET_PATH)
    assert put.headers["x-github-api-version"] == "2022-11-28"
    assert put.headers["authorization"].startswith("Bearer ")


def test_a_key_rotated_between_get_and_put_is_retried_once_with_the_fresh_key(make_store, github, make_key):
    rotated = []

    def rotate_before_first_put(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not rotated:
            rotated.append(github.rotate_public_key("org/app"))
        return github(request)

    value = make_key()
    store = make_store(transport=httpx.MockTransport(rotate_before_first_put))
    write = store.write(Secret(value))
    assert github.secret_value("org/app", "OPENAI_API_KEY") == value
    assert write.details["key_id"] == rotated[0]
    assert len(github.calls("PUT", SECRET_PATH)) == 2


def test_a_key_that_keeps_rotating_is_a_store_error_with_githubs_422(make_store, github, make_key):
    def always_rotate(request: httpx.Request) -> httpx.Response:
        response = github(request)
        if request.url.path.endswith("/public-key"):
            github.rotate_public_key("org/app")
        return response

    value = make_key()
    with pytest.raises(StoreError, match="422.*improperly encrypted") as info:
        make_store(transport=httpx.MockTransport(always_rotate)).write(Secret(value))
    assert value not in info.value.one_line()


def test_a_bad_token_is_a_one_line_store_error_without_the_token(make_store, github, make_key):
    wrong = github.add_token() + "x"
    with pytest.raises(StoreError) as info:
        make_store(token=wrong).write(Secret(make_key()))
    line = info.value.one_line()
    assert "\n" not in line and "401" in line and "Bad credentials" in line
    assert "github-actions org/app OPENAI_API_KEY" in line and "GITHUB_TOKEN" in line
    assert wrong not in line


def test_without_github_token_the_error_says_to_set_it(make_store, monkeypatch, make_key):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with pytest.raises(StoreError, match="GITHUB_TOKEN is not set"):
        make_store(token=None).write(Secret(make_key()))


def test_environment_secrets(make_store, github, make_key):
    value = make_key()
    write = make_store(environment="production").write(Secret(value))
    assert github.secret_value("org/app", "OPENAI_API_KEY", environment="production") == value
    assert write.store == "github-actions org/app environment production OPENAI_API_KEY"
    assert github.calls("PUT", "/repos/org/app/environments/production/secrets/OPENAI_API_KEY")
    assert "OPENAI_API_KEY" not in github.repos["org/app"].actions.secrets


def test_a_missing_environment_or_repository_is_named(make_store, github, token, make_key):
    with pytest.raises(StoreError, match="environment staging does not exist or the token cannot see it"):
        make_store(environment="staging").write(Secret(make_key()))
    with pytest.raises(StoreError, match="repository org/gone does not exist"):
        GithubActionsStore("org/gone", "K", token=token, transport=httpx.MockTransport(github)).get_metadata()


def test_a_read_only_token_is_forbidden(make_store, github, make_key):
    with pytest.raises(StoreError, match="forbidden \\(403 Resource not accessible") as info:
        make_store(token=github.add_token(permission="read")).write(Secret(make_key()))
    assert "Secrets: read and write" in info.value.remediation


def test_secondary_rate_limit_403_waits_for_retry_after(make_store, github, sleeps, make_key):
    github.fail_next("PUT", SECRET_PATH, status=403, retry_after=3)
    github.fail_next("GET", "*/public-key", status=429, retry_after=2)
    value = make_key()
    make_store().write(Secret(value))
    assert github.secret_value("org/app", "OPENAI_API_KEY") == value
    assert sorted(sleeps) == [2, 3]


def test_persistent_5xx_is_a_retryable_store_error(make_store, github, make_key):
    github.fail_next("*", "*", status=502, count=100)
    with pytest.raises(StoreError) as info:
        make_store().write(Secret(make_key()))
    assert info.value.retryable and "502" in info.value.message


def test_bad_repo_is_an_input_error():
    with pytest.raises(InputError, match="OWNER/NAME"):
        GithubActionsStore("just-a-name", "K")


def test_through_the_registry_over_a_real_socket(github, token, monkeypatch, make_key):
    value = make_key()
    config = GithubActionsConfig(type="github-actions", repo="org/app", name="openai_api_key")
    with serve(github) as app:
        monkeypatch.setenv("GITHUB_API_URL", app.url)
        monkeypatch.setenv("GITHUB_TOKEN", token)
        store = open_store(config, None)
        write = store.write(Secret(value))
    assert github.secret_value("org/app", "OPENAI_API_KEY") == value
    assert write.details["status"] == "created"
