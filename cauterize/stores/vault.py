"""Vault KV version 2 (OpenBao alike): a new version written with check-and-set, every other field kept.

``write`` is a composite of these calls (the policy capability each needs in brackets):

1. ``GET MOUNT/metadata/PATH``: the current version number and every version's state [read]
2. ``GET MOUNT/data/PATH?version=N``: the current data [read on MOUNT/data/PATH]
3. ``POST MOUNT/data/PATH`` with ``cas=N`` (0 for a new path): the data with FIELD replaced, as
   version N+1 [create, update]. If another writer made a version since step 1, Vault refuses it.
4. ``GET MOUNT/data/PATH?version=N+1``: read back; its fingerprint must be the new key's
5. ``GET MOUNT/data/PATH?version=K`` for each older live version: does FIELD hold the old key?
6. ``POST MOUNT/destroy/PATH`` with ``destroy_old_versions``: destroy exactly those versions
   [update on MOUNT/destroy/PATH]; otherwise they are reported as ``lingering``. A failed destroy
   does not fail the write (the new key is in place): the versions stay in ``lingering``.

Soft-deleted versions cannot be read without undeleting them: they are reported as lingering
("may still hold"), never destroyed blindly. KV v2 cannot un-write: ``undo`` writes the previous
data back as a new version (``cas`` = the version written), or destroys the version written when
there was no readable previous version.

``VAULT_ADDR``, ``VAULT_TOKEN`` (or ``~/.vault-token``), ``VAULT_NAMESPACE``, ``VAULT_CACERT``:
the Vault CLI's environment. hvac and requests errors become ``StoreError`` in one place, ``_translated``.
``missing()`` checks what hvac would use for address and token (``VAULT_TOKEN``, else ``~/.vault-token``),
without a call and without reading the token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import hvac
import requests
from hvac import exceptions as hvac_errors

from cauterize.errors import KeySourceError, StoreError
from cauterize.secret import Secret, fingerprint_of
from cauterize.stores.base import StoreWrite, answers_checked, register

ATTEMPTS = 3
#: answers worth another attempt: throttled, down, or the connection broke
_TRANSIENT = (hvac_errors.RateLimitExceeded, hvac_errors.InternalServerError, hvac_errors.BadGateway,
              hvac_errors.VaultDown, requests.ConnectionError)

_STATUS: dict[type[hvac_errors.VaultError], int] = {
    hvac_errors.InvalidRequest: 400,
    hvac_errors.Unauthorized: 401,
    hvac_errors.Forbidden: 403,
    hvac_errors.InvalidPath: 404,
    hvac_errors.RateLimitExceeded: 429,
    hvac_errors.InternalServerError: 500,
    hvac_errors.VaultNotInitialized: 501,
    hvac_errors.BadGateway: 502,
    hvac_errors.VaultDown: 503,
}
_REACH = "Check that VAULT_ADDR (and VAULT_CACERT for TLS) points at a reachable Vault, then rerun."


def policy_hint(mount: str, path: str, *, destroy: bool = False) -> str:
    """The Vault policy a token needs to rotate ``MOUNT/PATH``, as one remediation sentence."""
    rules = [
        f'path "{mount}/data/{path}" {{ capabilities = ["read", "create", "update"] }}',
        f'path "{mount}/metadata/{path}" {{ capabilities = ["read"] }}',
    ]
    if destroy:
        rules.append(f'path "{mount}/destroy/{path}" {{ capabilities = ["update"] }}')
    return f"Check VAULT_TOKEN and VAULT_NAMESPACE; the token's policy needs: {'; '.join(rules)}."


@contextmanager
def _translated(where: str, operation: str, hint: str, cas: int | None = None) -> Iterator[None]:
    """The one place hvac and requests errors become StoreErrors: the path and the HTTP status, never a value."""
    try:
        yield
    except hvac_errors.VaultError as exc:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), None)
        reason = " ".join("; ".join(str(error) for error in exc.errors or []).split())[:200]
        if status == 400 and "check-and-set" in reason:
            raise StoreError(
                f"{where}: another writer changed the secret since it was read (check-and-set on version {cas} failed)",
                remediation="Rerun: cauterize reads the new current version and writes on top of it.",
                retryable=True,
            ) from exc
        if status == 404:
            hint = "Check the mount and path: the mount must be a KV version 2 secrets engine."
        detail = f"HTTP {status}" if status else type(exc).__name__
        retryable = status is not None and status in (429, 500, 502, 503)
        if retryable:
            hint = f"Vault answered {status} (throttled or unavailable) after {ATTEMPTS} attempts: rerun in a minute."
        raise StoreError(
            f"{where}: {operation} failed ({detail}{': ' + reason if reason else ''})",
            remediation=hint,
            retryable=retryable,
        ) from exc
    except requests.RequestException as exc:
        raise StoreError(
            f"{where}: {operation} failed ({type(exc).__name__})", remediation=_REACH, retryable=True
        ) from exc


class _Api:
    """The KV v2 API of an hvac client, made on first use from the Vault environment (or injected)."""

    def __init__(self, client: hvac.Client | None = None, sleep: Callable[[float], None] = time.sleep):
        self._client, self.sleep = client, sleep
        self.injected = client is not None

    def call(self, operation: str, where: str, *, hint: str, missing_ok: bool = False, **params: Any) -> Any:
        """One KV v2 call, e.g. ``call("read_secret_metadata", ...)``; None on 404 if ``missing_ok``.
        hvac does not retry: a throttled call is retried here, and a read after a 5xx or a broken
        connection (a write is not re-sent then: it may have been applied), ATTEMPTS times at most."""
        with _translated(where, operation, hint, params.get("cas")):
            if self._client is None:
                namespace = os.environ.get("VAULT_NAMESPACE") or None
                self._client = hvac.Client(url=os.environ.get("VAULT_ADDR"), namespace=namespace, timeout=15)
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return getattr(self._client.secrets.kv.v2, operation)(**params)
                except hvac_errors.InvalidPath:
                    if missing_ok:
                        return None
                    raise
                except _TRANSIENT as exc:
                    again = operation.startswith("read_") or isinstance(exc, hvac_errors.RateLimitExceeded)
                    if attempt == ATTEMPTS or not again:
                        raise
                    self.sleep(2.0 ** (attempt - 1))
            raise AssertionError("unreachable")  # pragma: no cover


class VaultKv2Store:
    kind: ClassVar[str] = "vault-kv2"

    def __init__(
        self,
        mount: str,
        path: str,
        field: str,
        destroy_old_versions: bool = False,
        *,
        client: hvac.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.mount, self.path, self.field = mount.strip("/"), path.strip("/"), field
        self.destroy_old_versions = destroy_old_versions
        self._api = _Api(client, sleep)
        self._where = f"vault-kv2 {self.mount}/{self.path}"
        self._hint = policy_hint(self.mount, self.path, destroy=destroy_old_versions)

    def describe(self) -> str:
        return f"{self._where} {self.field}"

    def missing(self) -> list[str]:
        """No address or no token where hvac looks for them (no call made, the token is not read)."""
        return [] if self._api.injected else local_missing(self.describe())

    @answers_checked
    def read(self) -> Secret | None:
        return self._secret(self._data())

    @answers_checked
    def write(self, value: Secret) -> StoreWrite:
        metadata = self._kv("read_secret_metadata", missing_ok=True)
        current: int = metadata["data"]["current_version"] if metadata else 0
        versions: dict[str, Any] = metadata["data"]["versions"] if metadata else {}
        previous = self._data(current) if current else None
        old = self._secret(previous)
        written = self._kv(
            "create_or_update_secret", secret={**(previous or {}), self.field: value.reveal()}, cas=current
        )
        new_version: int = written["data"]["version"]
        if self._fingerprint(self._data(new_version)) != value.fingerprint:
            self._restore(previous, new_version)
            raise StoreError(f"{self.describe()}: version {new_version} does not read back as the new key; undone")
        holding, unreadable = self._older_holding(old, versions, current, previous) if old else ([], [])
        details: dict[str, Any] = {
            "mount": self.mount,
            "path": self.path,
            "field": self.field,
            "previous_version": current or None,
            "destroyed_versions": [],
        }
        if holding and self.destroy_old_versions:
            try:
                self._kv("destroy_secret_versions", versions=holding)
                details["destroyed_versions"], holding = holding, []
            except StoreError as exc:
                details["destroy_error"] = exc.one_line()
        lingering = [f"{self._where}: version {number} still holds the old value" for number in holding]
        lingering += [
            f"{self._where}: version {number} is deleted, not destroyed, and may still hold the old value"
            for number in unreadable
        ]
        return StoreWrite(
            store=self.describe(),
            version=str(new_version),
            details=details,
            lingering=lingering,
            undo=lambda: self._restore(previous, new_version),
        )

    def _secret(self, data: dict[str, Any] | None) -> Secret | None:
        found = None if data is None else data.get(self.field)
        if found is not None and not isinstance(found, str):
            raise StoreError(f"{self.describe()}: the field is not a string")
        return Secret(found) if found and found.strip() else None

    def _older_holding(
        self, old: Secret, versions: dict[str, Any], current: int, current_data: dict[str, Any] | None
    ) -> tuple[list[int], list[int]]:
        """Versions up to ``current`` whose field holds ``old``, and those that cannot be read (soft-deleted)."""
        holding, unreadable = [], []
        for number in sorted(int(n) for n, info in versions.items() if not info.get("destroyed") and int(n) <= current):
            data = current_data if number == current else self._data(number)
            if data is None:
                unreadable.append(number)
            elif self._fingerprint(data) == old.fingerprint:
                holding.append(number)
        return holding, unreadable

    def _restore(self, previous: dict[str, Any] | None, written: int) -> None:
        """Undo: the previous data as a new version on top of ``written``; with none, destroy ``written``."""
        if previous is None:
            self._kv("destroy_secret_versions", versions=[written])
        else:
            self._kv("create_or_update_secret", secret=previous, cas=written)

    def _fingerprint(self, data: dict[str, Any] | None) -> str | None:
        found = None if data is None else data.get(self.field)
        return fingerprint_of(found.strip()) if isinstance(found, str) else None

    def _data(self, version: int | None = None) -> dict[str, Any] | None:
        """The data of a version (the current one by default); None when missing, deleted or destroyed."""
        response = self._kv("read_secret_version", missing_ok=True, version=version, raise_on_deleted_version=True)
        return None if response is None else (response["data"]["data"] or {})

    def _kv(self, operation: str, *, missing_ok: bool = False, **params: Any) -> Any:
        return self._api.call(
            operation,
            self._where,
            hint=self._hint,
            missing_ok=missing_ok,
            path=self.path,
            mount_point=self.mount,
            **params,
        )


def scan(
    secret: Secret, *, mount: str = "secret", skipped: list[str] | None = None, client: hvac.Client | None = None
) -> list[str]:
    """Every ``MOUNT/PATH#FIELD`` under the mount (walked recursively) whose current version's field
    is ``secret`` (each usable as a ``vault:`` key source). Older versions are not read.

    Needs ``list`` and ``read`` on ``MOUNT/metadata/*`` and ``read`` on ``MOUNT/data/*``. A path that
    cannot be read raises, unless a ``skipped`` list is given: its error line goes there and the walk goes on.
    """
    api, mount = _Api(client), mount.strip("/")
    hint = (
        f'Check VAULT_TOKEN; the token\'s policy needs path "{mount}/metadata/*" {{ capabilities = ["list"] }} '
        f'and path "{mount}/data/*" {{ capabilities = ["read"] }}.'
    )
    hits: list[str] = []
    folders = [""]
    while folders:
        folder = folders.pop()
        listing = api.call(
            "list_secrets", f"vault-kv2 {mount}/{folder}", hint=hint, missing_ok=True, path=folder, mount_point=mount
        )
        for key in listing["data"]["keys"] if listing else []:
            if key.endswith("/"):
                folders.append(folder + key)
                continue
            try:
                response = api.call(
                    "read_secret_version",
                    f"vault-kv2 {mount}/{folder}{key}",
                    hint=hint,
                    missing_ok=True,
                    path=folder + key,
                    mount_point=mount,
                    raise_on_deleted_version=True,
                )
            except StoreError as exc:
                if skipped is None:
                    raise
                skipped.append(exc.message)
                continue
            data = (response["data"]["data"] or {}) if response else {}
            hits += [
                f"{mount}/{folder}{key}#{name}"
                for name, item in data.items()
                if isinstance(item, str) and secret.matches(item)
            ]
    return sorted(hits)


def local_missing(what: str) -> list[str]:
    """What hvac would lack here: ``VAULT_ADDR`` (hvac would fall back to http://localhost:8200), and a
    token: ``VAULT_TOKEN``, else a non-empty, readable ``~/.vault-token`` (hvac reads no token helper)."""
    missing = []
    if not os.environ.get("VAULT_ADDR"):
        missing.append(f"{what}: VAULT_ADDR is not set: set it to the Vault server's address (https://HOST:8200)")
    if not os.environ.get("VAULT_TOKEN"):
        token_file = os.path.expanduser("~/.vault-token")
        try:
            readable = os.path.isfile(token_file) and os.path.getsize(token_file) > 0 and os.access(token_file, os.R_OK)
        except OSError:
            readable = False
        if not readable:
            missing.append(f"{what}: no Vault token: set VAULT_TOKEN, or log in (`vault login` writes {token_file})")
    return missing


def resolve_reference(target: str) -> Secret:
    """The key behind a ``vault:MOUNT/PATH#FIELD`` key source; the mount is the first path segment."""
    location, _, field = target.partition("#")
    mount, _, path = location.strip("/").partition("/")
    if not (mount and path and field):
        raise KeySourceError("key source vault: must name MOUNT/PATH#FIELD, e.g. vault:secret/openai#OPENAI_API_KEY")
    value = VaultKv2Store(mount, path, field).read()
    if value is None:
        hint = "Check the mount, path and field, and VAULT_ADDR / VAULT_NAMESPACE."
        raise KeySourceError(f"key source vault:{target}: no such secret or field", remediation=hint)
    return value


@register("vault-kv2")
def _from_runbook(config, loaded) -> VaultKv2Store:
    return VaultKv2Store(config.mount, config.path, config.field, config.destroy_old_versions)
