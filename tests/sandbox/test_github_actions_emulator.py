"""The GitHub Actions run-log emulator against GitHub's documented REST contract.

Runs list newest first with RFC 8288 ``Link`` pagination, logs redirect to a signed archive URL
that expires after a minute, expired logs answer 404 and deleted ones 410, rate limits carry
GitHub's headers. Tokens are generated at run time.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.sandbox.github_actions import GitHubActionsEmulator
from cauterize.sandbox.server import serve

RUNS = "/repos/org/app/actions/runs"
BLOB = "https://productionresultssa0.blob.core.windows.net"
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github(clock) -> GitHubActionsEmulator:
    emulator = GitHubActionsEmulator(now=clock, download_base=BLOB)
    for n in range(3):
        emulator.add_run("org/app", f"CI {n}", T0 + timedelta(hours=n), {"build/1_Run tests.txt": f"run {n}\nok\n"})
    emulator.add_run("org/other", "CI", T0, {"build/1_Set up job.txt": "hello\n"})
    return emulator


@pytest.fixture
def token(github) -> str:
    return github.add_token()


def client_for(github, token: str | None = None, scheme: str = "Bearer") -> httpx.Client:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"{scheme} {token}"
    return httpx.Client(transport=httpx.MockTransport(github), base_url="https://api.github.com", headers=headers)


@pytest.fixture
def api(github, token):
    with client_for(github, token) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"message", "documentation_url", "status"} and body["status"] == str(status)
    assert body["documentation_url"].startswith("https://docs.github.com/")
    return body["message"]


def test_runs_list_newest_first_with_link_pagination(api, github):
    first = api.get(RUNS, params={"per_page": 2})
    assert first.status_code == 200
    body = first.json()
    assert body["total_count"] == 3
    assert [run["name"] for run in body["workflow_runs"]] == ["CI 2", "CI 1"]
    run = body["workflow_runs"][0]
    assert {
        "id",
        "name",
        "head_branch",
        "head_sha",
        "created_at",
        "run_started_at",
        "html_url",
        "status",
        "conclusion",
    } <= set(run)
    assert run["created_at"] == "2026-02-01T11:00:00Z" and run["html_url"].startswith(
        "https://github.com/org/app/actions/runs/"
    )
    repo_id = run["repository"]["id"]
    assert first.links["next"]["url"] == f"https://api.github.com/repositories/{repo_id}/actions/runs?per_page=2&page=2"
    assert first.links["last"]["url"].endswith("page=2") and "prev" not in first.links

    second = api.get(first.links["next"]["url"])
    assert [run["name"] for run in second.json()["workflow_runs"]] == ["CI 0"]
    assert set(second.links) == {"prev", "first"}


def test_per_page_is_capped_at_100_and_defaults_to_30(api, github):
    for n in range(120):
        github.add_run("org/app", f"bulk {n}", T0 - timedelta(days=1, minutes=n), {"b/1_s.txt": "x\n"})
    assert len(api.get(RUNS, params={"per_page": 500}).json()["workflow_runs"]) == 100
    assert len(api.get(RUNS).json()["workflow_runs"]) == 30


def test_created_qualifiers(api):
    def names(created: str) -> list[str]:
        return [run["name"] for run in api.get(RUNS, params={"created": created}).json()["workflow_runs"]]

    assert names(">=2026-02-01T10:00:00Z") == ["CI 2", "CI 1"]
    assert names("<2026-02-01T10:00:00Z") == ["CI 0"]
    assert names("2026-02-01") == ["CI 2", "CI 1", "CI 0"]
    assert names(">2026-02-01") == []
    assert names("2026-01-01..2026-02-01T09:30:00Z") == ["CI 0"]


def test_logs_redirect_to_a_signed_archive_of_step_files(api, github, clock):
    run_id = api.get(RUNS).json()["workflow_runs"][0]["id"]
    redirect = api.get(f"{RUNS}/{run_id}/logs")
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(f"{BLOB}/actions-results/") and "sig=" in location and "se=" in location

    with httpx.Client(transport=httpx.MockTransport(github)) as anonymous:
        download = anonymous.get(location)
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert sorted(archive.namelist()) == ["0_build.txt", "build/1_Run tests.txt"]
    step = archive.read("build/1_Run tests.txt").decode()
    assert step == "2026-02-01T11:00:00.0000000Z run 2\n2026-02-01T11:00:00.0000000Z ok\n"
    assert archive.read("0_build.txt").decode() == step
    assert github.calls("GET", "/actions-results/*")[0].headers["host"] == "productionresultssa0.blob.core.windows.net"

    clock.now += timedelta(minutes=2)  # "This link expires after 1 minute."
    with httpx.Client(transport=httpx.MockTransport(github)) as anonymous:
        stale = anonymous.get(location)
    assert stale.status_code == 403 and b"AuthenticationFailed" in stale.content


def test_expired_logs_are_404_and_deleted_logs_410(api, github):
    runs = [run["id"] for run in api.get(RUNS).json()["workflow_runs"]]
    github.expire_logs(runs[0])
    assert error_of(api.get(f"{RUNS}/{runs[0]}/logs"), 404) == "Not Found"
    github.delete_logs(runs[1])
    assert error_of(api.get(f"{RUNS}/{runs[1]}/logs"), 410) == "Gone"
    assert api.delete(f"{RUNS}/{runs[2]}/logs").status_code == 204
    assert error_of(api.get(f"{RUNS}/{runs[2]}/logs"), 410) == "Gone"


def test_auth_missing_bad_and_out_of_scope(github, token):
    with client_for(github) as anonymous:
        assert error_of(anonymous.get(RUNS), 401) == "Requires authentication"
    with client_for(github, "ghp_" + "0" * 36) as wrong:
        assert error_of(wrong.get(RUNS), 401) == "Bad credentials"
    with client_for(github, token, scheme="token") as classic:
        assert classic.get(RUNS).status_code == 200
    with client_for(github, github.add_token(repos=["org/other"])) as scoped:
        assert error_of(scoped.get(RUNS), 404) == "Not Found"
        assert scoped.get("/repos/org/other/actions/runs").status_code == 200
    with client_for(github, token) as client:
        unknown = client.get(RUNS, headers={"X-GitHub-Api-Version": "2020-01-01"})
        assert unknown.status_code == 400


def test_injected_primary_and_secondary_rate_limits(api, github, clock):
    github.fail_next("GET", RUNS, status=403, retry_after=None, reset_in=30)
    primary = api.get(RUNS)
    assert error_of(primary, 403).startswith("API rate limit exceeded")
    assert primary.headers["x-ratelimit-remaining"] == "0"
    assert int(primary.headers["x-ratelimit-reset"]) == int(clock.now.timestamp()) + 30

    github.fail_next("GET", RUNS, status=429, retry_after=7)
    secondary = api.get(RUNS)
    assert secondary.status_code == 429 and secondary.headers["retry-after"] == "7"
    assert "secondary rate limit" in error_of(secondary, 429)
    assert api.get(RUNS).status_code == 200


def test_each_token_has_an_hourly_primary_budget(clock):
    github = GitHubActionsEmulator(now=clock, rate_limit=2)
    github.add_run("org/app", "CI", T0, {"build/1_Run.txt": "x\n"})
    with client_for(github, github.add_token()) as api:
        assert api.get(RUNS).headers["x-ratelimit-remaining"] == "1"
        assert api.get(RUNS).headers["x-ratelimit-remaining"] == "0"
        spent = api.get(RUNS)
        assert (
            error_of(spent, 403).startswith("API rate limit exceeded") and spent.headers["x-ratelimit-remaining"] == "0"
        )
        clock.now += timedelta(hours=1)
        assert api.get(RUNS).status_code == 200


def test_seeding_rejects_log_paths_github_never_produces(github):
    with pytest.raises(ValueError, match="<job>/<n>_<step>.txt"):
        github.add_run("org/app", "CI", T0, {"Run tests.txt": "x"})


def test_served_over_a_real_socket_with_the_download_on_another_host_name(token, github):
    with serve(github) as app:
        github.download_base = app.url.replace("127.0.0.1", "localhost")
        headers = {"Authorization": f"Bearer {token}", "X-GitHub-Api-Version": "2022-11-28"}
        with httpx.Client(base_url=app.url, headers=headers, timeout=5) as api:
            runs = api.get(RUNS, params={"per_page": 1})
            assert runs.status_code == 200 and runs.headers["link"].count('rel="next"') == 1
            redirect = api.get(f"{RUNS}/{runs.json()['workflow_runs'][0]['id']}/logs")
        assert redirect.status_code == 302
        with httpx.Client(timeout=5) as anonymous:
            download = anonymous.get(redirect.headers["location"])
        assert download.status_code == 200
        assert zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert github.calls("GET", "/actions-results/*")[0].headers["host"].startswith("localhost:")
