"""A faithful local emulator of GitHub's Actions workflow-run log REST API (secrets: ``github.py``).

    GET    /repos/{owner}/{repo}/actions/runs              ?per_page (<=100, default 30) &page &created
    GET    /repositories/{repo_id}/actions/runs            where the ``Link`` header points, as on GitHub
    GET    /repos/{owner}/{repo}/actions/runs/{run_id}/logs    302 ``Location``: a signed download URL
    DELETE /repos/{owner}/{repo}/actions/runs/{run_id}/logs    204; the logs then answer 410 Gone
    GET    /actions-results/{blob}/logs.zip?se=...&sig=...     the archive (no GitHub auth: the URL is signed)

Runs are listed newest first with ``Link: <...>; rel="next"`` (and ``last``, ``prev``, ``first``)
built from the request's own origin, and the body ``{total_count, workflow_runs}``. ``created``
takes GitHub's date qualifiers (``>=2024-05-01``, ``<DATE``, ``A..B``, an exact day). The log
archive holds ``<job>/<n>_<step>.txt`` per step and ``<i>_<job>.txt`` per job (the whole job log),
each line stamped with a time, as GitHub's archives do. The download URL expires after one minute
and is served on ``download_base`` (default: the request's origin), so a test can give it another
host (``https://productionresultssa0.blob.core.windows.net`` under ``MockTransport``, or
``http://localhost:PORT`` against ``serve()`` on 127.0.0.1) and check that no token follows it.

Auth is ``Authorization: Bearer|token``: none answers 401 ``Requires authentication``, an unknown
token 401 ``Bad credentials``; a token limited to other repositories sees 404. Expired logs
(``expire_logs``) answer 404 ``Not Found``, deleted ones 410 ``Gone``, with GitHub's
``{message, documentation_url, status}`` body. Each token has a primary budget (``x-ratelimit-*``
headers on every answer; 403 with ``x-ratelimit-remaining: 0`` once spent). ``fail_next`` injects
403/429 with ``retry_after`` as a secondary limit (``retry-after``), with ``retry_after=None`` as a
primary one (``x-ratelimit-remaining: 0``, ``x-ratelimit-reset``), other statuses with GitHub's body.
Every request, downloads included, is recorded in ``requests`` with its headers (``host`` included).
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import json
import re
import secrets
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from cauterize.sandbox.openai import RecordedRequest

DOCS = "https://docs.github.com/rest/actions/workflow-runs"
_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
API_VERSIONS = ("2022-11-28",)
LINK_TTL = timedelta(minutes=1)  # "This link expires after 1 minute."
_SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
_ISO = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Run:
    id: int
    repo: str  # full name as added
    name: str
    created_at: datetime
    logs: dict[str, bytes] = field(repr=False)
    head_branch: str = "main"
    head_sha: str = field(default_factory=lambda: secrets.token_hex(20))
    status: str = "completed"
    conclusion: str | None = "success"
    logs_state: str = "present"  # "present" | "expired" (404) | "deleted" (410)
    run_number: int = 1


@dataclass
class Token:
    value: str = field(repr=False)
    repos: frozenset[str] | None  # lower-case full names this token can see; None = all
    limit: int
    used: int = 0
    reset: datetime | None = None


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None
    reset_in: int


class GitHubError(Exception):
    def __init__(self, status: int, message: str, doc: str = DOCS, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.doc, self.headers = status, message, doc, headers or {}

    def response(self) -> httpx.Response:
        body = {"message": self.message, "documentation_url": self.doc, "status": str(self.status)}
        return _answer(self.status, body, self.headers)


_ROUTES = [
    ("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs", "_list_runs"),
    ("GET", r"/repositories/(?P<repo_id>\d+)/actions/runs", "_list_runs"),
    ("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run_id>\d+)/logs", "_logs"),
    ("DELETE", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run_id>\d+)/logs", "_delete_logs"),
]
_TABLE = [(method, re.compile(f"^{path}$"), handler) for method, path, handler in _ROUTES]
_DOWNLOAD = re.compile(r"^/actions-results/(?P<blob>[0-9a-f]+)/logs\.zip$")


class GitHubActionsEmulator:
    """In-memory repositories and workflow runs behind an ``httpx`` handler: ``httpx.MockTransport(emulator)``."""

    def __init__(
        self, *, now: Callable[[], datetime] | None = None, download_base: str | None = None, rate_limit: int = 5000
    ):
        self._clock = now or (lambda: datetime.now(UTC))
        self.download_base = download_base
        self.rate_limit = rate_limit
        self.runs: dict[int, Run] = {}
        self.repo_ids: dict[str, int] = {}  # lower-case full name -> repository id
        self.tokens: dict[str, Token] = {}
        self.requests: list[RecordedRequest] = []
        self._links: dict[str, tuple[int, datetime]] = {}  # signature -> (run id, expiry)
        self._faults: list[_Fault] = []
        self._ids = itertools.count(7_000_000_001)
        self._lock = threading.RLock()

    # ---- seeding and assertions ----------------------------------------------------------------

    def add_token(self, *, repos: Iterable[str] | None = None) -> str:
        """A token (``ghp_...``) with Actions read access to ``repos`` (all repositories if None)."""
        value = "ghp_" + secrets.token_hex(18)
        scope = None if repos is None else frozenset(r.lower() for r in repos)
        self.tokens[value] = Token(value, scope, self.rate_limit)
        return value

    def add_run(
        self,
        repo: str,
        name: str,
        created_at: datetime | str,
        logs: dict[str, str | bytes],
        **fields: Any,
    ) -> int:
        """A workflow run of ``repo`` whose archive holds ``logs`` (``"build/1_Run tests.txt": text``);
        ``fields`` override ``head_branch``, ``head_sha``, ``status``, ``conclusion``. Returns its id."""
        when = datetime.fromisoformat(created_at) if isinstance(created_at, str) else created_at
        when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)
        for path in logs:
            if not re.fullmatch(r"[^/]+/\d+_[^/]+\.txt", path):
                raise ValueError(f"log path {path!r} is not '<job>/<n>_<step>.txt'")
        self.repo_ids.setdefault(repo.lower(), 100_000 + len(self.repo_ids))
        number = 1 + sum(1 for run in self.runs.values() if run.repo.lower() == repo.lower())
        data = {path: text.encode() if isinstance(text, str) else text for path, text in logs.items()}
        run = Run(next(self._ids), repo, name, when, data, run_number=number, **fields)
        self.runs[run.id] = run
        return run.id

    def expire_logs(self, run_id: int) -> None:
        """The retention period passed: the logs answer 404."""
        self.runs[run_id].logs_state = "expired"

    def delete_logs(self, run_id: int) -> None:
        """Someone deleted the logs (as ``DELETE .../logs`` does): they answer 410 Gone."""
        self.runs[run_id].logs_state = "deleted"

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
        reset_in: int = 60,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (or ``*``) and the path glob with ``status``."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message, reset_in))

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path glob."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or fnmatch.fnmatchcase(r.path, path))
        ]

    # ---- the handler ---------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            headers = {k.lower(): v for k, v in request.headers.items()}
            recorded = RecordedRequest(
                request.method, request.url.path, request.url.query.decode(), headers, request.read()
            )
            self.requests.append(recorded)
            origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
            try:
                if request.method == "GET" and (download := _DOWNLOAD.match(recorded.path)):
                    self._inject_fault(recorded)
                    return self._download(download["blob"], recorded)
                return self._dispatch(recorded, origin)
            except GitHubError as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest, origin: str) -> httpx.Response:
        if (version := request.headers.get("x-github-api-version", API_VERSIONS[0])) not in API_VERSIONS:
            raise GitHubError(400, f"The version '{version}' is not supported. Supported versions: 2022-11-28.")
        token = self._authenticate(request)
        self._inject_fault(request)
        rate = self._spend(token)
        try:
            for method, pattern, handler in _TABLE:
                match = pattern.match(request.path)  # httpx's path is already percent-decoded
                if match and method == request.method:
                    params = match.groupdict()
                    response = getattr(self, handler)(self._visible_repo(token, params), params, request, origin)
                    response.headers.update(rate)
                    return response
            raise GitHubError(404, "Not Found", "https://docs.github.com/rest")
        except GitHubError as exc:
            exc.headers = {**rate, **exc.headers}
            raise

    def _authenticate(self, request: RecordedRequest) -> Token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if not scheme:
            raise GitHubError(401, "Requires authentication", "https://docs.github.com/rest")
        token = self.tokens.get(value.strip()) if scheme.lower() in ("bearer", "token") else None
        if token is None:
            raise GitHubError(401, "Bad credentials", "https://docs.github.com/rest")
        return token

    def _spend(self, token: Token) -> dict[str, str]:
        """Count the call against the token's hourly budget; 403 once it is spent, as GitHub does."""
        now = self._clock()
        if token.reset is None or now >= token.reset:
            token.used, token.reset = 0, now.replace(microsecond=0) + timedelta(hours=1)
        headers = {"x-ratelimit-limit": str(token.limit), "x-ratelimit-reset": str(int(token.reset.timestamp()))}
        if token.used >= token.limit:
            headers |= {"x-ratelimit-remaining": "0", "x-ratelimit-used": str(token.used)}
            raise GitHubError(
                403, "API rate limit exceeded for user ID 1.", f"{_RATE_DOCS}#about-primary-rate-limits", headers
            )
        token.used += 1
        return headers | {"x-ratelimit-remaining": str(token.limit - token.used), "x-ratelimit-used": str(token.used)}

    def _visible_repo(self, token: Token, params: dict[str, str]) -> str:
        if "repo_id" in params:
            full = next((name for name, id_ in self.repo_ids.items() if str(id_) == params["repo_id"]), "")
        else:
            full = f"{params['owner']}/{params['repo']}".lower()
        if full not in self.repo_ids or (token.repos is not None and full not in token.repos):
            raise GitHubError(404, "Not Found")
        return full

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining <= 0 or not matches:
                continue
            fault.remaining -= 1
            if fault.status in (403, 429) and fault.retry_after is not None:
                headers = {"retry-after": str(fault.retry_after)}
                doc = f"{_RATE_DOCS}#about-secondary-rate-limits"
                raise GitHubError(fault.status, fault.message or _SECONDARY, doc, headers)
            if fault.status in (403, 429):
                reset = str(int(self._clock().timestamp()) + fault.reset_in)
                headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
                message = fault.message or "API rate limit exceeded for user ID 1."
                raise GitHubError(fault.status, message, f"{_RATE_DOCS}#about-primary-rate-limits", headers)
            default = {401: "Bad credentials", 404: "Not Found", 410: "Gone"}.get(fault.status, "Server Error")
            raise GitHubError(fault.status, fault.message or default)

    # ---- routes ---------------------------------------------------------------------------------

    def _list_runs(self, repo: str, params: dict, request: RecordedRequest, origin: str) -> httpx.Response:
        query = dict(parse_qsl(request.query, keep_blank_values=True))
        per_page = min(max(_int(query.get("per_page"), 30), 1), 100)
        page = max(_int(query.get("page"), 1), 1)
        runs = [run for run in self.runs.values() if run.repo.lower() == repo]
        if query.get("created"):
            runs = [run for run in runs if _created_matches(run.created_at, query["created"])]
        runs.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        shown = runs[(page - 1) * per_page : page * per_page]
        body = {"total_count": len(runs), "workflow_runs": [self._run_body(run, origin) for run in shown]}
        last = max(1, -(-len(runs) // per_page))
        base = f"{origin}/repositories/{self.repo_ids[repo]}/actions/runs"
        rels = {"prev": page - 1, "next": page + 1, "last": last, "first": 1}
        links = [
            f'<{base}?{urlencode({**query, "page": str(n)})}>; rel="{rel}"'
            for rel, n in rels.items()
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last)
        ]
        return _answer(200, body, {"link": ", ".join(links)} if links else None)

    def _logs(self, repo: str, params: dict, request: RecordedRequest, origin: str) -> httpx.Response:
        run = self._run(repo, params)
        doc = "https://docs.github.com/rest/actions/workflow-runs#download-workflow-run-logs"
        if run.logs_state == "expired":
            raise GitHubError(404, "Not Found", doc)
        if run.logs_state == "deleted":
            raise GitHubError(410, "Gone", doc)
        signature, expiry = secrets.token_hex(16), self._clock() + LINK_TTL
        self._links[signature] = (run.id, expiry)
        query = urlencode({"sv": "2021-12-02", "se": expiry.strftime(_ISO), "sp": "r", "sr": "b", "sig": signature})
        location = f"{self.download_base or origin}/actions-results/{secrets.token_hex(16)}/logs.zip?{query}"
        return _answer(302, None, {"location": location})

    def _delete_logs(self, repo: str, params: dict, request: RecordedRequest, origin: str) -> httpx.Response:
        self._run(repo, params).logs_state = "deleted"
        return _answer(204, None)

    def _download(self, blob: str, request: RecordedRequest) -> httpx.Response:
        """Blob storage behind a signed URL: Azure's XML error when the signature is unknown or stale."""
        link = self._links.get(dict(parse_qsl(request.query)).get("sig", ""))
        if link is None or self._clock() > link[1]:
            xml = (
                '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed'
                " to authenticate the request. Make sure the value of Authorization header is formed correctly"
                " including the signature.</Message></Error>"
            )
            return httpx.Response(403, content=xml.encode(), headers={"content-type": "application/xml"})
        archive = _archive(self.runs[link[0]])
        return httpx.Response(200, content=archive, headers={"content-type": "application/zip"})

    def _run(self, repo: str, params: dict) -> Run:
        run = self.runs.get(int(params["run_id"]))
        if run is None or run.repo.lower() != repo:
            raise GitHubError(404, "Not Found")
        return run

    def _run_body(self, run: Run, origin: str) -> dict[str, Any]:
        url = f"{origin}/repos/{run.repo}/actions/runs/{run.id}"
        when = run.created_at.strftime(_ISO)
        return {
            "id": run.id,
            "name": run.name,
            "display_title": run.name,
            "run_number": run.run_number,
            "run_attempt": 1,
            "event": "push",
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "status": run.status,
            "conclusion": run.conclusion,
            "created_at": when,
            "updated_at": when,
            "run_started_at": when,
            "url": url,
            "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}",
            "jobs_url": f"{url}/jobs",
            "logs_url": f"{url}/logs",
            "repository": {"id": self.repo_ids[run.repo.lower()], "full_name": run.repo},
        }


def _archive(run: Run) -> bytes:
    """The run's log archive: ``<job>/<n>_<step>.txt`` per step, ``<i>_<job>.txt`` per job, time-stamped lines."""
    stamp = run.created_at.strftime("%Y-%m-%dT%H:%M:%S.0000000Z ").encode()
    jobs: dict[str, list[bytes]] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in sorted(run.logs.items(), key=lambda item: _step_order(item[0])):
            lines = b"".join(stamp + line for line in text.splitlines(keepends=True))
            archive.writestr(path, lines)
            jobs.setdefault(path.split("/", 1)[0], []).append(lines)
        for index, (job, parts) in enumerate(jobs.items()):
            archive.writestr(f"{index}_{job}.txt", b"".join(parts))
    return buffer.getvalue()


def _step_order(path: str) -> tuple[str, int]:
    job, step = path.split("/", 1)
    return job, int(step.split("_", 1)[0])


def _created_matches(when: datetime, qualifier: str) -> bool:
    """GitHub's date qualifiers: ``>=D``, ``>D``, ``<=D``, ``<D``, ``A..B`` (``*`` open), or a day/time ``D``."""

    def bound(text: str, end: bool = False) -> datetime:
        moment = datetime.fromisoformat(text)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment + timedelta(days=1) - timedelta(seconds=1) if end and len(text) == 10 else moment

    tests: dict[str, Callable[[str], bool]] = {
        ">=": lambda day: when >= bound(day),
        "<=": lambda day: when <= bound(day, True),
        ">": lambda day: when > bound(day, True),
        "<": lambda day: when < bound(day),
    }
    for op, test in tests.items():  # two-character operators first
        if qualifier.startswith(op):
            return test(qualifier[len(op) :])
    if ".." in qualifier:
        low, high = qualifier.split("..", 1)
        return (low == "*" or when >= bound(low)) and (high == "*" or when <= bound(high, True))
    return bound(qualifier) <= when <= bound(qualifier, True)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    base = {"x-github-api-version-selected": API_VERSIONS[0], "x-github-request-id": secrets.token_hex(8).upper()}
    merged = {**base, **(headers or {})}
    if body is None:
        return httpx.Response(status, headers=merged)
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={**merged, "content-type": "application/json"}
    )


__all__ = ["GitHubActionsEmulator", "GitHubError", "Run", "Token"]
