"""Locate in GitHub Actions run logs, against the emulator: through MockTransport and a real socket.

Keys and tokens are generated at run time; the key must never appear in a finding or an error.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.errors import InputError, RateLimited
from cauterize.locate.ci_logs import CILogError, scan_github_actions
from cauterize.sandbox.github_actions import GitHubActionsEmulator
from cauterize.sandbox.server import serve
from cauterize.secret import Secret

BLOB = "https://productionresultssa0.blob.core.windows.net"
API = "https://api.github.com"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def world(make_key):
    """101 runs (two pages at GitHub's cap of 100): the key in a step of the oldest, a decoy in another."""
    github = GitHubActionsEmulator(download_base=BLOB)
    value, decoy = make_key(), make_key()
    leak = github.add_run(
        "org/app",
        "CI",
        T0,
        {
            "build/1_Set up job.txt": "Runner 2.317\n",
            "build/2_Run tests.txt": f"export OPENAI_API_KEY={value}\npytest\n",
            "deploy/1_Upload.txt": "Bearer " + base64.b64encode(f"x:{value}".encode()).decode() + "\n",
        },
    )
    for n in range(1, 101):
        logs = {"build/1_Run tests.txt": f"KEY={decoy}\n" if n == 50 else f"ok {n}\n"}
        github.add_run("org/app", f"CI {n}", T0 + timedelta(minutes=n), logs)
    return github, Secret(value), leak


@pytest.fixture
def token(world, monkeypatch) -> str:
    token = world[0].add_token()
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    return token


def mock_client(github) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(github), base_url=API)


def assert_never_shown(value: str, findings, errors) -> None:
    assert value not in json.dumps([f.to_dict() for f in findings]) + json.dumps(errors)


def test_finds_the_key_on_the_second_page_and_not_the_decoy(world, token):
    github, key, leak = world
    errors: list[str] = []
    with mock_client(github) as client:
        findings = scan_github_actions("org/app", key, client=client, errors=errors)

    assert errors == []
    assert sorted((f.location, f.path, f.encoding) for f in findings) == [
        (f"github-actions org/app run {leak} job build step '2_Run tests'", "build/2_Run tests.txt", "raw"),
        (f"github-actions org/app run {leak} job deploy step '1_Upload'", "deploy/1_Upload.txt", "base64"),
    ]
    assert all(
        f.source == "ci-log" and f.repo == "org/app" and f.kind == "file" and f.first_seen == "2026-01-05T08:00:00Z"
        for f in findings
    )
    listed = github.calls("GET", "/repositories/*/actions/runs")
    assert len(listed) == 1 and "page=2" in listed[0].query  # the Link URL, followed as given
    assert_never_shown(key.reveal(), findings, errors)


def test_token_goes_to_the_api_only_never_to_the_download_host(world, token):
    github, key, _ = world
    with mock_client(github) as client:
        scan_github_actions("org/app", key, client=client)

    api_calls = [r for r in github.requests if not r.path.startswith("/actions-results/")]
    downloads = github.calls("GET", "/actions-results/*")
    assert len(downloads) == 101
    assert all(r.headers["authorization"] == f"Bearer {token}" for r in api_calls)
    assert all(r.headers["x-github-api-version"] == "2022-11-28" for r in api_calls)
    assert all(r.headers["host"] == "productionresultssa0.blob.core.windows.net" for r in downloads)
    assert not any("authorization" in r.headers or token in json.dumps(r.headers) for r in downloads)


def test_expired_and_deleted_logs_are_reported_not_fatal(world, token):
    github, key, leak = world
    github.expire_logs(leak)
    other = next(run_id for run_id in github.runs if run_id != leak)
    github.delete_logs(other)
    errors: list[str] = []
    with mock_client(github) as client:
        findings = scan_github_actions("org/app", key, client=client, errors=errors)

    assert findings == []
    assert errors == [
        f"github-actions org/app: logs of 1 run(s) expired (404), not scanned: runs {leak}",
        f"github-actions org/app: logs of 1 run(s) were deleted (410), not scanned: runs {other}",
    ]


def test_primary_rate_limit_on_the_first_call_is_waited_out_once(world, token):
    github, key, _ = world
    github.fail_next("GET", "/repos/org/app/actions/runs", status=403, retry_after=None, reset_in=5)
    sleeps = Sleeps()
    with mock_client(github) as client:
        findings = scan_github_actions("org/app", key, client=client, sleep=sleeps)

    assert len(findings) == 2
    assert len(sleeps) == 1 and 4.0 <= sleeps[0] <= 6.5
    assert len(github.calls("GET", "/repos/org/app/actions/runs")) == 2


def test_secondary_rate_limits_wait_for_retry_after(world, token):
    github, key, _ = world
    github.fail_next("GET", "/repos/org/app/actions/runs", status=403, retry_after=3)
    github.fail_next("GET", "/repos/org/app/actions/runs/*/logs", status=429, retry_after=2)
    sleeps = Sleeps()
    with mock_client(github) as client:
        assert len(scan_github_actions("org/app", key, client=client, sleep=sleeps)) == 2
    assert sleeps == [3.0, 2.0]  # the 403 here, the 429 by cauterize.http.send


def test_a_rate_limit_beyond_max_wait_fails_at_once(world, token):
    github, key, _ = world
    github.fail_next("GET", "/repos/org/app/actions/runs", status=403, retry_after=None, reset_in=3600)
    sleeps = Sleeps()
    with mock_client(github) as client, pytest.raises(RateLimited, match="GitHub rate limit"):
        scan_github_actions("org/app", key, client=client, sleep=sleeps)
    assert sleeps == []


def test_a_download_that_keeps_failing_is_reported_not_fatal(world, token):
    github, key, _ = world
    github.fail_next("GET", "/actions-results/*", status=503, count=4)  # the first run listed: the newest
    errors: list[str] = []
    sleeps = Sleeps()
    with mock_client(github) as client:
        findings = scan_github_actions("org/app", key, client=client, errors=errors, sleep=sleeps)
    assert len(findings) == 2 and len(sleeps) == 3
    assert len(errors) == 1 and "logs download: the provider answered 503 after 4 attempts" in errors[0]


def test_since_asks_github_for_newer_runs_only(world, token):
    github, key, _ = world
    with mock_client(github) as client:
        findings = scan_github_actions("org/app", key, client=client, since=T0 + timedelta(minutes=30))
    assert findings == []
    assert github.requests[0].params.get("created") == ">=2026-01-05T08:30:00Z"
    assert len(github.calls("GET", "/actions-results/*")) == 71


def test_over_a_real_socket_the_download_host_gets_no_token(world, token, monkeypatch):
    github, key, _ = world
    with serve(github) as app:
        github.download_base = app.url.replace("127.0.0.1", "localhost")
        monkeypatch.setenv("GITHUB_API_URL", app.url)
        errors: list[str] = []
        findings = scan_github_actions("org/app", key, since=T0 - timedelta(seconds=1), errors=errors)
    assert errors == [] and {f.path for f in findings} == {"build/2_Run tests.txt", "deploy/1_Upload.txt"}
    downloads = github.calls("GET", "/actions-results/*")
    assert downloads and all(r.headers["host"].startswith("localhost:") for r in downloads)
    assert not any("authorization" in r.headers for r in downloads)
    assert all(r.headers["authorization"] == f"Bearer {token}" for r in github.calls("GET", "/repos/*"))


def test_a_whole_job_log_does_not_double_a_step_finding(make_key, monkeypatch):
    github = GitHubActionsEmulator(download_base=BLOB)
    value = make_key()
    github.add_run("org/app", "CI", T0, {"build/1_Run.txt": f"{value}\n", "build/2_Other.txt": "ok\n"})
    monkeypatch.setenv("GITHUB_TOKEN", github.add_token())
    with mock_client(github) as client:
        findings = scan_github_actions("org/app", Secret(value), client=client)
    assert [f.path for f in findings] == ["build/1_Run.txt"]


def test_bad_token_is_one_line_ci_log_error(world, monkeypatch):
    github, key, _ = world
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "1" * 36)
    with mock_client(github) as client, pytest.raises(CILogError) as caught:
        scan_github_actions("org/app", key, client=client)
    assert caught.value.exit_code == 3 and "401 (Bad credentials)" in caught.value.one_line()
    assert "GITHUB_TOKEN" in caught.value.remediation


def test_unknown_repository_is_ci_log_error(world, token):
    with mock_client(world[0]) as client, pytest.raises(CILogError, match="404"):
        scan_github_actions("org/nope", world[1], client=client)


def test_input_errors(world, token, monkeypatch):
    key = world[1]
    with pytest.raises(InputError, match="OWNER/NAME"):
        scan_github_actions("not a repo", key)
    with pytest.raises(InputError, match="Authorization"):
        scan_github_actions("org/app", key, client=httpx.Client(headers={"Authorization": f"Bearer {token}"}))
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(InputError, match="GITHUB_TOKEN"):
        scan_github_actions("org/app", key)
