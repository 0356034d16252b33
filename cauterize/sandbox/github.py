"""A faithful local emulator of GitHub's Actions secrets REST API (repository and environment secrets).

    GET    {scope}/secrets                 list (names and dates only)
    GET    {scope}/secrets/public-key      {key_id, key}
    GET    {scope}/secrets/{name}          {name, created_at, updated_at}
    PUT    {scope}/secrets/{name}          {encrypted_value, key_id}: 201 created / 204 updated

where ``{scope}`` is ``/repos/{owner}/{repo}/actions`` or ``/repos/{owner}/{repo}/environments/{environment}``.

Each repository and each environment holds a Curve25519 key pair; the public half is what GitHub
hands out, the private half stays here. A PUT is decrypted with a libsodium sealed box, as GitHub
does, and the plaintext is kept for assertions (``secret_value``): the API itself never returns a
value. A PUT whose ``key_id`` is not the current one, or whose ciphertext does not open, is 422.

Auth is ``Authorization: Bearer|token <token>``: none gives 401 ``Requires authentication``, an
unknown token 401 ``Bad credentials``; a token limited to other repositories sees 404 (GitHub hides
what a token cannot see); a read-only token gets 403 on writes. Errors carry GitHub's
``{message, documentation_url, status}`` body. Names are case-insensitive (stored upper-case).

    emulator = GitHubEmulator()
    token = emulator.add_token()
    emulator.add_repo("org/app", environments=["production"])
    client = httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://api.github.com")

``serve(emulator)`` puts the same handler on a real socket. Requests are recorded in
``emulator.requests``; ``fail_next`` injects errors: 403/429 with ``retry_after`` answer as a
secondary rate limit (``retry-after`` header), 403/429 with ``retry_after=None`` as the primary
limit (``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``), others with GitHub's body.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from cauterize.sandbox.openai import RecordedRequest

DOCS = "https://docs.github.com/rest/actions/secrets"
_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
API_VERSIONS = ("2022-11-28",)
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BAD_NAME = (
    "Invalid request.\n\nSecret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) "
    "or underscores (_), must not start with a number and must not start with GITHUB_."
)
_SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)


@dataclass
class _Secret:
    value: str = field(repr=False)
    created_at: datetime
    updated_at: datetime


@dataclass
class _Scope:
    """A repository or one of its environments: a key pair and the secrets sealed to it."""

    key_id: str
    private_key: PrivateKey = field(repr=False)
    secrets: dict[str, _Secret] = field(default_factory=dict)

    @classmethod
    def new(cls) -> _Scope:
        return cls(str(secrets.randbelow(9 * 10**17) + 10**17), PrivateKey.generate())


@dataclass
class Repo:
    full_name: str
    actions: _Scope = field(default_factory=_Scope.new)
    environments: dict[str, _Scope] = field(default_factory=dict)


@dataclass
class Token:
    value: str = field(repr=False)
    repos: frozenset[str] | None  # lower-case full names this token can see; None = all
    permission: str  # "read" | "write"


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class GitHubError(Exception):
    def __init__(self, status: int, message: str, doc: str = "", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.doc, self.headers = status, message, doc, headers or {}

    def response(self) -> httpx.Response:
        body = {"message": self.message, "documentation_url": self.doc or "https://docs.github.com/rest"}
        return _answer(self.status, {**body, "status": str(self.status)}, self.headers)


_SCOPES = ("/repos/{owner}/{repo}/actions", "/repos/{owner}/{repo}/environments/{environment}")
# method, path under a scope, handler, permission, documentation anchor (repository, environment)
_ROUTES = [
    ("GET", "/secrets", "_list", "read", ("list-repository-secrets", "list-environment-secrets")),
    ("GET", "/secrets/public-key", "_public_key", "read", ("get-a-repository-public-key", "get-an-environment-public-key")),
    ("GET", "/secrets/{name}", "_get", "read", ("get-a-repository-secret", "get-an-environment-secret")),
    ("PUT", "/secrets/{name}", "_put", "write", ("create-or-update-a-repository-secret", "create-or-update-an-environment-secret")),
]  # fmt: skip
_TABLE = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", scope + path) + "$"), handler, permission, doc[i])
    for i, scope in enumerate(_SCOPES)
    for method, path, handler, permission, doc in _ROUTES
]


class GitHubEmulator:
    """In-memory repositories and their Actions secrets behind an ``httpx`` handler."""

    def __init__(self, *, now: Callable[[], datetime] | None = None):
        self._clock = now or (lambda: datetime.now(UTC))
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # ---- seeding and assertions ----------------------------------------------------------------

    def add_token(self, *, repos: Iterable[str] | None = None, permission: str = "write") -> str:
        """A token (``ghp_...``) with Secrets ``permission`` on ``repos`` (all repositories if None)."""
        value = "ghp_" + secrets.token_hex(18)
        scope = None if repos is None else frozenset(r.lower() for r in repos)
        self.tokens[value] = Token(value, scope, permission)
        return value

    def add_repo(self, full_name: str, *, environments: Iterable[str] = ()) -> Repo:
        repo = Repo(full_name)
        self.repos[full_name.lower()] = repo
        for environment in environments:
            self.add_environment(full_name, environment)
        return repo

    def add_environment(self, full_name: str, environment: str) -> None:
        self.repos[full_name.lower()].environments.setdefault(environment, _Scope.new())

    def rotate_public_key(self, full_name: str, environment: str | None = None) -> str:
        """Replace the key pair (GitHub may rotate it); secrets stay. Returns the new key id."""
        scope, fresh = self._scope(full_name, environment), _Scope.new()
        scope.key_id, scope.private_key = fresh.key_id, fresh.private_key
        return scope.key_id

    def secret_value(self, full_name: str, name: str, environment: str | None = None) -> str:
        """The decrypted value of a secret: for test assertions only, GitHub's API never returns it."""
        return self._scope(full_name, environment).secrets[name.upper()].value

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (or ``*``) and the path glob with ``status``."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message))

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
            recorded = RecordedRequest(
                request.method,
                request.url.path,
                request.url.query.decode(),
                {k.lower(): v for k, v in request.headers.items()},
                request.read(),
            )
            self.requests.append(recorded)
            try:
                return self._dispatch(recorded)
            except GitHubError as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        if (version := request.headers.get("x-github-api-version", API_VERSIONS[0])) not in API_VERSIONS:
            raise GitHubError(400, f"The version '{version}' is not supported. Supported versions: 2022-11-28.")
        token = self._authenticate(request)
        self._inject_fault(request)
        for method, pattern, handler, permission, anchor in _TABLE:
            match = pattern.match(request.path)  # httpx's path is already percent-decoded
            if match and method == request.method:
                params = match.groupdict()
                doc = f"{DOCS}#{anchor}"
                repo = self._visible_repo(token, params["owner"], params["repo"], doc)
                if permission == "write" and token.permission != "write":
                    raise GitHubError(403, "Resource not accessible by personal access token", doc)
                environment = params.get("environment")
                if environment is not None and environment not in repo.environments:
                    raise GitHubError(404, "Not Found", doc)
                scope = repo.environments[environment] if environment is not None else repo.actions
                return getattr(self, handler)(scope, params, request, doc)
        raise GitHubError(404, "Not Found")

    def _authenticate(self, request: RecordedRequest) -> Token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if not scheme:
            raise GitHubError(401, "Requires authentication")
        token = self.tokens.get(value.strip()) if scheme.lower() in ("bearer", "token") else None
        if token is None:
            raise GitHubError(401, "Bad credentials")
        return token

    def _visible_repo(self, token: Token, owner: str, name: str, doc: str) -> Repo:
        full = f"{owner}/{name}".lower()
        repo = self.repos.get(full)
        if repo is None or (token.repos is not None and full not in token.repos):
            raise GitHubError(404, "Not Found", doc)
        return repo

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining <= 0 or not matches:
                continue
            fault.remaining -= 1
            if fault.status in (403, 429) and fault.retry_after is not None:
                message = fault.message or _SECONDARY.format(request_id=_request_id())
                headers = {"retry-after": str(fault.retry_after)}
                raise GitHubError(fault.status, message, f"{_RATE_DOCS}#about-secondary-rate-limits", headers)
            if fault.status in (403, 429):
                reset = str(int(self._clock().timestamp()) + 60)
                headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
                message = fault.message or "API rate limit exceeded for user ID 1."
                raise GitHubError(fault.status, message, f"{_RATE_DOCS}#about-primary-rate-limits", headers)
            default = "Bad credentials" if fault.status == 401 else "Server Error" if fault.status >= 500 else "Error"
            raise GitHubError(fault.status, fault.message or default)

    def _scope(self, full_name: str, environment: str | None) -> _Scope:
        repo = self.repos[full_name.lower()]
        return repo.actions if environment is None else repo.environments[environment]

    # ---- routes ---------------------------------------------------------------------------------

    def _list(self, scope: _Scope, params: dict, request: RecordedRequest, doc: str) -> httpx.Response:
        listed = [_metadata(name, secret) for name, secret in sorted(scope.secrets.items())]
        return _answer(200, {"total_count": len(listed), "secrets": listed})

    def _public_key(self, scope: _Scope, params: dict, request: RecordedRequest, doc: str) -> httpx.Response:
        key = base64.b64encode(bytes(scope.private_key.public_key)).decode()
        return _answer(200, {"key_id": scope.key_id, "key": key})

    def _get(self, scope: _Scope, params: dict, request: RecordedRequest, doc: str) -> httpx.Response:
        name = params["name"].upper()
        if name not in scope.secrets:
            raise GitHubError(404, "Not Found", doc)
        return _answer(200, _metadata(name, scope.secrets[name]))

    def _put(self, scope: _Scope, params: dict, request: RecordedRequest, doc: str) -> httpx.Response:
        name = params["name"].upper()
        if not _NAME.match(name) or name.startswith("GITHUB_"):
            raise GitHubError(422, _BAD_NAME, doc)
        body = _json_object(request, doc)
        for required in ("encrypted_value", "key_id"):
            if not isinstance(body.get(required), str):
                raise GitHubError(422, f'Invalid request.\n\n"{required}" wasn\'t supplied.', doc)
        if not _BASE64.match(body["encrypted_value"]):
            raise GitHubError(422, f"Invalid request.\n\nencrypted_value does not match {_BASE64.pattern}.", doc)
        value = self._open(scope, body["key_id"], body["encrypted_value"], doc)
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        existing = scope.secrets.get(name)
        if existing is not None:
            existing.value, existing.updated_at = value, now
            return _answer(204, None)
        scope.secrets[name] = _Secret(value, now, now)
        return _answer(201, {})

    def _open(self, scope: _Scope, key_id: str, encrypted_value: str, doc: str) -> str:
        """Decrypt as GitHub does: the sealed box must open with the private key of ``key_id``."""
        improper = GitHubError(422, "Bad request - validation failed due to an improperly encrypted secret", doc)
        if key_id != scope.key_id:
            raise improper
        try:
            return SealedBox(scope.private_key).decrypt(base64.b64decode(encrypted_value)).decode("utf-8")
        except (CryptoError, binascii.Error, UnicodeDecodeError):
            raise improper from None


def _metadata(name: str, secret: _Secret) -> dict[str, str]:
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {"name": name, "created_at": secret.created_at.strftime(iso), "updated_at": secret.updated_at.strftime(iso)}


def _json_object(request: RecordedRequest, doc: str) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GitHubError(400, "Problems parsing JSON", doc)
    return body


def _request_id() -> str:
    return ":".join(secrets.token_hex(2).upper() for _ in range(5))


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    base = {
        "x-github-api-version-selected": API_VERSIONS[0],
        "x-github-request-id": _request_id(),
        "x-ratelimit-limit": "5000",
        "x-ratelimit-resource": "core",
    }
    headers = {**base, **(headers or {})}
    return (
        httpx.Response(status, headers=headers) if body is None else httpx.Response(status, json=body, headers=headers)
    )


__all__ = ["GitHubEmulator", "GitHubError", "Repo", "Token"]
