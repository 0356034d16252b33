"""Anthropic: the Admin API client (one method per endpoint) and the ``anthropic`` provider.

``AnthropicAdmin`` mirrors the endpoints of provider-apis.md 2.1 one for one: every request sends
``x-api-key`` (the Admin API key) and ``anthropic-version: 2023-06-01``; key lists are followed
with ``after_id=<last_id>`` until ``has_more`` is false, usage pages with ``page=<next_page>``;
array parameters go in bracket form (``api_key_ids[]=...``). Every answer goes through
``_error_for``, the one place where Anthropic's status codes become cauterize errors; provider
messages are masked before they are quoted.

``AnthropicProvider`` implements the provider protocol on top of it: liveness through
``GET /v1/models``, identification by matching ``partial_key_hint`` over every key of every
status, revocation by setting the key ``inactive`` (or ``archived``, which is terminal), a hand-off
to a person for the replacement (Anthropic has no API that creates keys), and per-key token usage
from the Messages usage report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from cauterize.errors import (
    AdminAuthError,
    InputError,
    KeyNotFound,
    ManualStepRequired,
    ProviderError,
    ProviderRejected,
)
from cauterize.http import DEFAULT_POLICY, RetryPolicy, json_object, new_client, send
from cauterize.providers.base import (
    KeyIdentity,
    MintedKey,
    ProviderSettings,
    RevokeResult,
    Usage,
    UsageBucket,
    register,
    Verdict,
)
from cauterize.providers.liveness import ask, json_body, listing, refused
from cauterize.secret import Secret, scrub

if TYPE_CHECKING:
    from cauterize.scopes import CarriedScopes

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
ADMIN_PREFIX = "sk-ant-admin"
Json = dict[str, Any]
Params = list[tuple[str, str]]

_ADMIN_REMEDIATION = (
    "Set ANTHROPIC_ADMIN_KEY (or the runbook's providers.anthropic.admin_key) to an Admin API key of this "
    "organisation (sk-ant-admin01-..., from the Claude Console: Settings -> Admin keys); standard API keys "
    "cannot call the Admin API."
)
_KEYLIKE = re.compile(r"\bsk-ant-[A-Za-z0-9_*.\-]{4,}")
#: the largest usage page per bucket width (provider-apis.md 2.1)
_USAGE_LIMITS = {"1m": 1440, "1h": 168, "1d": 31}
_REVOKED = ("inactive", "archived", "expired")


class AnthropicAdmin:
    """Anthropic's Admin API. ``client`` carries the base URL, the admin key and the version header."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 1000,
    ):
        self._client = client
        self._policy = policy
        self._sleep = sleep
        self.page_size = page_size

    # ---- API keys --------------------------------------------------------------------------

    def list_api_keys(
        self,
        *,
        before_id: str | None = None,
        after_id: str | None = None,
        limit: int | None = None,
        status: str | None = None,
        workspace_id: str | None = None,
        created_by_user_id: str | None = None,
    ) -> Json:
        """``GET /v1/organizations/api_keys``: one page of keys (every status unless ``status`` is given)."""
        params = _params(
            before_id=before_id,
            after_id=after_id,
            limit=limit,
            status=status,
            workspace_id=workspace_id,
            created_by_user_id=created_by_user_id,
        )
        return self._call("GET", "v1/organizations/api_keys", params=params)

    def iter_api_keys(self, *, status: str | None = None, workspace_id: str | None = None) -> Iterator[Json]:
        """Every key, page after page (``list_api_keys`` with ``after_id=<last_id>``)."""
        after: str | None = None
        while True:
            page = self.list_api_keys(after_id=after, limit=self.page_size, status=status, workspace_id=workspace_id)
            yield from page.get("data") or []
            last = page.get("last_id")
            if not page.get("has_more") or not last or last == after:
                return
            after = last

    def retrieve_api_key(self, api_key_id: str) -> Json:
        """``GET /v1/organizations/api_keys/{api_key_id}``: the key (never its secret)."""
        return self._call("GET", f"v1/organizations/api_keys/{api_key_id}", not_found=KeyNotFound)

    def update_api_key(self, api_key_id: str, *, name: str | None = None, status: str | None = None) -> Json:
        """``POST /v1/organizations/api_keys/{api_key_id}``: body ``{name?, status?}``; 400 for an archived key."""
        body = {field: value for field, value in (("name", name), ("status", status)) if value is not None}
        return self._call("POST", f"v1/organizations/api_keys/{api_key_id}", json=body, not_found=KeyNotFound)

    # ---- usage -----------------------------------------------------------------------------

    def messages_usage_report(
        self,
        *,
        starting_at: str,
        ending_at: str | None = None,
        bucket_width: str | None = None,
        api_key_ids: list[str] | None = None,
        workspace_ids: list[str] | None = None,
        models: list[str] | None = None,
        group_by: list[str] | None = None,
        limit: int | None = None,
        page: str | None = None,
    ) -> Json:
        """``GET /v1/organizations/usage_report/messages``: one page of time buckets."""
        params = _params(
            starting_at=starting_at,
            ending_at=ending_at,
            bucket_width=bucket_width,
            api_key_ids=api_key_ids,
            workspace_ids=workspace_ids,
            models=models,
            group_by=group_by,
            limit=limit,
            page=page,
        )
        return self._call("GET", "v1/organizations/usage_report/messages", params=params)

    def iter_messages_usage_report(self, **query: Any) -> Iterator[Json]:
        """Every bucket of ``messages_usage_report``, following ``page=<next_page>``."""
        page: str | None = None
        while True:
            body = self.messages_usage_report(**query, page=page)
            yield from body.get("data") or []
            following = body.get("next_page")
            if not body.get("has_more") or not following or following == page:
                return
            page = following

    # ---- the one boundary ------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, not_found: type[ProviderError] = ProviderRejected, **kwargs: Any
    ) -> Json:
        what = f"Anthropic {method} /{path}"
        response = send(self._client, method, path, what=what, policy=self._policy, sleep=self._sleep, **kwargs)
        if response.status_code >= 400:
            raise _error_for(response, what, not_found)
        return json_object(response, what)


def _error_for(response: httpx.Response, what: str, not_found: type[ProviderError]) -> ProviderError:
    """Map an Anthropic error answer to a cauterize error (quoting Anthropic's message, masked)."""
    status, message = response.status_code, provider_message(response)
    if status in (401, 403):
        return AdminAuthError(
            f"the Anthropic admin key was rejected ({status}): {message}", remediation=_ADMIN_REMEDIATION
        )
    if status == 404:
        return not_found(f"{what}: not found (404): {message}")
    return ProviderRejected(f"{what}: Anthropic refused the request ({status}): {message}")


def provider_message(response: httpx.Response) -> str:
    """``error.type: error.message`` of an Anthropic error body, with anything key-shaped masked."""
    try:
        error = response.json().get("error") or {}
        message = f"{error.get('type') or 'error'}: {error.get('message') or ''}" if isinstance(error, dict) else ""
    except (ValueError, AttributeError):
        message = ""
    message = scrub(_KEYLIKE.sub("[key redacted]", message or response.reason_phrase or "no message"))
    return " ".join(message.split())[:300]


def _error_type(response: httpx.Response) -> str | None:
    """``error.type`` of Anthropic's error body ``{"type": "error", "error": {"type", "message"}}``."""
    error = json_body(response).get("error")
    return error.get("type") if isinstance(error, dict) else None


def _params(**values: Any) -> Params:
    """Query parameters as Anthropic's SDKs send them: arrays bracketed (``group_by[]=...``)."""
    params: Params = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            params.extend((f"{name}[]", str(item)) for item in value)
        else:
            params.append((name, str(value)))
    return params


@register("anthropic")
class AnthropicProvider:
    """The ``anthropic`` provider: ``AnthropicProvider(ProviderSettings(admin_key=Secret(...)))``.

    ``settings.revoke``: ``archived`` (or ``delete``: Anthropic has no delete) archives the key,
    which is terminal; anything else sets it ``inactive``, which an admin can undo."""

    name = "anthropic"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self._base_url = settings.base_url or DEFAULT_BASE_URL
        self._policy, self._sleep = policy, sleep
        self._data = new_client(
            self._base_url,
            headers={"anthropic-version": API_VERSION},
            timeout=settings.timeout,
            transport=settings.transport,
        )
        self._admin: AnthropicAdmin | None = None

    def __repr__(self) -> str:
        return f"AnthropicProvider(base_url={self._base_url!r})"

    @property
    def admin(self) -> AnthropicAdmin:
        """The Admin API client, created on first use (``check`` needs no admin key)."""
        if self._admin is None:
            key = self.settings.admin_key
            if key is None:
                raise InputError(
                    "no Anthropic admin key: set ANTHROPIC_ADMIN_KEY or providers.anthropic.admin_key",
                    remediation=_ADMIN_REMEDIATION,
                )
            headers = {**_key_header(key), "anthropic-version": API_VERSION}
            client = new_client(
                self._base_url, headers=headers, timeout=self.settings.timeout, transport=self.settings.transport
            )
            self._admin = AnthropicAdmin(client, policy=self._policy, sleep=self._sleep)
        return self._admin

    def missing(self) -> list[str]:
        """What containment (identify, revoke) lacks here, found without a network call: the admin key."""
        try:
            self.admin
        except InputError as exc:
            return [exc.one_line()]
        return []

    def close(self) -> None:
        self._data.close()
        if self._admin is not None:
            self._admin._client.close()

    # ---- check -----------------------------------------------------------------------------

    def check(self, key: Secret) -> Verdict:
        """``GET /v1/models`` with the key (an admin key: ``GET /v1/organizations/api_keys?limit=1``), failing closed.

        Live: 200 with the list body (``{"data": [...], "has_more", ...}``). Dead: 401
        ``authentication_error``, Anthropic's answer for a key it does not accept (inactive, archived,
        expired, unknown). Anything else is unknown with the reason: 403 ``permission_error`` (the key
        authenticated but may not use the resource), 404 ``not_found_error`` (trufflehog reads it as
        disabled; Anthropic documents it as a missing resource), 400, 429/5xx after every retry, no
        answer, a redirect or an odd body: ``liveness``."""
        admin = _is_admin(key)
        path, params = ("v1/organizations/api_keys", {"limit": "1"}) if admin else ("v1/models", None)
        route = f"GET /{path}"
        answer = ask(
            lambda: send(
                self._data,
                "GET",
                path,
                what=f"Anthropic liveness of {key.fingerprint}",
                policy=self._policy,
                sleep=self._sleep,
                headers=_key_header(key),
                params=params,
            )
        )
        if isinstance(answer, Verdict):
            return answer
        status = answer.status_code
        if status == 200:
            return listing(answer, route)
        if status == 401 and _error_type(answer) == "authentication_error":
            return Verdict.dead(f"401 {provider_message(answer)}", status)
        return refused(answer, route, provider_message(answer) if status >= 400 else "")

    # ---- identify --------------------------------------------------------------------------

    def identify(self, key: Secret) -> KeyIdentity:
        """Find the key by its ``partial_key_hint`` among every key of every status."""
        if _is_admin(key):
            raise KeyNotFound(
                f"the leaked key {key.fingerprint} is an Anthropic Admin API key; the Admin API does not list admin keys",
                remediation="Delete it in the Claude Console (Settings -> Admin keys), then rerun to confirm it is dead.",
            )
        matches = [k for k in self.admin.iter_api_keys() if _hint_matches(k, key)]
        if not matches:
            raise KeyNotFound(f"no Anthropic key listed by this admin key matches the leaked key {key.fingerprint}")
        chosen = max(matches, key=lambda k: (k.get("status") == "active", _parse_time(k.get("created_at"))))
        notes: list[str] = []
        if len(matches) > 1:
            others = ", ".join(m["id"] for m in matches if m is not chosen)
            notes.append(
                f"ambiguous: {len(matches)} Anthropic keys match the leaked key's partial_key_hint; chose "
                f"{chosen['id']} (active first, then the newest) over {others}; confirm in the Claude Console"
            )
        if chosen.get("status") in _REVOKED:
            notes.append(f"the key is already {chosen['status']} at Anthropic")
        return _identity(chosen, notes)

    # ---- revoke ----------------------------------------------------------------------------

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """Set the key ``inactive`` (``archived`` by policy): ``GET`` it, then ``POST`` the new status.

        A key that is already inactive, archived or expired is ``already-revoked`` (GitHub's
        secret-scanning partner program may have disabled it first); under the ``archived`` policy
        an inactive key is archived, since an inactive one can be re-activated."""
        if not identity.key_id:
            raise InputError("cannot revoke an Anthropic key without its key id; identify it first")
        target = "archived" if self.settings.revoke in ("archived", "delete") else "inactive"
        status = self.admin.retrieve_api_key(identity.key_id).get("status")
        if status in ("archived", "expired") or status == target:
            return RevokeResult(identity, "already-revoked")
        updated = self.admin.update_api_key(identity.key_id, status=target)
        if updated.get("status") != target:
            raise ProviderRejected(
                f"Anthropic answered status {updated.get('status')!r} after setting {identity.key_id} {target}"
            )
        if target == "archived":
            return RevokeResult(identity, "archived-key")
        item = (
            f"Anthropic key {identity.key_id} is inactive, which any organisation admin can undo: archive it in "
            "the Claude Console (Settings -> API keys) once the incident is closed, or set "
            "providers.anthropic.revoke: archived"
        )
        return RevokeResult(identity, "deactivated-key", (item,))

    # ---- mint ------------------------------------------------------------------------------

    def mint(self, like: KeyIdentity, name: str, scopes: CarriedScopes | None = None) -> MintedKey:
        """Anthropic has no API that creates keys: a person creates the replacement in the Console."""
        workspace = (scopes.workspace if scopes is not None else None) or like.project
        if workspace:
            where = f"workspace {workspace}"
        elif scopes is not None and scopes.known:
            where = "the organisation scope (no workspace), like the old key"
        else:
            where = "the workspace of the old key"
        raise ManualStepRequired(
            f"Anthropic has no API to create keys: create the replacement for {like.key_id or 'the leaked key'} "
            f"in the Claude Console (Settings -> API keys) in {where}, named {name!r}, then paste it through "
            "the hidden prompt or the pause form",
            remediation=(
                "Create the key in console.anthropic.com (Settings -> API keys, same workspace), paste it when "
                "cauterize asks (never as a command-line argument), then rerun to resume."
            ),
        )

    # ---- usage -----------------------------------------------------------------------------

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Token usage of the key over ``[start, end)`` from the Messages usage report, all pages.

        Input tokens are uncached + cache writes + cache reads. Requests are not reported (0) and
        there is no per-key cost: Anthropic's cost report cannot be grouped by key."""
        if bucket not in _USAGE_LIMITS:
            raise InputError(f"bucket '{bucket}' is not one of {', '.join(_USAGE_LIMITS)}")
        if not identity.key_id:
            raise InputError("cannot read Anthropic usage without the key id; identify the key first")
        buckets: dict[str, Json] = {}
        for item in self.admin.iter_messages_usage_report(
            starting_at=_rfc3339(start),
            ending_at=_rfc3339(end),
            bucket_width=bucket,
            api_key_ids=[identity.key_id],
            group_by=["api_key_id"],
            limit=_USAGE_LIMITS[bucket],
        ):
            total = buckets.setdefault(item["starting_at"], {"end": item["ending_at"], "in": 0, "out": 0})
            for result in item.get("results") or []:
                if result.get("api_key_id") in (identity.key_id, None):
                    total["in"] += _input_tokens(result)
                    total["out"] += result.get("output_tokens") or 0
        limitations = [
            "Anthropic's cost report cannot be grouped by API key, so no cost is given for this key",
            "Anthropic's usage report does not count requests: request counts read 0",
        ]
        if not any(t["in"] or t["out"] for t in buckets.values()):
            limitations.insert(
                0,
                f"Anthropic reported no Messages usage for {identity.key_id} in this window "
                "(Console and Workbench usage carries no key id)",
            )
        return Usage(
            tuple(
                UsageBucket(_parse_time(s), _parse_time(t["end"]), t["in"], t["out"], 0, None)
                for s, t in sorted(buckets.items(), key=lambda item: _parse_time(item[0]))
            ),
            tuple(limitations),
        )


def _input_tokens(result: Json) -> int:
    """Every input token of a usage result: uncached, written to the cache (5 m and 1 h), read from it."""
    cache = result.get("cache_creation") or {}
    return (
        (result.get("uncached_input_tokens") or 0)
        + (cache.get("ephemeral_5m_input_tokens") or 0)
        + (cache.get("ephemeral_1h_input_tokens") or 0)
        + (result.get("cache_read_input_tokens") or 0)
    )


def _identity(key: Json, notes: list[str]) -> KeyIdentity:
    principal, creator = key.get("principal") or {}, key.get("created_by") or {}
    if principal.get("type") == "service_account_actor":
        owner_type, owner_id = "service_account", principal.get("service_account_id")
    elif principal.get("type") == "user_actor":
        owner_type, owner_id = "user", principal.get("user_id")
    else:
        owner_type, owner_id = creator.get("type"), creator.get("id")
    scope = key.get("scope") or {}
    workspace = scope.get("workspace_id") if scope.get("type") == "workspace" else key.get("workspace_id")
    return KeyIdentity("anthropic", key["id"], workspace, owner_type, owner_id, key.get("name"), tuple(notes))


def _hint_matches(listed: Json, key: Secret) -> bool:
    """Does the key fit the listed ``partial_key_hint`` (head, ``...``, tail; lengths not assumed)?"""
    hint = str(listed.get("partial_key_hint") or "")
    for ellipsis in ("...", "\u2026"):
        head, found, tail = hint.partition(ellipsis)
        if found:
            break
    else:
        return False
    value = key.reveal()
    return (
        bool(head and tail) and len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)
    )


def _is_admin(key: Secret) -> bool:
    return key.reveal().startswith(ADMIN_PREFIX)


def _key_header(key: Secret) -> dict[str, str]:
    value = key.reveal()
    if not value.isascii() or not value.isprintable():
        raise InputError(f"the key {key.fingerprint} holds characters that cannot be sent in an HTTP header")
    return {"x-api-key": value}


def _rfc3339(when: datetime) -> str:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (the epoch when missing or malformed)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
