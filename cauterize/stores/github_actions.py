"""GitHub Actions secrets (repository or environment): sealed to the repository's public key, then PUT.

    GET  {scope}/secrets/public-key    get_public_key()   {key_id, key}: a base64 Curve25519 public key
    GET  {scope}/secrets/{name}        get_metadata()     {name, created_at, updated_at}, None on 404
    PUT  {scope}/secrets/{name}        put_encrypted()    {encrypted_value, key_id}: 201 created, 204 updated

``{scope}`` is ``/repos/{owner}/{repo}/actions`` or, for an environment secret,
``/repos/{owner}/{repo}/environments/{environment}``. ``write`` is the composite: get_public_key,
get_metadata, seal with a libsodium sealed box (PyNaCl), put_encrypted (once more with a fresh
public key when GitHub answers 422 because the key was rotated in between), get_metadata.

A write-only store: GitHub never returns a secret's value, so ``read`` returns None and the write
is verified by the 201/204 answer and by the secret's ``updated_at`` (which must exist and must
not go backwards; GitHub stamps whole seconds, so two writes in one second look alike). ``undo`` is
None: the previous value cannot be read back to restore it, and it is the leaked key anyway.

Credentials and endpoint follow GitHub's conventions: ``GITHUB_TOKEN`` (a fine-grained token with
"Secrets: read and write" on the repository, or a classic token with the ``repo`` scope) and
``GITHUB_API_URL`` (default https://api.github.com; GitHub Enterprise Server: https://HOST/api/v3).
429 and 5xx are retried by ``cauterize.http.send``; a 403 secondary or primary rate limit waits
for ``retry-after`` / ``x-ratelimit-reset``. Every failure becomes a ``StoreError`` in ``_error``.
``missing()`` says when no token is given or in ``GITHUB_TOKEN`` (no call made).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

import httpx
from nacl.public import PublicKey, SealedBox

from cauterize.errors import InputError, ProviderError, StoreError
from cauterize.http import DEFAULT_POLICY, RetryPolicy, new_client, send
from cauterize.secret import Secret
from cauterize.stores.base import StoreWrite, register

_UNAVAILABLE = "GitHub's API is throttling or unavailable: rerun in a minute (githubstatus.com says which)."

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class RepoPublicKey:
    key_id: str
    key: str  # base64 of the 32-byte Curve25519 public key


def seal(public_key: str, value: str) -> str:
    """``value`` encrypted to ``public_key`` with a libsodium sealed box, base64-encoded, as GitHub expects."""
    box = SealedBox(PublicKey(base64.b64decode(public_key, validate=True)))
    return base64.b64encode(box.encrypt(value.encode("utf-8"))).decode("ascii")


class GithubActionsStore:
    kind = "github-actions"
    write_only: ClassVar[bool] = True  # read() cannot see values: verification is the write's answer

    def __init__(
        self,
        repo: str,
        name: str,
        environment: str | None = None,
        *,
        api_url: str | None = None,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not _REPO.match(repo):
            raise InputError(f"github-actions repo {repo!r} must be OWNER/NAME")
        self.repo, self.name, self.environment = repo, name.upper(), environment
        self.api_url = api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
        self._token = token
        self._transport, self.policy, self.sleep = transport, policy, sleep
        self._client: httpx.Client | None = None
        self._scope_seen = False  # the repository (or environment) answered once: a 404 is the secret's
        where = f"environments/{quote(environment, safe='')}" if environment else "actions"
        self._scope = f"repos/{repo}/{where}/secrets"

    def describe(self) -> str:
        where = f" environment {self.environment}" if self.environment else ""
        return f"github-actions {self.repo}{where} {self.name}"

    def missing(self) -> list[str]:
        """No token where ``client`` takes it from (the one given, else ``GITHUB_TOKEN``); no call made."""
        if self._token or os.environ.get("GITHUB_TOKEN"):
            return []
        return [(f"{self.describe()}: GITHUB_TOKEN is not set: set it to a token with "
                f"'Secrets: read and write' on {self.repo} (classic tokens: the repo scope)")]

    def read(self) -> Secret | None:
        """Always None: GitHub's API never returns a secret's value (see ``get_metadata``)."""
        return None

    def write(self, value: Secret) -> StoreWrite:
        key = self.get_public_key()
        before = self.get_metadata()
        response = self.put_encrypted(seal(key.key, value.reveal()), key.key_id)
        if response.status_code == 422:  # the public key was rotated since we read it: once more
            key = self.get_public_key()
            response = self.put_encrypted(seal(key.key, value.reveal()), key.key_id)
        if response.status_code not in (201, 204):
            raise self._error(response, "create or update the secret")
        after = self.get_metadata()
        if after is None:
            raise StoreError(f"{self.describe()}: GitHub answered {response.status_code} but does not list the secret")
        if before is not None and after["updated_at"] < before["updated_at"]:
            raise StoreError(f"{self.describe()}: updated_at went backwards after the write; it did not take")
        return StoreWrite(
            store=self.describe(),
            version=after["updated_at"],
            details={
                "repo": self.repo,
                "environment": self.environment,
                "name": self.name,
                "status": "created" if response.status_code == 201 else "updated",
                "updated_at": after["updated_at"],
                "previous_updated_at": before["updated_at"] if before else None,
                "key_id": key.key_id,
            },
        )

    # ---- one method per endpoint ---------------------------------------------------------------

    def get_public_key(self) -> RepoPublicKey:
        """``GET {scope}/secrets/public-key``: 200 ``{key_id, key}``."""
        response = self._request("GET", f"{self._scope}/public-key", "read the public key")
        if response.status_code != 200:
            raise self._error(response, "read the public key")
        body = _json(response)
        try:
            public = RepoPublicKey(str(body["key_id"]), str(body["key"]))
            if len(base64.b64decode(public.key, validate=True)) != 32:
                raise ValueError
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise StoreError(f"{self.describe()}: GitHub's public key answer is not a Curve25519 key") from None
        self._scope_seen = True
        return public

    def get_metadata(self) -> dict[str, str] | None:
        """``GET {scope}/secrets/{name}``: 200 ``{name, created_at, updated_at}``; None on 404."""
        response = self._request("GET", f"{self._scope}/{self.name}", "read the secret's metadata")
        if response.status_code == 404 and self._scope_exists():
            return None
        if response.status_code != 200:
            raise self._error(response, "read the secret's metadata")
        body = _json(response)
        return {
            "name": str(body.get("name")),
            "created_at": str(body.get("created_at")),
            "updated_at": str(body.get("updated_at")),
        }

    def put_encrypted(self, encrypted_value: str, key_id: str) -> httpx.Response:
        """``PUT {scope}/secrets/{name}`` with ``{encrypted_value, key_id}``: 201 created, 204 updated."""
        body = {"encrypted_value": encrypted_value, "key_id": key_id}
        return self._request("PUT", f"{self._scope}/{self.name}", "create or update the secret", json=body)

    # ---- plumbing --------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            token = self._token or os.environ.get("GITHUB_TOKEN")
            if not token:
                raise StoreError(
                    f"{self.describe()}: GITHUB_TOKEN is not set",
                    remediation=f"Set GITHUB_TOKEN to a token with 'Secrets: read and write' on {self.repo}.",
                )
            headers = {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {token}",
            }
            self._client = new_client(self.api_url, headers=headers, transport=self._transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _scope_exists(self) -> bool:
        """A 404 on a secret means "no such secret" only if its repository (or environment) is visible."""
        if not self._scope_seen:
            self._scope_seen = (
                self._request("GET", f"{self._scope}/public-key", "read the public key").status_code == 200
            )
        return self._scope_seen

    def _request(self, method: str, path: str, what: str, **kwargs) -> httpx.Response:
        """``send`` retries 429 and 5xx; a 403 rate limit (primary or secondary) waits here."""
        for attempt in range(1, self.policy.attempts + 1):
            try:
                response = send(
                    self.client,
                    method,
                    path,
                    what=f"{self.describe()}: {what}",
                    policy=self.policy,
                    sleep=self.sleep,
                    **kwargs,
                )
            except ProviderError as exc:
                raise StoreError(exc.message, remediation=_UNAVAILABLE, retryable=exc.retryable) from exc
            wait = _rate_limit_wait(response)
            if wait is None:
                return response
            if attempt == self.policy.attempts or wait > self.policy.max_wait:
                raise self._error(response, what)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: httpx.Response, what: str) -> StoreError:
        """The one translation of GitHub's error answers into ``StoreError``."""
        message = " ".join(str(_json(response).get("message") or response.reason_phrase).split())[:300]
        status, head = response.status_code, f"{self.describe()}: cannot {what}"
        token_hint = f"Give GITHUB_TOKEN 'Secrets: read and write' on {self.repo} (classic tokens: the repo scope)."
        if status == 401:
            return StoreError(f"{head}: GitHub rejected GITHUB_TOKEN (401 {message})", remediation=token_hint)
        if _rate_limit_wait(response) is not None:
            return StoreError(f"{head}: still rate limited ({status})", retryable=True)
        if status == 403:
            return StoreError(f"{head}: forbidden (403 {message})", remediation=token_hint)
        if status == 404:
            thing = (
                f"the repository {self.repo} or its environment {self.environment}"
                if self.environment
                else f"the repository {self.repo}"
            )
            return StoreError(
                f"{head}: {thing} does not exist or the token cannot see it (404)", remediation=token_hint
            )
        return StoreError(f"{head}: GitHub answered {status} ({message})")


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds to wait when a 403/429 is a rate limit (``retry-after`` or ``x-ratelimit-remaining: 0``)."""
    if response.status_code not in (403, 429):
        return None
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if response.headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(response.headers.get("x-ratelimit-reset", "")) - time.time())
        except ValueError:
            return 60.0
    return None


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@register("github-actions")
def _from_runbook(config, loaded) -> GithubActionsStore:
    return GithubActionsStore(config.repo, config.name, config.environment)


__all__ = ["GithubActionsStore", "RepoPublicKey", "seal"]
