"""OpenAI's organisation admin API: one method per endpoint, and the one place its errors are mapped.

``OpenAIAdmin`` mirrors the endpoints of provider-apis.md 1.1 one for one, the way the official SDK
calls them: bearer admin key, array query parameters in bracket form (``api_key_ids[]=...``), list
pages followed with ``after=<last_id>`` until ``has_more`` is false, usage pages with
``page=<next_page>``. Every answer goes through ``_error_for``, the one place where OpenAI's
status codes become cauterize errors (a restricted admin key's "Missing scopes" refusal is
``MissingPermission``); provider messages are masked before they are quoted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from cauterize.errors import AdminAuthError, KeyNotFound, MissingPermission, ProviderError, ProviderRejected
from cauterize.http import DEFAULT_POLICY, RetryPolicy, json_object, send
from cauterize.secret import scrub

Json = dict[str, Any]
Params = list[tuple[str, str]]

_ADMIN_REMEDIATION = (
    "Set OPENAI_ADMIN_KEY (or the runbook's providers.openai.admin_key) to an admin key of this organisation "
    "(sk-admin-..., from platform.openai.com/settings/organization/admin-keys); project and service-account "
    "keys cannot call the admin API."
)
_KEYLIKE = re.compile(r"\b(?:sk|sess)-[A-Za-z0-9_*\-]{4,}")
_MISSING_SCOPES = re.compile(r"missing scopes?:\s*(.*?)(?:\.\s|\.?$)", re.IGNORECASE | re.DOTALL)
_SCOPE_NAME = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_]+)+")


class SingleKeyDeleteRefused(ProviderRejected):
    """400 to ``DELETE .../api_keys/{id}``: an OpenAI API older than 2026 does not delete a key that a
    service account owns (only the whole service account)."""


class OpenAIAdmin:
    """OpenAI's organisation admin API. ``client`` carries the base URL and the admin bearer.

    ``admin_key_shaped``: the credential looks like an admin key, so a "Missing scopes" refusal means
    a restricted admin key (``MissingPermission``); a project key gets the same refusal, and then the
    fix is an admin key (``AdminAuthError``)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 100,
        admin_key_shaped: bool = True,
    ):
        self._client = client
        self._policy = policy
        self._sleep = sleep
        self.page_size = page_size
        self._admin_key_shaped = admin_key_shaped

    # ---- projects --------------------------------------------------------------------------

    def list_projects(
        self, *, after: str | None = None, limit: int | None = None, include_archived: bool | None = None
    ) -> Json:
        """``GET /organization/projects``: one page of projects."""
        return self._get("organization/projects", _params(after=after, limit=limit, include_archived=include_archived))

    def iter_projects(self, *, include_archived: bool = True) -> Iterator[Json]:
        """Every project, page after page (``list_projects`` with ``after=<last_id>``)."""
        return _pages(
            lambda after: self.list_projects(after=after, limit=self.page_size, include_archived=include_archived)
        )

    # ---- project API keys ------------------------------------------------------------------

    def list_project_api_keys(
        self,
        project_id: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        owner_project_access: str | None = None,
    ) -> Json:
        """``GET /organization/projects/{project_id}/api_keys``: one page of a project's keys."""
        params = _params(after=after, limit=limit, owner_project_access=owner_project_access)
        return self._get(f"organization/projects/{project_id}/api_keys", params, not_found=KeyNotFound)

    def iter_project_api_keys(self, project_id: str, *, owner_project_access: str = "any") -> Iterator[Json]:
        """Every key of a project (``any`` includes keys whose owner lost access to the project)."""
        return _pages(
            lambda after: self.list_project_api_keys(
                project_id, after=after, limit=self.page_size, owner_project_access=owner_project_access
            )
        )

    def retrieve_project_api_key(self, project_id: str, key_id: str) -> Json:
        """``GET /organization/projects/{project_id}/api_keys/{key_id}``."""
        return self._get(f"organization/projects/{project_id}/api_keys/{key_id}", not_found=KeyNotFound)

    def delete_project_api_key(self, project_id: str, key_id: str) -> Json:
        """``DELETE /organization/projects/{project_id}/api_keys/{key_id}``: deletes a user's or a service
        account's key (2026 API; the account keeps its other keys). 404: gone already; 400 from an
        older API for a service-account key: ``SingleKeyDeleteRefused``."""
        return self._call(
            "DELETE", f"organization/projects/{project_id}/api_keys/{key_id}", not_found=KeyNotFound,
            bad_request=SingleKeyDeleteRefused,
        )

    # ---- service accounts ------------------------------------------------------------------

    def list_project_service_accounts(
        self, project_id: str, *, after: str | None = None, limit: int | None = None
    ) -> Json:
        """``GET /organization/projects/{project_id}/service_accounts``: one page."""
        return self._get(f"organization/projects/{project_id}/service_accounts", _params(after=after, limit=limit))

    def iter_project_service_accounts(self, project_id: str) -> Iterator[Json]:
        """Every service account of a project, all pages."""
        yield from _pages(lambda after: self.list_project_service_accounts(project_id, after=after, limit=100))

    def create_project_service_account(
        self, project_id: str, name: str, *, create_service_account_only: bool = False
    ) -> Json:
        """``POST /organization/projects/{project_id}/service_accounts``: the answer holds ``api_key.value``."""
        body: Json = {"name": name}
        if create_service_account_only:
            body["create_service_account_only"] = True
        return self._call("POST", f"organization/projects/{project_id}/service_accounts", json=body)

    def retrieve_project_service_account(self, project_id: str, sa_id: str) -> Json:
        """``GET /organization/projects/{project_id}/service_accounts/{sa_id}``."""
        return self._get(f"organization/projects/{project_id}/service_accounts/{sa_id}", not_found=KeyNotFound)

    def delete_project_service_account(self, project_id: str, sa_id: str) -> Json:
        """``DELETE /organization/projects/{project_id}/service_accounts/{sa_id}``: its keys die with it."""
        return self._call(
            "DELETE", f"organization/projects/{project_id}/service_accounts/{sa_id}", not_found=KeyNotFound
        )

    def update_project_service_account(self, project_id: str, sa_id: str, *, role: str) -> Json:
        """``POST /organization/projects/{project_id}/service_accounts/{sa_id}``: set its role (member | owner)."""
        return self._call(
            "POST", f"organization/projects/{project_id}/service_accounts/{sa_id}", json={"role": role},
            not_found=KeyNotFound,
        )

    def create_service_account_api_key(
        self, project_id: str, sa_id: str, name: str | None = None, *, scopes: list[str] | None = None
    ) -> Json:
        """``POST /organization/projects/{project_id}/service_accounts/{sa_id}/api_keys``: body ``{name, scopes}``."""
        body: Json = {"name": name} if name else {}
        if scopes is not None:
            body["scopes"] = list(scopes)
        return self._call("POST", f"organization/projects/{project_id}/service_accounts/{sa_id}/api_keys", json=body)

    # ---- audit logs ------------------------------------------------------------------------

    def list_audit_logs(
        self,
        *,
        event_types: list[str] | None = None,
        resource_ids: list[str] | None = None,
        project_ids: list[str] | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> Json:
        """``GET /organization/audit_logs``: one page, newest first (audit logging must be on)."""
        params = _params(
            event_types=event_types, resource_ids=resource_ids, project_ids=project_ids, after=after, limit=limit
        )
        return self._get("organization/audit_logs", params)

    def iter_audit_logs(self, **filters: Any) -> Iterator[Json]:
        """Every audit event matching ``filters`` (see ``list_audit_logs``), all pages."""
        return _pages(lambda after: self.list_audit_logs(after=after, limit=self.page_size, **filters))

    # ---- admin API keys --------------------------------------------------------------------

    def list_admin_api_keys(
        self, *, after: str | None = None, limit: int | None = None, order: str | None = None
    ) -> Json:
        """``GET /organization/admin_api_keys``: one page."""
        return self._get("organization/admin_api_keys", _params(after=after, limit=limit, order=order))

    def iter_admin_api_keys(self) -> Iterator[Json]:
        """Every admin key, page after page."""
        return _pages(lambda after: self.list_admin_api_keys(after=after, limit=self.page_size))

    def delete_admin_api_key(self, key_id: str) -> Json:
        """``DELETE /organization/admin_api_keys/{key_id}``."""
        return self._call("DELETE", f"organization/admin_api_keys/{key_id}", not_found=KeyNotFound)

    # ---- usage and costs -------------------------------------------------------------------

    def usage_completions(
        self,
        *,
        start_time: int,
        end_time: int | None = None,
        bucket_width: str | None = None,
        api_key_ids: list[str] | None = None,
        project_ids: list[str] | None = None,
        group_by: list[str] | None = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> Json:
        """``GET /organization/usage/completions``: one page of time buckets."""
        return self._get(
            "organization/usage/completions",
            _params(
                start_time=start_time,
                end_time=end_time,
                bucket_width=bucket_width,
                api_key_ids=api_key_ids,
                project_ids=project_ids,
                group_by=group_by,
                limit=limit,
                page=page,
            ),
        )

    def iter_usage_completions(self, **query: Any) -> Iterator[Json]:
        """Every bucket of ``usage_completions``, following ``page=<next_page>``."""
        return _usage_pages(lambda page: self.usage_completions(**query, page=page))

    def costs(
        self,
        *,
        start_time: int,
        end_time: int | None = None,
        api_key_ids: list[str] | None = None,
        project_ids: list[str] | None = None,
        group_by: list[str] | None = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> Json:
        """``GET /organization/costs``: one page of daily buckets."""
        return self._get(
            "organization/costs",
            _params(
                start_time=start_time,
                end_time=end_time,
                bucket_width="1d",
                api_key_ids=api_key_ids,
                project_ids=project_ids,
                group_by=group_by,
                limit=limit,
                page=page,
            ),
        )

    def iter_costs(self, **query: Any) -> Iterator[Json]:
        """Every bucket of ``costs``, following ``page=<next_page>``."""
        return _usage_pages(lambda page: self.costs(**query, page=page))

    # ---- the one boundary ------------------------------------------------------------------

    def _get(self, path: str, params: Params | None = None, **kwargs: Any) -> Json:
        return self._call("GET", path, params=params, **kwargs)

    def _call(
        self,
        method: str,
        path: str,
        *,
        not_found: type[ProviderError] = ProviderRejected,
        bad_request: type[ProviderRejected] = ProviderRejected,
        **kwargs: Any,
    ) -> Json:
        what = f"OpenAI {method} /{path}"
        response = send(self._client, method, path, what=what, policy=self._policy, sleep=self._sleep, **kwargs)
        if response.status_code >= 400:
            raise _error_for(
                response, what, not_found, bad_request=bad_request, admin_key_shaped=self._admin_key_shaped
            )
        return json_object(response, what)


def _error_for(
    response: httpx.Response,
    what: str,
    not_found: type[ProviderError],
    *,
    bad_request: type[ProviderRejected] = ProviderRejected,
    admin_key_shaped: bool = True,
) -> ProviderError:
    """Map an OpenAI error answer to a cauterize error (quoting OpenAI's message, masked).

    401/403 "insufficient permissions ... Missing scopes: api.usage.read" from an admin key is a
    restricted key (``MissingPermission``, naming the scope); any other 401/403 an ``AdminAuthError``."""
    status, message = response.status_code, provider_message(response)
    if status in (401, 403):
        missing = _missing_scopes(message)
        if missing is not None and admin_key_shaped:
            scope = ", ".join(missing) or None
            needs = f"the scope {scope}" if scope else "a scope it was not given"
            return MissingPermission(
                f"the OpenAI admin key lacks {needs} for {what} ({status}): {message}",
                permission=scope,
                remediation=(
                    f"Give the admin key {needs} (platform.openai.com/settings/organization/admin-keys: edit the "
                    "key, Permissions Restricted or All), or set OPENAI_ADMIN_KEY to an admin key that has it; "
                    "`cauterize permissions` lists the scopes each step needs."
                ),
            )
        return AdminAuthError(
            f"the OpenAI admin key was rejected ({status}): {message}", remediation=_ADMIN_REMEDIATION
        )
    if status == 404:
        return not_found(f"{what}: not found (404): {message}")
    if status == 400:
        return bad_request(f"{what}: OpenAI refused the request (400): {message}")
    return ProviderRejected(f"{what}: OpenAI refused the request ({status}): {message}")


def _missing_scopes(message: str) -> list[str] | None:
    """The scopes a "Missing scopes: a.b.read, c.d.write." refusal names ([] when the text says only
    "insufficient permissions"); None when it is no scope refusal."""
    match = _MISSING_SCOPES.search(message)
    if match:
        return _SCOPE_NAME.findall(match.group(1))
    return [] if "insufficient permissions" in message.lower() else None


def provider_message(response: httpx.Response) -> str:
    """``error.message`` of an OpenAI error body (or the body itself when it is a bare string or not
    JSON at all), with anything key-shaped masked."""
    try:
        body = response.json()
    except ValueError:
        body = _text(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or "")
        else:
            message = str(error or body.get("message") or "")
    else:
        message = "" if body is None else str(body)
    message = scrub(_KEYLIKE.sub("[key redacted]", message or response.reason_phrase or "no message"))
    return " ".join(message.split())[:300]


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except (UnicodeDecodeError, LookupError, httpx.ResponseNotRead):
        return ""


def _params(**values: Any) -> Params:
    """Query parameters as the official SDK sends them: arrays bracketed, booleans lower-case."""
    params: Params = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            params.extend((f"{name}[]", str(item)) for item in value)
        elif isinstance(value, bool):
            params.append((name, "true" if value else "false"))
        else:
            params.append((name, str(value)))
    return params


def _pages(fetch: Callable[[str | None], Json]) -> Iterator[Json]:
    after: str | None = None
    while True:
        page = fetch(after)
        yield from page.get("data") or []
        last = page.get("last_id")
        if not page.get("has_more") or not last or last == after:
            return
        after = last


def _usage_pages(fetch: Callable[[str | None], Json]) -> Iterator[Json]:
    page: str | None = None
    while True:
        body = fetch(page)
        yield from body.get("data") or []
        following = body.get("next_page")
        if not body.get("has_more") or not following or following == page:
            return
        page = following
