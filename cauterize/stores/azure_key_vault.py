"""Azure Key Vault secrets, with the official client (``azure-keyvault-secrets``).

``write`` is a composite of these calls (the access-policy secret permission each needs in brackets;
with Azure RBAC, the role "Key Vault Secrets Officer" on the vault or the secret holds them all):

1. ``GET secrets/NAME``: the current version and its value, i.e. the old key [get]
2. ``PUT secrets/NAME``: the new key as a new version, with the current version's ``contentType``
   and ``tags`` (each version has its own) [set]
3. ``GET secrets/NAME``: read back; it must be the version just set and hold the new key's fingerprint
4. ``GET secrets/NAME/versions`` (every page) [list], then ``GET secrets/NAME/VERSION`` for each other
   enabled version: does it hold the old key (compared by fingerprint)?
5. ``PATCH secrets/NAME/VERSION`` with ``attributes.enabled = false`` for each of them [set]. A
   failure here does not fail the write (the new key is in place): those versions are ``lingering``.

Key Vault cannot delete one version (only the whole secret, then purge it), so every disabled
version that held the old key is reported as ``lingering``, as are versions disabled before (they
cannot be read, so they may still hold it). The current version is the most recently *created*
one, whatever its state: disabling the new version alone would leave every reader with 403
``SecretDisabled``. So ``undo`` re-enables the versions the write disabled, sets the previous value
again as a new version (held in memory by the undo only), then disables the version written.
When the current version holds the new key already (a rerun), ``write`` changes nothing.

Credentials: ``DefaultAzureCredential`` (azure-identity: ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/...,
workload or managed identity, ``az login``), or one injected. The client performs Key Vault's
challenge authentication, with ``verify_challenge_resource`` on, and refuses plain http; a private
CA goes in ``REQUESTS_CA_BUNDLE``. Retries are azure-core's (429 and 5xx, ``Retry-After`` honoured),
three at most; every call has a timeout. azure-core errors become ``StoreError`` in ``_Api.call``.
``missing()``/``notes()`` look at the URL and ``DefaultAzureCredential``'s environment, without a call
(``local_readiness``): workload and managed identity and the developer tools are notes.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlparse

from azure.core import exceptions as az
from azure.core.pipeline.policies import RetryPolicy
from azure.keyvault.secrets import KeyVaultSecret, SecretClient

from cauterize.errors import KeySourceError, StoreError
from cauterize.secret import Secret, scrub
from cauterize.stores.base import StoreWrite, register

_POLICY = (
    "Give the identity the secret permissions get, list and set on the vault (access policy), or the role "
    "Key Vault Secrets Officer (Azure RBAC); Key Vault Secrets User is not enough to write."
)
_CREDENTIALS = (
    "Check the Azure credential: DefaultAzureCredential reads AZURE_CLIENT_ID, AZURE_TENANT_ID and "
    "AZURE_CLIENT_SECRET (or a workload / managed identity, or `az login`)."
)
_HINTS = {
    401: _CREDENTIALS,
    403: _POLICY,
    404: "Check vault_url and the secret name in the runbook.",
    429: "Key Vault is throttling cauterize: rerun in a minute.",
}
_REACH = "Check that vault_url is reachable over HTTPS (and REQUESTS_CA_BUNDLE for a private CA), then rerun."


MAX_RETRY_AFTER = 30.0  # seconds: a throttled vault is waited for, an absurd Retry-After is not


class _CappedRetry(RetryPolicy):
    """azure-core's retries, with each ``Retry-After`` wait capped like every other store's."""

    def get_retry_after(self, response: Any) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(MAX_RETRY_AFTER, max(0.0, wait))


def make_client(vault_url: str, credential: Any = None, **options: Any) -> SecretClient:
    """A SecretClient with timeouts and bounded retries; ``DefaultAzureCredential`` unless one is given."""
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    retry = {"retry_total": 3, "retry_backoff_max": 30} | {k: v for k, v in options.items() if k.startswith("retry_")}
    settings = {"connection_timeout": 10, "read_timeout": 30} | {
        k: v for k, v in options.items() if not k.startswith("retry_")}
    return SecretClient(vault_url, credential, retry_policy=_CappedRetry(**retry), **settings)


def local_readiness(what: str, vault_url: str) -> tuple[list[str], list[str]]:
    """``(missing, notes)`` for what ``make_client`` would use: an https vault URL and a credential
    ``DefaultAzureCredential`` finds in the environment (service principal: ``AZURE_TENANT_ID``,
    ``AZURE_CLIENT_ID`` and a secret or a certificate file). Its later sources need a call or a process:
    workload identity, managed identity, ``az``/``azd``/PowerShell logins are a note."""
    env = os.environ
    if urlparse(vault_url).scheme != "https":
        return [f"{what}: vault_url must be the vault's https:// URL (the client refuses plain http)"], []
    chosen = env.get("AZURE_TOKEN_CREDENTIALS", "").strip().lower()  # narrows DefaultAzureCredential's chain
    certificate = env.get("AZURE_CLIENT_CERTIFICATE_PATH")
    if chosen in ("", "prod", "environmentcredential") and env.get("AZURE_TENANT_ID") and env.get("AZURE_CLIENT_ID"):
        if env.get("AZURE_CLIENT_SECRET"):
            return [], []
        if certificate and os.path.isfile(certificate):
            return [], []
        if certificate:
            return [f"{what}: AZURE_CLIENT_CERTIFICATE_PATH names {certificate}, which does not exist: fix it"], []
    return [], [(f"{what}: no Azure service principal in the environment (AZURE_TENANT_ID, AZURE_CLIENT_ID, "
                "AZURE_CLIENT_SECRET): DefaultAzureCredential would try workload or managed identity, then `az login` "
                "and other developer logins (not checked)")]


class _Api:
    def __init__(self, vault_url: str, client: SecretClient | None):
        self.vault_url, self._client = vault_url, client
        self.injected = client is not None

    @property
    def client(self) -> SecretClient:
        if self._client is None:
            self._client = make_client(self.vault_url)
        return self._client

    def call(self, operation: str, what: str, *args: Any, absent: bool = False, **kwargs: Any) -> Any:
        """One client call (list calls: every page); None for a missing or disabled secret if ``absent``."""
        try:
            result = getattr(self.client, operation)(*args, **kwargs)
            return list(result) if operation.startswith("list_") else result
        except az.HttpResponseError as exc:
            status, code, inner = exc.status_code or 0, getattr(exc.error, "code", None), _inner_code(exc)
            if absent and (status == 404 or inner == "SecretDisabled"):
                return None
            message = scrub(" ".join(str(getattr(exc.error, "message", None) or exc.reason or "").split()))[:300]
            text = f"{what}: {operation} failed ({status or type(exc).__name__} {code or ''}".rstrip() + ")"
            hint = _HINTS.get(status, _CREDENTIALS if isinstance(exc, az.ClientAuthenticationError) else None)
            error = StoreError(text + (f": {message}" if message else ""), remediation=hint,
                               retryable=status == 429 or status >= 500)
            raise error from (None if operation == "set_secret" else exc)  # the exception holds the request
        except (az.ServiceRequestError, az.ServiceResponseError) as exc:
            raise StoreError(f"{what}: {operation} failed ({type(exc).__name__})", remediation=_REACH,
                             retryable=True) from None
        except ValueError as exc:  # the client refused the vault's challenge (resource or URL)
            raise StoreError(f"{what}: {operation} refused by the Key Vault client: {exc}",
                             remediation="Check vault_url: it must be the vault's own https:// URL.") from None


class AzureKeyVaultStore:
    kind: ClassVar[str] = "azure-key-vault"

    def __init__(self, vault_url: str, name: str, *, client: SecretClient | None = None):
        self.vault_url, self.name = vault_url.rstrip("/"), name
        self._api = _Api(self.vault_url, client)
        self._where = f"azure-key-vault {urlparse(self.vault_url).netloc or self.vault_url}/{name}"

    def describe(self) -> str:
        return self._where

    def missing(self) -> list[str]:
        """A vault URL the client refuses, or a service principal whose certificate file is gone; no call made."""
        return [] if self._api.injected else local_readiness(self._where, self.vault_url)[0]

    def notes(self) -> list[str]:
        """Credentials only a call or a process could confirm (workload/managed identity, `az login`)."""
        return [] if self._api.injected else local_readiness(self._where, self.vault_url)[1]

    def read(self) -> Secret | None:
        return _value(self._get(), self._where)

    def write(self, value: Secret) -> StoreWrite:
        current = self._get()
        old = _value(current, self._where)
        if current is not None and old == value:  # a rerun after the write: nothing to do, nothing to undo
            same = {"vault_url": self.vault_url, "name": self.name, "unchanged": True}
            return StoreWrite(store=self._where, version=current.properties.version, details=same)
        content_type = current.properties.content_type if current else None
        tags = current.properties.tags if current else None
        written = self._set(value, content_type, tags)
        back = self._get()
        if back is None or back.properties.version != written:  # not ours to undo: someone else's version is current
            raise StoreError(f"{self._where}: another writer changed the current version after {written} was set",
                             remediation="Check who else writes this secret, then rerun.", retryable=True)
        if _fingerprint(back) != value.fingerprint:
            try:
                self._undo(old, content_type, tags, written, [])
                outcome = "undone"
            except StoreError as exc:
                outcome = f"undoing it failed too ({exc.message})"
            raise StoreError(f"{self._where}: the current version does not read back as {written} with the new key; "
                             + outcome, retryable=True)
        holding, unreadable = self._older_holding(old, written) if old else ([], [])
        disabled, failed = [], []
        for version in holding:
            try:
                self._api.call("update_secret_properties", self._where, self.name, version, enabled=False)
                disabled.append(version)
            except StoreError as exc:
                failed.append(f"version {version}: {exc.message}")
        where = self._where
        lingering = [f"{where}: version {v} still holds the old value (disabling it failed)" for v in holding
                     if v not in disabled]
        lingering += [f"{where}: version {v} is disabled but still holds the old value (Key Vault deletes versions "
                      "only with the whole secret)" for v in disabled]
        lingering += [f"{where}: version {v} is disabled and may still hold the old value" for v in unreadable]
        details: dict[str, Any] = {
            "vault_url": self.vault_url,
            "name": self.name,
            "previous_version": current.properties.version if current else None,
            "disabled_versions": disabled,
        }
        if failed:
            details["disable_errors"] = failed
        undo = partial(self._undo, old, content_type, tags, written, disabled)
        return StoreWrite(store=where, version=written, details=details, lingering=lingering, undo=undo)

    def _get(self, version: str | None = None) -> KeyVaultSecret | None:
        return self._api.call("get_secret", self._where, self.name, version, absent=True)

    def _set(self, value: Secret, content_type: str | None, tags: dict[str, str] | None) -> str:
        created = self._api.call("set_secret", self._where, self.name, value.reveal(), content_type=content_type,
                                 tags=tags)
        return created.properties.version

    def _older_holding(self, old: Secret, written: str) -> tuple[list[str], list[str]]:
        """Enabled versions other than ``written`` that hold ``old``, and disabled ones (unreadable)."""
        holding, unreadable = [], []
        listed = self._api.call("list_properties_of_secret_versions", self._where, self.name)
        for properties in sorted(listed, key=lambda p: (p.created_on is None, p.created_on)):
            if properties.version == written:
                continue
            if not properties.enabled:
                unreadable.append(properties.version)
            elif _fingerprint(self._get(properties.version)) == old.fingerprint:
                holding.append(properties.version)
        return holding, unreadable

    def _undo(self, old: Secret | None, content_type: str | None, tags: dict[str, str] | None, written: str,
              disabled: list[str]) -> None:
        """Back to the old value: re-enable ``disabled``, set ``old`` again (the current version must stay
        readable), then disable ``written``."""
        for version in disabled:
            self._api.call("update_secret_properties", self._where, self.name, version, enabled=True)
        if old is not None:
            self._set(old, content_type, tags)
        self._api.call("update_secret_properties", self._where, self.name, written, enabled=False)


def _value(secret: KeyVaultSecret | None, where: str) -> Secret | None:
    if secret is None or not secret.value or not secret.value.strip():
        return None
    try:
        return Secret(secret.value)
    except KeySourceError:
        raise StoreError(f"{where}: version {secret.properties.version} does not hold one key") from None


def _fingerprint(secret: KeyVaultSecret | None) -> str | None:
    found = _value(secret, "azure-key-vault") if secret is not None else None
    return found.fingerprint if found else None


def _inner_code(exc: az.HttpResponseError) -> str | None:
    inner = getattr(exc.error, "innererror", None)
    return inner.get("code") if isinstance(inner, dict) else None


def scan(
    secret: Secret, *, vault_url: str, skipped: list[str] | None = None, client: SecretClient | None = None
) -> list[str]:
    """Every ``VAULT_URL/secrets/NAME`` whose current version is ``secret``. Older versions are not read.
    Needs the secret permissions list and get; a secret that cannot be read raises, unless a ``skipped``
    list is given: its error line goes there and the scan goes on."""
    vault_url = vault_url.rstrip("/")
    api, hits = _Api(vault_url, client), []
    where = f"azure-key-vault {urlparse(vault_url).netloc or vault_url}"
    for properties in api.call("list_properties_of_secrets", where):
        if properties.managed or not properties.enabled:  # certificates' backing secrets; disabled: unreadable
            continue
        try:
            current = _value(api.call("get_secret", f"{where}/{properties.name}", properties.name, absent=True),
                             f"{where}/{properties.name}")
        except StoreError as exc:
            if skipped is None:
                raise
            skipped.append(exc.message)
            continue
        if current is not None and secret.matches(current.reveal()):
            hits.append(f"{vault_url}/secrets/{properties.name}")
    return sorted(hits)


@register("azure-key-vault")
def _from_runbook(config, loaded) -> AzureKeyVaultStore:
    return AzureKeyVaultStore(config.vault_url, config.name)


__all__ = ["AzureKeyVaultStore", "make_client", "scan"]
