"""OpenAI: the ``openai`` provider, on the admin API client of ``openai_admin.py``.

``OpenAIProvider`` implements the provider protocol: liveness through
``GET /models``, identification by walking every project's keys and matching ``redacted_value``,
revocation of exactly the leaked key (``DELETE .../api_keys/{id}``, for service-account keys too
since the 2026 API; the whole service account only when the runbook asks or an older API refuses),
minting the replacement on the leaked key's own service account (else the runbook's, else a new
one), and per-key completions usage. ``ADMIN_SCOPES`` names the admin-key scopes each step needs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from cauterize.errors import (
    InputError,
    KeyNotFound,
    ManualStepRequired,
    MissingPermission,
    ProviderError,
    ProviderRejected,
)
from cauterize.http import DEFAULT_POLICY, RetryPolicy, new_client, send
from cauterize.logs import LOGGER
from cauterize.providers.base import (
    KeyIdentity,
    MintedKey,
    ProviderSettings,
    RevokeResult,
    Usage,
    UsageBucket,
    Verdict,
    register,
)
from cauterize.providers.liveness import ask, json_body, listing, refused
from cauterize.providers.openai_admin import (
    _ADMIN_REMEDIATION,
    Json,
    OpenAIAdmin,
    SingleKeyDeleteRefused,
    provider_message,
)
from cauterize.secret import Secret

if TYPE_CHECKING:
    from cauterize.scopes import CarriedScopes

DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: the largest usage page per bucket width (provider-apis.md 1.1)
_USAGE_LIMITS = {"1m": 1440, "1h": 168, "1d": 31}

#: The admin-key scopes each step calls for (a restricted admin key: platform.openai.com, Admin keys,
#: Permissions "Restricted"; the console's "Organization Administration" Read / Write are the
#: ``api.management.*`` pair). The spec names none of them (every admin operation is plain
#: ``AdminApiKeyAuth``); the names are the ones OpenAI's own refusals quote, "Missing scopes: ...":
#: api.management.read (list projects, keys, service accounts) and api.management.write (create a
#: service account) in community.openai.com threads 1345041 and 1368874; api.usage.read for
#: /organization/usage/* and /organization/costs and api.audit_logs.read for /organization/audit_logs
#: as quoted by third-party integrations (VERIFY against a restricted key of a real organisation).
ADMIN_SCOPES: dict[str, list[str]] = {
    # walk projects and their keys (admin keys: GET /organization/admin_api_keys)
    "identify": ["api.management.read"],
    # DELETE .../api_keys/{id}, .../service_accounts/{id}, /organization/admin_api_keys/{id}
    "revoke": ["api.management.read", "api.management.write"],
    # POST .../service_accounts[/{id}/api_keys], POST .../service_accounts/{id} (role); a
    # crash-resume lists keys and service accounts to find an orphaned replacement
    "rotate": ["api.management.read", "api.management.write"],
    # GET /organization/usage/completions and /organization/costs
    "evidence": ["api.usage.read"],
    # GET /organization/audit_logs: the leaked key's scopes and a service account's role (rotate)
    "audit": ["api.audit_logs.read"],
}
#: notes on a minted identity telling ``revoke`` what cauterize made: delete the account it created
#: for the replacement; delete only a key it added beside an account's other keys
_NEW_ACCOUNT_NOTE = "cauterize created service account {account} for this replacement"
_ON_ACCOUNT_NOTE = "cauterize minted this replacement on service account {account}, beside its other keys"




@register("openai")
class OpenAIProvider:
    """The ``openai`` provider: ``OpenAIProvider(ProviderSettings(admin_key=Secret(...)))``."""

    name = "openai"

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
        self._data = new_client(self._base_url, timeout=settings.timeout, transport=settings.transport)
        self._admin: OpenAIAdmin | None = None
        self._minted: set[str] = set()  # key ids this instance minted beside other keys of an account

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self._base_url!r})"

    @property
    def admin(self) -> OpenAIAdmin:
        """The admin API client, created on first use (``check`` needs no admin key)."""
        if self._admin is None:
            key = self.settings.admin_key
            if key is None:
                raise InputError(
                    "no OpenAI admin key: set OPENAI_ADMIN_KEY or providers.openai.admin_key",
                    remediation=_ADMIN_REMEDIATION,
                )
            client = new_client(
                self._base_url, headers=_bearer(key), timeout=self.settings.timeout, transport=self.settings.transport
            )
            shaped = _kind(key) not in ("proj", "svcacct", "service")  # a project key: the fix is an admin key
            self._admin = OpenAIAdmin(client, policy=self._policy, sleep=self._sleep, admin_key_shaped=shaped)
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
        """``GET /models`` with the key (an admin key: ``GET /organization/admin_api_keys``), failing closed.

        Live: 200 with the list body (``{"object": "list", "data": [...]}``), or a 401/403 "insufficient
        permissions ... Missing scopes" (a restricted key: it authenticated, it may only not list).
        Dead: 401 ``invalid_api_key`` / "Incorrect API key provided", OpenAI's answer for a deleted,
        revoked or mistyped key. Anything else is unknown with the reason, 401s of other meaning
        included ("IP not authorized", "must be a member of an organization"): ``liveness``."""
        path, params = ("organization/admin_api_keys", {"limit": "1"}) if _kind(key) == "admin" else ("models", None)
        route = f"GET /{path}"
        answer = ask(
            lambda: send(
                self._data,
                "GET",
                path,
                what=f"OpenAI liveness of {key.fingerprint}",
                policy=self._policy,
                sleep=self._sleep,
                headers=_bearer(key),
                params=params,
            )
        )
        if isinstance(answer, Verdict):
            return answer
        status = answer.status_code
        if status in (401, 403) and _lacks_scope(answer):
            return Verdict.live(f"{status} from {route}: a restricted key without this route's scope", status)
        if status == 200:
            return listing(answer, route)
        if status == 401 and _invalid_api_key(answer):
            return Verdict.dead(f"401 invalid_api_key: {provider_message(answer)}", status)
        return refused(answer, route, provider_message(answer) if status >= 400 else "")

    # ---- identify --------------------------------------------------------------------------

    def identify(self, key: Secret) -> KeyIdentity:
        """Find the key by its ``redacted_value``: admin keys, or every project's keys (hinted project first)."""
        if _kind(key) == "admin":
            matches = [(None, k) for k in self.admin.iter_admin_api_keys() if _redaction_matches(k, key)]
            return self._choose(matches, key, [])
        notes: list[str] = []
        matches: list[tuple[str | None, Json]] = []
        for project_id in self._projects_to_search(notes):
            found = [
                (project_id, k) for k in self.admin.iter_project_api_keys(project_id) if _redaction_matches(k, key)
            ]
            matches.extend(found)
            if project_id == self.settings.project and len(found) == 1:
                notes.append(f"matched in the runbook's project {project_id}; other projects were not searched")
                break
        return self._choose(matches, key, notes)

    def _projects_to_search(self, notes: list[str]) -> Iterator[str]:
        hint = self.settings.project
        if hint:
            try:
                self.admin.list_project_api_keys(hint, limit=1, owner_project_access="any")
                yield hint
            except KeyNotFound:
                notes.append(f"the runbook's project {hint} does not exist in this organisation")
        for project in self.admin.iter_projects(include_archived=True):
            if project["id"] != hint:
                yield project["id"]

    def _choose(self, matches: list[tuple[str | None, Json]], key: Secret, notes: list[str]) -> KeyIdentity:
        if not matches:
            raise KeyNotFound(f"no OpenAI key listed by this admin key matches the leaked key {key.fingerprint}")
        expected = {"proj": "user", "svcacct": "service_account", "service": "service_account"}.get(_kind(key))

        def rank(match: tuple[str | None, Json]) -> tuple[bool, int, int]:
            owner_type = (match[1].get("owner") or {}).get("type")
            return (owner_type == expected, match[1].get("last_used_at") or 0, match[1].get("created_at") or 0)

        project_id, chosen = max(matches, key=rank)
        if len(matches) > 1:
            others = ", ".join(m[1]["id"] for m in matches if m[1] is not chosen)
            notes.append(
                f"ambiguous: {len(matches)} OpenAI keys match the leaked key's redacted form; chose "
                f"{chosen['id']} (owner type fitting the key prefix, then most recently used) over {others}; "
                "confirm in the OpenAI console"
            )
        return _identity(project_id, chosen, notes)

    # ---- revoke ----------------------------------------------------------------------------

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        """Delete exactly the key: ``DELETE .../api_keys/{id}`` for a user's and a service account's key
        (the account and its other keys live on), ``DELETE /organization/admin_api_keys/{id}`` for an
        admin key. The whole service account is deleted only when the runbook says
        ``providers.openai.revoke: service-account``, when an older API answers 400 to the single-key
        delete (the action item then names the sibling keys that died), or when cauterize created
        the account for a replacement it now takes back. 404: already revoked."""
        if identity.owner_type == "admin":
            if not identity.key_id:
                raise InputError("cannot revoke an OpenAI admin key without its key id; identify it first")
            return self._revoke_with(
                identity, "deleted-admin-key", lambda: self.admin.delete_admin_api_key(identity.key_id)
            )
        project = _project_of(identity)
        account = identity.owner_id if identity.owner_type == "service_account" else None
        if account and (not identity.key_id or _NEW_ACCOUNT_NOTE.format(account=account) in identity.notes):
            # a replacement's own account (from mint, or an orphan find_minted found): it holds nothing else
            return self._revoke_service_account(identity, project, account, None)
        if not identity.key_id:
            raise InputError("cannot revoke an OpenAI key without its key id; identify it first")
        beside = _ON_ACCOUNT_NOTE.format(account=account) in identity.notes  # a replacement among other keys
        if account and self.settings.revoke == "service-account" and not beside:
            return self._revoke_service_account(
                identity, project, account, "the runbook asks for it: providers.openai.revoke is service-account"
            )
        try:
            return self._revoke_with(
                identity, "deleted-key", lambda: self.admin.delete_project_api_key(project, identity.key_id)
            )
        except SingleKeyDeleteRefused as exc:
            if beside:  # never take the account's other keys down with a replacement
                raise ManualStepRequired(
                    f"OpenAI refused to delete the replacement {identity.key_id} alone ({exc.message}); delete it "
                    f"in the console (project {project}, API keys), not its service account {account}"
                ) from exc
            owner = account or ((self._owner_of(project, identity.key_id).get("service_account") or {}).get("id"))
            if not owner:
                raise
            LOGGER.warning("OpenAI refused to delete key %s alone: deleting service account %s", identity.key_id, owner)
            why = "OpenAI refused to delete the single service-account key (400: an API older than 2026)"
            return self._revoke_service_account(identity, project, owner, why)

    def _revoke_service_account(
        self, identity: KeyIdentity, project: str, sa_id: str, why: str | None
    ) -> RevokeResult:
        """Delete the service account; with ``why``, an action item says so and names the siblings that died."""
        siblings = self._sibling_keys(project, sa_id, identity.key_id) if why else None
        result = self._revoke_with(
            identity, "deleted-service-account", lambda: self.admin.delete_project_service_account(project, sa_id)
        )
        if result.action != "deleted-service-account" or why is None:
            return result
        if siblings is None:
            consequence = "every other key it held was revoked too; find and replace any other use of it"
        elif siblings:
            consequence = f"its other keys {', '.join(siblings)} were revoked too; replace them wherever they are used"
            mine = [k for k in siblings if k in self._minted]
            if mine:
                consequence += f" (among them the replacement {', '.join(mine)} minted on it: mint another)"
        else:
            consequence = "it held no other key"
        item = f"service account {sa_id} in project {project} was deleted to revoke {identity.key_id} ({why})"
        return RevokeResult(result.identity, result.action, (f"{item}: {consequence}",))

    def _revoke_with(self, identity: KeyIdentity, action: str, delete: Callable[[], Json]) -> RevokeResult:
        try:
            delete()
        except KeyNotFound:
            return RevokeResult(identity, "already-revoked")
        return RevokeResult(identity, action)

    def _owner_of(self, project: str, key_id: str) -> Json:
        return self.admin.retrieve_project_api_key(project, key_id).get("owner") or {}

    def _sibling_keys(self, project: str, sa_id: str, key_id: str | None) -> list[str] | None:
        """Other keys of the service account, to name in the action item (None if they could not be listed)."""
        try:
            return [
                k["id"]
                for k in self.admin.iter_project_api_keys(project)
                if ((k.get("owner") or {}).get("service_account") or {}).get("id") == sa_id and k["id"] != key_id
            ]
        except ProviderError:
            return None  # the revocation goes ahead; the action item then names no ids

    # ---- mint ------------------------------------------------------------------------------

    def mint(self, like: KeyIdentity, name: str, scopes: CarriedScopes | None = None) -> MintedKey:
        """A key named ``name`` with the old key's scopes (``scopes``, read at rotate), on the leaked key's
        own service account (same identity and role: ``POST .../service_accounts/{id}/api_keys``), else
        on the runbook's ``providers.openai.service_account``, else on a new service account. A refused
        mint on an existing account (an older API, a proxy: 404/400) falls back to a new account and
        says why, in the log and the identity's notes."""
        if self.settings.mint == "manual" or like.owner_type == "admin":
            carry = f"; {scopes.summary()}" if scopes is not None else ""
            raise ManualStepRequired(
                f"create the replacement OpenAI key for {like.key_id} in the console "
                f"(platform.openai.com) and paste it into the prompt{carry}"
            )
        project = _project_of(like)
        account = self._account_for(like)
        notes: list[str] = []
        if account:
            try:
                return self._mint_on_account(project, account, name, scopes)
            except ProviderRejected as exc:
                reason = (
                    f"OpenAI refused a new key on service account {account} ({exc.message}); "
                    "the replacement is on a new service account"
                )
                LOGGER.warning("%s", reason)
                notes.append(reason)
        return self._mint_new_account(project, name, scopes, notes)

    def _account_for(self, like: KeyIdentity) -> str | None:
        """Where the replacement goes: the leaked key's own service account, unless the runbook has it
        deleted on revoke (``revoke: service-account``); else the runbook's named account."""
        own = like.owner_id if like.owner_type == "service_account" else None
        doomed = own if self.settings.revoke == "service-account" else None
        return next((a for a in (own, self.settings.service_account) if a and a != doomed), None)

    def _mint_on_account(self, project: str, account: str, name: str, scopes: CarriedScopes | None) -> MintedKey:
        """``POST .../service_accounts/{account}/api_keys`` with ``name`` and the carried scopes: the role
        is the account's own, nothing else to copy."""
        carried = tuple(scopes.scopes) if scopes is not None and scopes.scopes else ()
        api_key = self.admin.create_service_account_api_key(project, account, name, scopes=list(carried) or None)
        if not api_key.get("value") or not api_key.get("id"):
            raise ProviderRejected(f"OpenAI answered a new key on service account {account} without its value")
        self._minted.add(api_key["id"])
        identity = KeyIdentity(
            "openai", api_key["id"], project, "service_account", account, api_key.get("name") or name,
            (_ON_ACCOUNT_NOTE.format(account=account),),
        )
        return MintedKey(Secret(api_key["value"]), identity, carried)

    def _mint_new_account(
        self, project: str, name: str, scopes: CarriedScopes | None, notes: list[str]
    ) -> MintedKey:
        """Create a service account named ``name`` in ``project``; its key is the replacement.

        With ``scopes`` the replacement carries the same: the account is created without a key
        (``create_service_account_only``), given the old role, and its key is created with the old
        scopes, since only that endpoint takes scopes."""
        restricted = scopes is not None and bool(scopes.scopes)
        role = (scopes.role if scopes is not None else None) or "member"
        if not restricted and role == "member":
            created = self.admin.create_project_service_account(project, name)
            api_key = created.get("api_key") or {}
        else:
            try:
                created, api_key = self._mint_scoped(project, name, role, scopes.scopes if restricted else None)
            except ProviderRejected as exc:
                # an organisation (or proxy) without the scoped-key endpoint: the service still needs a
                # key now; the record and post-mortem say it is unrestricted, a person restricts it
                created = self.admin.create_project_service_account(project, name)
                api_key = created.get("api_key") or {}
                restricted = False
                LOGGER.warning("OpenAI refused the scoped replacement (%s): minted an unrestricted one", exc.message)
        if not api_key.get("value"):
            raise ProviderRejected(f"OpenAI created service account {created.get('id')} without an API key")
        notes.append(_NEW_ACCOUNT_NOTE.format(account=created.get("id")))
        identity = KeyIdentity(
            "openai", api_key.get("id"), project, "service_account", created.get("id"), created.get("name") or name,
            tuple(notes),
        )
        return MintedKey(Secret(api_key["value"]), identity, scopes.scopes if restricted else ())

    def _mint_scoped(self, project: str, name: str, role: str, scopes: tuple[str, ...] | None) -> tuple[Json, Json]:
        """A service account without a key, given ``role``, then its key with ``scopes``; the account is
        deleted again if either step fails (no keyless account left behind)."""
        created = self.admin.create_project_service_account(project, name, create_service_account_only=True)
        try:
            self.admin.update_project_service_account(project, created["id"], role=role)
            api_key = self.admin.create_service_account_api_key(
                project, created["id"], name, scopes=list(scopes) if scopes is not None else None
            )
        except ProviderError:
            self.admin.delete_project_service_account(project, created["id"])
            raise
        return created, api_key

    def find_minted(self, like: KeyIdentity, name: str) -> list[KeyIdentity]:
        """Replacements an interrupted run may have minted, for ``revoke`` to take back: keys named
        ``name`` on the accounts ``mint`` adds keys to (only those keys go), and service accounts named
        ``name`` in ``like.project`` (made for the replacement: the account goes)."""
        project = _project_of(like)
        found: list[KeyIdentity] = []
        accounts = {a for a in (like.owner_id if like.owner_type == "service_account" else None,
                                self.settings.service_account) if a}
        if accounts:
            for key in self.admin.iter_project_api_keys(project):
                owner = ((key.get("owner") or {}).get("service_account") or {}).get("id")
                if key.get("name") == name and owner in accounts:
                    note = _ON_ACCOUNT_NOTE.format(account=owner)
                    found.append(KeyIdentity("openai", key["id"], project, "service_account", owner, name, (note,)))
        found.extend(
            KeyIdentity("openai", None, project, "service_account", account["id"], account.get("name"))
            for account in self.admin.iter_project_service_accounts(project)
            if account.get("name") == name
        )
        return found

    # ---- usage -----------------------------------------------------------------------------

    def usage(self, identity: KeyIdentity, start: datetime, end: datetime, bucket: str) -> Usage:
        """Completions usage of the key over ``[start, end)``, all pages; daily costs when ``bucket`` is ``1d``."""
        if bucket not in _USAGE_LIMITS:
            raise InputError(f"bucket '{bucket}' is not one of {', '.join(_USAGE_LIMITS)}")
        if not identity.key_id:
            raise InputError("cannot read OpenAI usage without the key id; identify the key first")
        window = {
            "start_time": _unix(start),
            "end_time": _unix(end, ceil=True),
            "api_key_ids": [identity.key_id],
            "group_by": ["api_key_id"],
        }
        buckets: dict[int, dict[str, Any]] = {}
        for item in self.admin.iter_usage_completions(**window, bucket_width=bucket, limit=_USAGE_LIMITS[bucket]):
            total = buckets.setdefault(item["start_time"], {"end": item["end_time"], "in": 0, "out": 0, "req": 0})
            for result in _own_results(item, identity.key_id):
                total["in"] += result.get("input_tokens") or 0
                total["out"] += result.get("output_tokens") or 0
                total["req"] += result.get("num_model_requests") or 0
        costs, limitations = (
            self._costs(window)
            if bucket == "1d"
            else ({}, ["OpenAI reports cost per day only: ask for bucket 1d to include cost"])
        )
        if not any(t["req"] or t["in"] or t["out"] for t in buckets.values()):
            limitations.insert(
                0,
                f"OpenAI reported no completions usage for {identity.key_id} in this window "
                "(other endpoints such as embeddings, images and audio are not counted)",
            )
        return Usage(
            tuple(
                UsageBucket(_utc(s), _utc(t["end"]), t["in"], t["out"], t["req"], costs.get(s) if costs else None)
                for s, t in sorted(buckets.items())
            ),
            tuple(limitations),
        )

    def _costs(self, window: Json) -> tuple[dict[int, float], list[str]]:
        try:
            costs: dict[int, float] = {}
            for item in self.admin.iter_costs(**window, limit=180):
                results = _own_results(item, window["api_key_ids"][0])
                amount = sum(float((r.get("amount") or {}).get("value") or 0) for r in results)
                costs[item["start_time"]] = costs.get(item["start_time"], 0.0) + amount
            return costs, []
        except (ProviderRejected, MissingPermission) as exc:  # a key that may read usage but not costs
            return {}, [f"OpenAI costs were not available: {exc.message}"]


def _own_results(bucket: Json, key_id: str) -> list[Json]:
    return [r for r in bucket.get("results") or [] if r.get("api_key_id") in (key_id, None)]


def _identity(project_id: str | None, key: Json, notes: list[str]) -> KeyIdentity:
    owner = key.get("owner") or {}
    owner_type = "admin" if key.get("object") == "organization.admin_api_key" else owner.get("type")
    owner_id = owner.get("id") if owner_type == "admin" else (owner.get(owner_type or "") or {}).get("id")
    return KeyIdentity("openai", key["id"], project_id, owner_type, owner_id, key.get("name"), tuple(notes))


def _redaction_matches(listed: Json, key: Secret) -> bool:
    """Does the key fit the listed ``redacted_value`` (head, ``...``, tail; lengths not assumed)?"""
    redacted = str(listed.get("redacted_value") or "")
    for ellipsis in ("...", "\u2026"):
        head, found, tail = redacted.partition(ellipsis)
        if found:
            break
    else:
        head, tail = redacted.split("*", 1)[0], redacted.rsplit("*", 1)[-1] if "*" in redacted else ""
    head, tail = head.rstrip("*"), tail.lstrip("*")
    value = key.reveal()
    return bool(tail) and len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


def _lacks_scope(response: httpx.Response) -> bool:
    """OpenAI refuses a restricted key that lacks a route's scope with 401 (code null), "You have
    insufficient permissions for this operation. Missing scopes: ...": the key is valid."""
    message = provider_message(response).lower()
    return "missing scopes" in message or "insufficient permissions" in message


def _invalid_api_key(response: httpx.Response) -> bool:
    """OpenAI's answer for a key it does not accept (deleted, revoked, mistyped): 401 with code
    ``invalid_api_key``, "Incorrect API key provided: sk-...". Other 401s ("IP not authorized",
    "You must be a member of an organization to use the API") say nothing about the key."""
    error = json_body(response).get("error")
    if not isinstance(error, dict):
        return False
    return error.get("code") == "invalid_api_key" or str(error.get("message") or "").startswith(
        "Incorrect API key provided"
    )


def _kind(key: Secret) -> str | None:
    match = re.match(r"sk-(proj|svcacct|service|admin)-", key.reveal())
    return match.group(1) if match else None


def _bearer(key: Secret) -> dict[str, str]:
    value = key.reveal()
    if not value.isascii() or not value.isprintable():
        raise InputError(f"the key {key.fingerprint} holds characters that cannot be sent in an HTTP header")
    return {"Authorization": f"Bearer {value}"}


def _project_of(identity: KeyIdentity) -> str:
    if not identity.project:
        raise InputError(f"the OpenAI key {identity.key_id} has no project in its identity; identify it again")
    return identity.project


def _unix(when: datetime, *, ceil: bool = False) -> int:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    stamp = aware.timestamp()
    return int(stamp) + (1 if ceil and stamp % 1 else 0)


def _utc(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)
