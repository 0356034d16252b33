"""Find every copy of a key in a repository's GitHub Actions run logs, through GitHub's REST API.

``scan_github_actions("org/app", secret)`` is a composite of these calls:

1. ``GET /repos/{owner}/{repo}/actions/runs?per_page=100[&created=>=SINCE]``, then each ``Link``
   ``rel="next"`` URL as given (GitHub points it at ``/repositories/{id}/...``)
2. per run, ``GET /repos/{owner}/{repo}/actions/runs/{run_id}/logs``: a 302 to a signed archive URL
3. ``GET`` that URL *without* the token when it is on another host (GitHub hands out blob-storage
   URLs; its own clients, like browsers, drop ``Authorization`` on a cross-origin redirect)

and scans each ``<job>/<n>_<step>.txt`` of the zip with the matcher (a top-level ``<i>_<job>.txt``,
the whole job's log, only when the archive has no step files for that job, so a copy is not
reported twice). Each member is read up to ``MAX_LOG_BYTES``.

Credentials and endpoint follow GitHub's conventions: ``GITHUB_TOKEN`` (needs Actions read: a
fine-grained token's "Actions: read", or a classic token's ``repo`` scope for private
repositories) and ``GITHUB_API_URL`` (default https://api.github.com; ``https://HOST/api/v3`` on
GitHub Enterprise Server). Retries (429 ``Retry-After``, 5xx, timeouts) are ``cauterize.http.send``'s;
GitHub's 403 rate limits are handled here: a primary limit (``x-ratelimit-remaining: 0``) sleeps
until ``x-ratelimit-reset``, a secondary one for ``retry-after``, once per call and only when the
wait is at most ``max_wait``; otherwise ``RateLimited``. Logs that expired (404) or were deleted
(410), archives that cannot be downloaded and truncated members go to ``errors``: not fatal.
A repository that cannot be listed (bad token, no access, no such repository) raises ``CILogError``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cauterize.errors import CauterizeError, InputError, ProviderUnavailable, RateLimited
from cauterize.http import new_client, send
from cauterize.locate.findings import Finding, parse_time
from cauterize.locate.matcher import Matcher
from cauterize.secret import Secret

log = logging.getLogger(__name__)

GITHUB_API = "https://api.github.com"
API_VERSION = "2022-11-28"
#: Longest sleep for a GitHub 403 rate limit before giving up with ``RateLimited``.
MAX_RATE_WAIT = 120.0
#: Most bytes read from one log file of an archive (guards against decompression bombs).
MAX_LOG_BYTES = 64 << 20
_REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")
_JOB_FILE = re.compile(r"^\d+_(?P<job>.+)\.txt$")
_TOKEN_HINT = (
    "Set GITHUB_TOKEN to a token with Actions read access to the repository (fine-grained: 'Actions: read'; "
    "classic: 'repo' scope for private repositories), and GITHUB_API_URL for GitHub Enterprise Server."
)


_API_HINT = "Check GITHUB_API_URL: it must point at GitHub's REST API (https://HOST/api/v3 on Enterprise Server)."


class CILogError(CauterizeError):
    """GitHub refused to list the repository's workflow runs or their logs."""

    exit_code = 3  # the operation could not complete: incomplete, not an internal error
    remediation = _TOKEN_HINT


def scan_github_actions(
    repo: str,
    secret: Secret,
    *,
    client: httpx.Client | None = None,
    since: datetime | None = None,
    errors: list[str] | None = None,
    token: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = MAX_RATE_WAIT,
) -> list[Finding]:
    """Every copy of ``secret`` in the step logs of ``repo``'s workflow runs created at or after ``since``.

    One finding per (step log, encoding): ``location`` ``github-actions org/app run 123 job build
    step '1_Run tests'``, ``path`` the member name, ``first_seen`` the run's ``created_at``,
    ``reachable`` True (the log is still downloadable). ``errors`` receives what could not be
    scanned (logged as warnings when no list is given). ``token`` defaults to ``GITHUB_TOKEN``;
    an injected ``client`` supplies transport, base URL (else ``GITHUB_API_URL``) and timeouts, and
    must carry no ``Authorization`` header: the token is added per request, to the API's origin only.
    """
    if not _REPO.match(repo):
        raise InputError(f"GitHub repository {repo!r}: expected OWNER/NAME")
    token = token or os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise InputError("GITHUB_TOKEN is not set: GitHub serves Actions logs to authenticated callers only")
    if client is not None and "authorization" in client.headers:
        raise InputError("the injected GitHub client carries an Authorization header; pass the token alone")
    api = str(client.base_url).rstrip("/") if client is not None and str(client.base_url) else ""
    api = api or os.environ.get("GITHUB_API_URL", "").rstrip("/") or GITHUB_API
    owned = client is None
    github = _GitHub(client or new_client(api, timeout=30.0), api, token, sleep, max_wait)
    scan = _Scan(repo, Matcher(secret))
    try:
        for run in github.runs(repo, since):
            archive = github.archive(repo, run, scan)
            if archive is not None:
                scan.archive(run, archive)
    finally:
        if owned:
            github.client.close()
    for line in scan.summary():
        if errors is not None:
            errors.append(line)
        else:
            log.warning("%s", line)
    return scan.findings


@dataclass
class _GitHub:
    """The three calls, with the token sent to the API's origin only and 403 rate limits waited out."""

    client: httpx.Client
    api: str
    token: str
    sleep: Callable[[float], None]
    max_wait: float

    def runs(self, repo: str, since: datetime | None) -> Iterator[dict[str, Any]]:
        since = since if since is None or since.tzinfo else since.replace(tzinfo=UTC)
        first = {"per_page": "100"}
        if since is not None:
            first["created"] = ">=" + since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params: dict[str, str] | None = first
        url: str | None = f"{self.api}/repos/{repo}/actions/runs"
        while url:
            response = self.get(url, f"github-actions {repo}: list workflow runs", params=params)
            if response.status_code != 200:
                raise _refused(response, f"github-actions {repo}: listing workflow runs")
            try:
                page = response.json()["workflow_runs"]
            except (ValueError, KeyError, TypeError):
                raise CILogError(
                    f"github-actions {repo}: the runs list is not GitHub's JSON", remediation=_API_HINT
                ) from None
            for run in page:
                if since is None or parse_time(run["created_at"]) >= since:
                    yield run
            url, params = response.links.get("next", {}).get("url"), None  # the next URL carries its query

    def archive(self, repo: str, run: dict[str, Any], scan: _Scan) -> bytes | None:
        """The run's log archive, or None (and the reason noted in ``scan``) when it cannot be had."""
        what = f"github-actions {repo} run {run['id']}: logs"
        try:
            response = self.get(f"{self.api}/repos/{repo}/actions/runs/{run['id']}/logs", what)
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                target = str(response.request.url.join(response.headers["location"]))
                response = self.get(target, f"{what} download")
        except ProviderUnavailable as exc:
            scan.unreadable.append(exc.message)
            return None
        if response.status_code == 200:
            return response.content
        if response.status_code in (404, 410):
            gone = scan.deleted if response.status_code == 410 else scan.expired
            gone.append(run["id"] if run.get("status") in (None, "completed") else f"{run['id']} ({run['status']})")
            return None
        if response.status_code in (401, 403) and _origin(str(response.request.url)) == _origin(self.api):
            raise _refused(response, what)
        scan.unreadable.append(f"{what}: answered {response.status_code}")
        return None

    def get(self, url: str, what: str, params: dict[str, str] | None = None) -> httpx.Response:
        """GET with ``send``'s retries; a 403/429 rate limit is slept out once, if ``max_wait`` allows."""
        headers = {}
        if _origin(url) == _origin(self.api):
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json"}
            headers["X-GitHub-Api-Version"] = API_VERSION
        for attempt in (1, 2):
            response = send(self.client, "GET", url, what=what, params=params, headers=headers, sleep=self.sleep)
            wait = _rate_limit_wait(response)
            if wait is None:
                return response
            if attempt == 2 or wait > self.max_wait:
                hint = "GitHub is rate limiting this token; rerun after the reset (the record keeps what is done)."
                raise RateLimited(f"{what}: GitHub rate limit, {wait:.0f} s until it resets", remediation=hint)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class _Scan:
    """Findings of one repository's logs, and what could not be scanned."""

    repo: str
    matcher: Matcher
    findings: list[Finding] = field(default_factory=list)
    expired: list[Any] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def archive(self, run: dict[str, Any], data: bytes) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = [info for info in archive.infolist() if not info.is_dir()]
        except zipfile.BadZipFile:
            self.unreadable.append(f"github-actions {self.repo} run {run['id']}: the log archive is not a zip")
            return
        with archive:
            stepped = {info.filename.split("/", 1)[0] for info in members if "/" in info.filename}
            for info in members:
                where = self._where(run["id"], info.filename, stepped)
                if where is None:
                    continue  # a whole job's log repeats its step files
                with archive.open(info) as member:
                    text = member.read(MAX_LOG_BYTES)
                self._scan(run, where, info.filename, text, info.file_size)

    def _where(self, run_id: int, name: str, stepped: set[str]) -> str | None:
        """The location of an archive member, or None for a whole-job log whose step files are there too."""
        job, _, step = name.partition("/")
        head = f"github-actions {self.repo} run {run_id} job"
        if step:
            return self.matcher.redact(f"{head} {job} step '{step.removesuffix('.txt')}'")
        whole = _JOB_FILE.match(name)
        if whole and whole["job"] in stepped:
            return None
        return self.matcher.redact(f"{head} {whole['job'] if whole else name}")

    def _scan(self, run: dict[str, Any], where: str, name: str, text: bytes, size: int) -> None:
        if size > MAX_LOG_BYTES:
            self.unreadable.append(f"{where}: {size} bytes, only the first {MAX_LOG_BYTES} scanned (MAX_LOG_BYTES)")
        first_seen = parse_time(run["created_at"]).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for encoding in sorted({match.encoding for match in self.matcher.scan(text)}):
            self.findings.append(
                Finding(
                    source="ci-log",
                    location=where,
                    repo=self.repo,
                    path=self.matcher.redact(name),
                    reachable=True,
                    encoding=encoding,
                    first_seen=first_seen,
                    kind="file",
                )
            )

    def summary(self) -> list[str]:
        lines = []
        for runs, why in ((self.expired, "expired (404)"), (self.deleted, "were deleted (410)")):
            if runs:
                shown = ", ".join(str(run) for run in runs[:10]) + (", …" if len(runs) > 10 else "")
                lines.append(f"github-actions {self.repo}: logs of {len(runs)} run(s) {why}, not scanned: runs {shown}")
        return lines + self.unreadable


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds to wait for a GitHub 403/429 rate limit, or None if ``response`` is not one."""
    if response.status_code not in (403, 429):
        return None
    retry_after = response.headers.get("retry-after")
    if retry_after and retry_after.isdigit():
        return float(retry_after)
    reset = response.headers.get("x-ratelimit-reset", "")
    if response.headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(0.0, int(reset) - time.time()) + 1.0  # one second of slack for clock skew
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _refused(response: httpx.Response, what: str) -> CILogError:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = str(body.get("message", ""))[:200] if isinstance(body, dict) else ""
    hint = None if response.status_code in (401, 403) else f"Check the repository name. {_TOKEN_HINT}"
    return CILogError(f"{what}: GitHub answered {response.status_code} ({message or 'no message'})", remediation=hint)


__all__ = ["API_VERSION", "MAX_LOG_BYTES", "MAX_RATE_WAIT", "CILogError", "scan_github_actions"]
