"""Google API keys (``AIza...``) through the API Keys API v2: identify, revoke, mint, usage.

``GoogleApiKeys`` mirrors the API one method per endpoint (discovery ``apikeys.v2.json``;
provider-apis.md 3.3; permissions from api-keys/docs/access-control):

    GET    /v2/keys:lookupKey?keyString=K  {parent, name}  apikeys.keys.lookup
    GET    /v2/{name}                      Key             apikeys.keys.get
    DELETE /v2/{name}                      Operation       apikeys.keys.delete
    POST   /v2/{parent}/keys               Operation       apikeys.keys.create
    GET    /v2/{name}/keyString            {keyString}     apikeys.keys.getKeyString
    GET    /v2/operations/{id}             Operation       serviceusage.operations.get

The key value travels only in lookupKey's query, as the API requires: errors name the route, never
the URL, and httpx's request logging is off (``cauterize.http``).

``ApiKeySteps`` are the google provider's steps for this kind of key:

* identify: lookupKey (``name`` is empty once the key is purged), then the key's metadata;
* revoke: the key's metadata (a key already deleted is ``already-revoked``), then ``DELETE``, a
  long-running Operation followed to the end (``deleted-api-key``). The delete is soft: Google keeps
  the key 30 days, during which ``keys.undelete`` restores it, then purges it;
* mint: a key in the same project with the old key's ``restrictions`` copied as they are (and its
  annotations and bound service account, if any), named after the old display name plus the
  replacement's name; then its key string. The old key's metadata is read at mint time (it still
  answers while soft-deleted); a replacement whose key string cannot be read is deleted again.
* usage: none is read (see ``NO_PER_KEY_USAGE``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import httpx

from cauterize.errors import (
    CauterizeError,
    InputError,
    KeyNotFound,
    ManualStepRequired,
    MissingPermission,
    ProviderRejected,
)
from cauterize.providers.base import KeyIdentity, MintedKey, RevokeResult, Usage
from cauterize.providers.google_api import GoogleAPI
from cauterize.secret import Secret

Json = dict[str, Any]
#: a Google API key, as Google issues them (provider-apis.md 3.4; gitleaks gcp-api-key)
API_KEY = re.compile(r"AIza[0-9A-Za-z_-]{35}")
#: the resource name of an API key (an IAM service-account key is projects/p/serviceAccounts/e/keys/k)
KEY_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/keys/([^/]+)")
_SUFFIX = re.compile(r" \(cauterize-[^)]*\)$")
_DISPLAY_MAX = 63
SOFT_DELETE = (
    "Google keeps a deleted API key for 30 days, during which anyone holding apikeys.keys.undelete on its project "
    "can restore it (keys.undelete); it is purged after that. Watch the project's Admin Activity audit log for an "
    "undelete of key {uid}"
)
NO_PER_KEY_USAGE = (
    "Google reports no per-key token or cost usage for an API key, and cauterize reads no per-key request counts for "
    "it: Cloud Monitoring's serviceruntime.googleapis.com/api/request_count (resource consumed_api) is broken down by "
    "credential, but Google's metric list does not document the credential label, so cauterize does not rely on it. "
    "Look at the key's traffic in the console (APIs & Services > Generative Language API > Metrics, filtered by "
    "Credentials: key {uid}); tokens and cost exist only per project and model."
)


def is_api_key_identity(identity: KeyIdentity) -> bool:
    return bool(identity.name and KEY_NAME.fullmatch(identity.name))


def require_api_key(key: Secret) -> str:
    """The value of a Google API key, or an ``InputError`` (a truncated or padded paste is not the leaked key)."""
    value = key.reveal()
    if not API_KEY.fullmatch(value):
        raise InputError(
            f"the key {key.fingerprint} starts like a Google API key but is not one ({len(value)} characters; "
            "a Google API key is AIza and 35 of [A-Za-z0-9_-])",
            remediation="Check the key source: a truncated or padded paste is not the leaked key.",
        )
    return value


class GoogleApiKeys(GoogleAPI):
    """API Keys v2; ``client`` carries the base URL and the admin bearer."""

    def __init__(self, client: httpx.Client, **options: Any):
        super().__init__(**options)
        self._client = client

    def close(self) -> None:
        self._client.close()

    def lookup_key(self, key_string: str) -> Json:
        """``GET /v2/keys:lookupKey?keyString=``: ``{parent, name}`` of the key with this value."""
        query = {"keyString": key_string}
        return self._call(self._client, "GET", "v2/keys:lookupKey", params=query, not_found=KeyNotFound)

    def get_key(self, name: str) -> Json:
        """``GET /v2/{name}``: the key's metadata, without its key string (``deleteTime`` once deleted)."""
        return self._call(self._client, "GET", f"v2/{name}", not_found=KeyNotFound)

    def delete_key(self, name: str) -> Json:
        """``DELETE /v2/{name}``: an Operation; a soft delete (restorable for 30 days)."""
        return self._call(self._client, "DELETE", f"v2/{name}", not_found=KeyNotFound)

    def create_key(self, parent: str, key: Json) -> Json:
        """``POST /v2/{parent}/keys`` (``parent``: ``projects/{p}/locations/global``): an Operation."""
        return self._call(self._client, "POST", f"v2/{parent}/keys", json=key, not_found=KeyNotFound)

    def get_key_string(self, name: str) -> Json:
        """``GET /v2/{name}/keyString``: ``{keyString}``."""
        return self._call(self._client, "GET", f"v2/{name}/keyString", not_found=KeyNotFound)

    def get_operation(self, name: str) -> Json:
        """``GET /v2/{name}`` (``operations/...``): the Operation's latest state."""
        return self._call(self._client, "GET", f"v2/{name}")

    def wait(self, operation: Json, what: str) -> Json:
        """The Operation once done (``wait_operation`` over ``get_operation``)."""
        return self.wait_operation(operation, self.get_operation, what)


class ApiKeySteps:
    """identify, revoke, mint and usage of a Google API key, over ``keys()`` (created on first use)."""

    def __init__(self, keys: Callable[[], GoogleApiKeys], mint_policy: str = "service-account"):
        self._keys, self._mint_policy = keys, mint_policy

    def identify(self, key: Secret) -> KeyIdentity:
        value = require_api_key(key)
        try:
            found = self._keys().lookup_key(value)
        except KeyNotFound as exc:
            raise KeyNotFound(
                f"Google's API Keys API knows no key {key.fingerprint}: it was deleted and purged, or it is not a "
                "key of Google Cloud",
                remediation="Check with `cauterize verify` that the key is dead; nothing is left to revoke if so.",
            ) from exc
        name, parent = str(found.get("name") or ""), str(found.get("parent") or "")
        if not name:
            raise KeyNotFound(
                f"the API key {key.fingerprint} of {parent or 'an unknown project'} was deleted more than 30 days ago "
                "and purged: nothing is left to revoke",
                remediation="Check with `cauterize verify` that the key is dead.",
            )
        match = KEY_NAME.fullmatch(name)
        if not match:
            raise ProviderRejected(f"Google's lookupKey answered a name that is no API key ({name[:80]})")
        metadata = self._keys().get_key(name)
        project = match.group(1)
        return KeyIdentity(
            "google", str(metadata.get("uid") or match.group(3)), project, "project", project, name, _notes(metadata)
        )

    def revoke(self, identity: KeyIdentity) -> RevokeResult:
        name, uid = _name(identity), identity.key_id or _name(identity).rsplit("/", 1)[-1]
        keys = self._keys()
        try:
            current = keys.get_key(name)
        except KeyNotFound:
            return RevokeResult(identity, "already-revoked")  # purged
        if current.get("deleteTime"):
            return RevokeResult(identity, "already-revoked", (SOFT_DELETE.format(uid=uid),))
        try:
            operation = keys.delete_key(name)
        except KeyNotFound:
            return RevokeResult(identity, "already-revoked")
        try:
            keys.wait(operation, f"deleting the API key {uid}")
        except CauterizeError as exc:  # the operation could not be followed: the key itself says
            try:
                deleted = bool(keys.get_key(name).get("deleteTime"))
            except CauterizeError:
                deleted = False
            if not deleted:
                raise
            followed = (
                f"Google deleted the API key {uid}, but its operation {operation.get('name')} could not be followed "
                f"({exc.one_line()})"
            )
            return RevokeResult(identity, "deleted-api-key", (followed, SOFT_DELETE.format(uid=uid)))
        return RevokeResult(identity, "deleted-api-key", (SOFT_DELETE.format(uid=uid),))

    def mint(self, like: KeyIdentity, name: str) -> MintedKey:
        old_name = _name(like)
        project = KEY_NAME.fullmatch(old_name).group(1)  # type: ignore[union-attr]
        if self._mint_policy == "manual":
            try:
                known = describe_restrictions(self._keys().get_key(old_name).get("restrictions"))
                restrictions = f"the leaked key's restrictions ({known})"
            except CauterizeError:
                restrictions = "the restrictions the leaked key had"
            raise ManualStepRequired(_by_hand(project, restrictions))
        keys = self._keys()
        try:
            old = keys.get_key(old_name)
        except KeyNotFound:
            raise ManualStepRequired(
                _by_hand(project, "the restrictions the leaked key had (Google no longer has it: cauterize cannot "
                         "read them)")
            ) from None
        body: Json = {"displayName": display_name(str(old.get("displayName") or ""), name)}
        for field in ("restrictions", "annotations", "serviceAccountEmail"):
            if old.get(field):
                body[field] = copy.deepcopy(old[field])
        operation = keys.create_key(f"projects/{project}/locations/global", body)
        try:
            done = keys.wait(operation, f"creating the replacement API key '{body['displayName']}'")
        except MissingPermission as exc:
            raise MissingPermission(
                f"{exc.message}; Google may have created the replacement (operation {operation.get('name')}): "
                f"delete the API key '{body['displayName']}' of project {project} if it exists",
                permission=exc.permission,
                remediation=exc.remediation,
            ) from exc
        created = done.get("response") if isinstance(done.get("response"), dict) else {}
        new_name = str(created.get("name") or "")
        if not KEY_NAME.fullmatch(new_name):
            raise ProviderRejected(
                f"Google's operation {done.get('name')} created a key but did not name it",
                remediation=f"Delete the unnamed replacement in project {project} by hand (APIs & Services > "
                "Credentials), then rerun.",
            )
        try:
            value = str(keys.get_key_string(new_name).get("keyString") or "")
            if not API_KEY.fullmatch(value):
                raise ProviderRejected(f"Google returned no readable key string for {new_name}")
        except CauterizeError as exc:
            try:  # never leave a key nobody holds
                keys.wait(keys.delete_key(new_name), "deleting the replacement nobody holds")
            except CauterizeError:
                raise ProviderRejected(
                    f"{exc.message}; deleting the replacement {new_name} failed too",
                    remediation=f"Delete the API key {new_name} by hand (APIs & Services > Credentials), then rerun.",
                ) from exc
            raise
        uid = str(created.get("uid") or new_name.rsplit("/", 1)[-1])
        identity = KeyIdentity("google", uid, project, "project", project, new_name, _notes(created))
        return MintedKey(Secret(value), identity)

    def usage(self, identity: KeyIdentity) -> Usage:
        return Usage((), (NO_PER_KEY_USAGE.format(uid=identity.key_id),))


def display_name(old: str, name: str) -> str:
    """``"{old} ({name})"`` within Google's 63 characters; an earlier ``(cauterize-...)`` suffix is replaced."""
    base = _SUFFIX.sub("", old).strip()
    suffix = f" ({name})" if base else name
    return base[: max(0, _DISPLAY_MAX - len(suffix))].rstrip() + suffix


def describe_restrictions(restrictions: object) -> str:
    """The restrictions in a few words (public data: services, counts of referrers, IPs, apps)."""
    if not isinstance(restrictions, dict) or not restrictions:
        return "unrestricted"
    parts = []
    targets = [t.get("service") for t in restrictions.get("apiTargets") or [] if isinstance(t, dict)]
    if targets:
        parts.append("APIs " + ", ".join(str(t) for t in targets))
    for field, inner, what in (
        ("browserKeyRestrictions", "allowedReferrers", "referrers"),
        ("serverKeyRestrictions", "allowedIps", "IP addresses"),
        ("androidKeyRestrictions", "allowedApplications", "Android apps"),
        ("iosKeyRestrictions", "allowedBundleIds", "iOS apps"),
    ):
        listed = (restrictions.get(field) or {}).get(inner) if isinstance(restrictions.get(field), dict) else None
        if listed:
            parts.append(f"{len(listed)} {what}")
    return "restricted to " + "; ".join(parts) if parts else "unrestricted"


def _notes(metadata: Json) -> tuple[str, ...]:
    shown = metadata.get("displayName") or "(no display name)"
    notes = [f"API key '{shown}', {describe_restrictions(metadata.get('restrictions'))}"]
    if metadata.get("serviceAccountEmail"):
        notes.append(f"bound to the service account {metadata['serviceAccountEmail']}")
    if metadata.get("deleteTime"):
        notes.append(
            f"the key was already deleted at Google ({metadata['deleteTime']}); it can be undeleted until it is purged "
            "30 days after"
        )
    return tuple(notes)


def _name(identity: KeyIdentity) -> str:
    if not is_api_key_identity(identity):
        raise InputError("cannot act on a Google API key without its resource name; identify it first")
    return str(identity.name)


def _by_hand(project: str, restrictions: str) -> str:
    return (
        f"create an API key in project {project} in the Cloud console (APIs & Services > Credentials > Create "
        f"credentials > API key), give it {restrictions}, and paste it into the prompt"
    )
