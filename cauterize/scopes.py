"""Scope-preserving mint: what the replacement should carry over from the key it replaces.

``carried_scopes(provider, identity)`` reads, through the provider's admin client, what limits the
revoked key's reach. The rotate step calls it (not intake: containment never waits for it). After
a revocation the audit log still answers, a deleted service account's role included (its
``service_account.created|updated`` events); only with audit logging off is the role lost.

What the provider APIs allow (provider-apis.md, the OpenAI spec in shared/specs):

* OpenAI. A project key's permissions (the console's All / Restricted / Read only) are *scopes*
  such as ``api.model.request``. The key listing (``ProjectApiKey``) does not show them; the audit
  log does: ``api_key.created`` events carry ``data.scopes`` and ``api_key.updated`` events
  ``changes_requested.scopes`` (``GET /organization/audit_logs?event_types[]=...&resource_ids[]=KEY``;
  audit logging must be on for the organisation, and keys made before it was on have no event).
  The newest event wins; an empty list is read as unrestricted. A replacement takes scopes only from
  ``POST /organization/projects/{p}/service_accounts/{sa}/api_keys`` (body ``{name, scopes}``), not
  from ``POST .../service_accounts``, which mints the first key without scopes: so the mint creates
  the service account with ``create_service_account_only`` and then its key. The service account's
  role (``member`` | ``owner``) is on ``GET .../service_accounts/{sa}`` and in the
  ``service_account.created|updated`` audit events; ``POST .../service_accounts/{sa}`` sets it.
  A user key also inherits its user's project role, which a service account cannot copy: noted.
* Anthropic. A key's reach is its workspace (``scope: {type: workspace, workspace_id}``, or
  ``{type: organization}``); there are no finer per-key permissions and no API that creates keys,
  so the person creating the replacement is told the workspace.
* Google (a new key of the same service account), Azure OpenAI (the regenerated slot of the same
  account): the replacement has the same reach by construction. Cohere: a person creates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cauterize.errors import KeyNotFound, ProviderError
from cauterize.providers.base import KeyIdentity

_KEY_EVENTS = ("api_key.created", "api_key.updated")
_ACCOUNT_EVENTS = ("service_account.created", "service_account.updated")


@dataclass(frozen=True)
class CarriedScopes:
    """What the replacement should carry over. ``scopes`` (OpenAI): the key's scopes, ``()`` for
    unrestricted, None when they could not be read; ``known``: everything that limits the old key
    was read (or the provider keeps the reach by construction)."""

    provider: str
    known: bool
    scopes: tuple[str, ...] | None = None
    project: str | None = None
    workspace: str | None = None
    role: str | None = None
    source: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scopes"] = list(self.scopes) if self.scopes is not None else None
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CarriedScopes:
        scopes = data.get("scopes")
        return cls(**{**data, "scopes": tuple(scopes) if scopes is not None else None,
                      "notes": tuple(data.get("notes") or ())})

    def summary(self) -> str:
        """One sentence for the post-mortem."""
        if self.provider == "anthropic":
            where = f"workspace {self.workspace}" if self.workspace else "the organisation-wide scope"
            return f"The replacement is to be created in {where}, like the revoked key (Anthropic has no finer scopes)."
        if self.provider != "openai":
            return "The replacement has the revoked key's reach by construction (same account or service account)."
        if self.scopes is None:
            return ("The revoked key's scopes could not be read, so the replacement is unrestricted within project "
                    f"{self.project}: restrict it in the OpenAI console if the old key was.")
        what = ", ".join(self.scopes) if self.scopes else "no restriction (all permissions)"
        role = f", as a service account with role {self.role}" if self.role else ""
        return f"The replacement carries the revoked key's scopes: {what} ({self.source}) in project {self.project}{role}."


def carried_scopes(provider: Any, identity: KeyIdentity) -> CarriedScopes:
    """What ``identity``'s replacement should carry over, read through ``provider.admin``."""
    reader = _READERS.get(identity.provider)
    if reader is None:
        return CarriedScopes(identity.provider, known=True, project=identity.project,
                             notes=("the replacement has the same reach by construction",))
    return reader(provider.admin, identity)


# ---- OpenAI ---------------------------------------------------------------------------------


def _openai(admin: Any, identity: KeyIdentity) -> CarriedScopes:
    notes: list[str] = []
    scopes: tuple[str, ...] | None = None
    source = None
    try:
        for event in _audit_events(admin, _KEY_EVENTS, identity.key_id):
            details = event.get(str(event.get("type")), {}) or {}
            payload = details.get("changes_requested") or details.get("data") or {}
            if "scopes" in payload:
                scopes, source = tuple(payload["scopes"] or ()), f"audit log {event['type']} {event.get('id')}"
                break
        else:
            notes.append("the audit log holds no creation or update of this key (made before audit logging was on?)")
    except ProviderError as exc:
        notes.append(f"the audit log could not be read ({exc.message}); is audit logging on for the organisation?")
    role = _service_account_role(admin, identity, notes) if identity.owner_type == "service_account" else None
    if identity.owner_type == "user":
        notes.append("a user key also has its user's project role; the replacement is a service-account key "
                     "with role member")
    known = scopes is not None and (identity.owner_type != "service_account" or role is not None)
    return CarriedScopes("openai", known, scopes, identity.project, None, role, source, tuple(notes))


def _service_account_role(admin: Any, identity: KeyIdentity, notes: list[str]) -> str | None:
    if not (identity.project and identity.owner_id):
        return None
    try:
        return admin.retrieve_project_service_account(identity.project, identity.owner_id).get("role")
    except KeyNotFound:
        pass  # deleted already (revoked): the audit log still has it
    except ProviderError as exc:
        notes.append(f"the service account's role could not be read ({exc.message})")
        return None
    try:
        for event in _audit_events(admin, _ACCOUNT_EVENTS, identity.owner_id):
            details = event.get(str(event.get("type")), {}) or {}
            role = (details.get("changes_requested") or details.get("data") or {}).get("role")
            if role:
                return role
    except ProviderError as exc:
        notes.append(f"the service account's role could not be read ({exc.message})")
    return None


def _audit_events(admin: Any, types: tuple[str, ...], resource: str | None) -> Iterator[dict[str, Any]]:
    """Audit events about ``resource``, newest first (the API's order), every page."""
    if not resource:
        return iter(())
    return admin.iter_audit_logs(event_types=list(types), resource_ids=[resource])


# ---- Anthropic ------------------------------------------------------------------------------


def _anthropic(admin: Any, identity: KeyIdentity) -> CarriedScopes:
    if not identity.key_id:
        return CarriedScopes("anthropic", False, workspace=identity.project, notes=("no key id to read",))
    try:
        key = admin.retrieve_api_key(identity.key_id)
    except ProviderError as exc:
        return CarriedScopes("anthropic", identity.project is not None, workspace=identity.project,
                             source="identify", notes=(f"the key could not be read again ({exc.message})",))
    scope = key.get("scope") or {}
    workspace = scope.get("workspace_id") if scope.get("type") == "workspace" else key.get("workspace_id")
    return CarriedScopes("anthropic", True, workspace=workspace, source=f"api key {identity.key_id} scope")


_READERS: dict[str, Callable[[Any, KeyIdentity], CarriedScopes]] = {"openai": _openai, "anthropic": _anthropic}
