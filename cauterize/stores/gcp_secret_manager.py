"""Google Cloud Secret Manager, with the official client (``google-cloud-secret-manager``) over REST.

``write`` is a composite of these calls (the IAM permission each needs in brackets; the roles
``secretmanager.secretVersionManager`` and ``secretmanager.secretAccessor`` on the secret hold them all):

1. ``GET versions/latest:access``: the current value, i.e. the old key [secretmanager.versions.access]
2. ``POST secrets/S:addVersion``: the new key as a new version, with its CRC32C [secretmanager.versions.add]
3. ``GET versions/latest:access``: read back; it must be the version just added, hold the new key's
   fingerprint and match its CRC32C
4. ``GET secrets/S/versions`` (every page) [secretmanager.versions.list], then ``versions/N:access`` for
   each other ENABLED version: does it hold the old key (compared by fingerprint)?
5. ``POST versions/N:disable`` for each of them, or ``:destroy`` with ``destroy_old_versions``
   [secretmanager.versions.disable / .destroy]. A failure here does not fail the write (the new key
   is in place): those versions are reported as ``lingering``, as are versions disabled before
   (they cannot be read, so they may still hold it).

``latest`` is the most recently *created* version, whatever its state: disabling the new version
alone would leave every reader of ``latest`` with FAILED_PRECONDITION. So ``undo`` re-enables the
versions the write disabled, adds the previous value again as a new version (held in memory by
the undo only), then disables the version written. When ``latest`` holds the new key already (a
rerun), ``write`` changes nothing. The secret must exist: cauterize adds versions, it does not
choose a replication policy for a new secret.

Endpoint: the runbook's ``endpoint``, else gcloud's ``CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER``,
else Google's. Credentials: gcloud's ``CLOUDSDK_AUTH_ACCESS_TOKEN`` (an access token), else
Application Default Credentials. Each call has a timeout; 429 (``Retry-After`` honoured, capped)
and 5xx are retried, except that addVersion is not re-sent after a 5xx. ``google.api_core``,
``google.auth`` and ``requests`` errors become ``StoreError`` in ``_Api.call``.
``missing()``/``notes()`` follow those credentials (``local_readiness``) without a call: the GCE
metadata server, ADC's last resort, is a note.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import google.auth
import requests
from google.api_core import exceptions as core
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_errors
from google.cloud import secretmanager_v1 as sm
from google.oauth2.credentials import Credentials
from google.protobuf import json_format

from cauterize.errors import KeySourceError, StoreError
from cauterize.secret import Secret, scrub
from cauterize.stores.base import StoreWrite, answers_checked, register

ENDPOINT_ENV = "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER"
TOKEN_ENV = "CLOUDSDK_AUTH_ACCESS_TOKEN"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TIMEOUT = 30.0
ATTEMPTS = 4
_ROLES = (
    "Grant the identity roles/secretmanager.secretVersionManager (add, list, disable, enable, destroy) and "
    "roles/secretmanager.secretAccessor (access) on the secret; roles/secretmanager.viewer on the project to scan."
)
_CREDENTIALS = (
    f"Set {TOKEN_ENV}, or set up Application Default Credentials "
    "(GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`)."
)
_HINTS = {
    401: _CREDENTIALS,
    403: _ROLES,
    404: "Check the project and secret in the runbook: cauterize adds versions to an existing secret "
    "(create it with `gcloud secrets create NAME --replication-policy=automatic`).",
    429: "Secret Manager is rate limiting cauterize: rerun in a minute.",
}
_REACH = "Check connectivity to Secret Manager (and the endpoint override, if set), then rerun."
_ENABLED, _DISABLED = sm.SecretVersion.State.ENABLED, sm.SecretVersion.State.DISABLED


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), the checksum Secret Manager keeps for each payload (``dataCrc32c``)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc_entry(index: int) -> int:
    for _ in range(8):
        index = (index >> 1) ^ 0x82F63B78 if index & 1 else index >> 1
    return index


_CRC_TABLE = [_crc_entry(i) for i in range(256)]


def make_client(endpoint: str | None = None, credentials: Any = None) -> sm.SecretManagerServiceClient:
    """A REST client for ``endpoint`` (or the environment's, or Google's) with the environment's credentials."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    if credentials is None and os.environ.get(TOKEN_ENV):
        credentials = Credentials(token=os.environ[TOKEN_ENV])
    if credentials is None:
        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
        except auth_errors.DefaultCredentialsError:
            raise StoreError("gcp-secret-manager: no Google credentials found", remediation=_CREDENTIALS) from None
    options = ClientOptions(api_endpoint=endpoint.rstrip("/")) if endpoint else None
    return sm.SecretManagerServiceClient(credentials=credentials, transport="rest", client_options=options)


def local_readiness(what: str) -> tuple[list[str], list[str]]:
    """``(missing, notes)`` for the credentials ``make_client`` would use, as ``google.auth.default``
    finds them, without reading them: ``CLOUDSDK_AUTH_ACCESS_TOKEN``, ``GOOGLE_APPLICATION_CREDENTIALS``
    (the file must exist), gcloud's ADC file; else only the metadata server is left (unless ``NO_GCE_CHECK``)."""
    from google.auth import _cloud_sdk, environment_vars

    if os.environ.get(TOKEN_ENV):
        return [], []
    explicit = os.environ.get(environment_vars.CREDENTIALS)
    if explicit:
        if os.path.isfile(explicit):
            return [], []
        return [f"{what}: GOOGLE_APPLICATION_CREDENTIALS names {explicit}, which does not exist: fix it or unset it"], []
    if os.path.isfile(_cloud_sdk.get_application_default_credentials_path()):
        return [], []
    remedy = f"set {TOKEN_ENV} or GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`"
    if os.environ.get(environment_vars.NO_GCE_CHECK) == "true":
        return [f"{what}: no Google credentials found (and NO_GCE_CHECK rules out the metadata server): {remedy}"], []
    return [], [f"{what}: Google credentials not found locally (the GCE metadata server not checked): {remedy}"]


class _Api:
    """One Secret Manager client, made on first use (or injected), and the one place errors are translated."""

    def __init__(self, endpoint: str | None, client: Any, sleep: Callable[[float], None]):
        self._endpoint, self._client, self.sleep = endpoint, client, sleep
        self.injected = client is not None

    def call(
        self, operation: str, what: str, *, resend: bool = True, absent: tuple[str, ...] = (), **request: Any
    ) -> Any:
        """``operation`` (a client method) with ``request``; None when Google answers a status in ``absent``.
        ``resend=False``: no retry after a 5xx or a broken connection (the call may have been applied)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if self._client is None:
                    self._client = make_client(self._endpoint)
                result = getattr(self._client, operation)(request=request, retry=None, timeout=TIMEOUT)
                return list(result) if operation.startswith("list_") else result  # every page
            except core.GoogleAPICallError as exc:
                code, error = exc.code or 0, _error_body(exc)
                status = error.get("status")
                if status in absent:
                    return None
                if attempt < ATTEMPTS and (code == 429 or (resend and code >= 500)):
                    self.sleep(_wait(exc, attempt))
                    continue
                message = scrub(" ".join(str(error.get("message") or exc.message or "").split()))[:300]
                text = f"{what}: {operation} failed ({status or code}{': ' + message if message else ''})"
                hint = _HINTS.get(code, StoreError.remediation)
                failure = StoreError(text, remediation=hint, retryable=code == 429 or code >= 500)
                raise failure from (None if "payload" in request else exc)  # the exception holds the request
            except (auth_errors.TransportError, requests.RequestException) as exc:
                if attempt < ATTEMPTS and resend:
                    self.sleep(_wait(None, attempt))
                    continue
                raise StoreError(f"{what}: {operation} failed ({type(exc).__name__})", remediation=_REACH,
                                 retryable=True) from None
            except json_format.ParseError:  # a 200 that is not Secret Manager's JSON (a proxy's page?)
                raise StoreError(f"{what}: {operation} got an answer it cannot read", remediation=_REACH,
                                 retryable=True) from None
            except auth_errors.GoogleAuthError as exc:
                raise StoreError(f"{what}: {operation} failed: the Google credentials were refused "
                                 f"({type(exc).__name__})", remediation=_CREDENTIALS) from None
        raise AssertionError("unreachable")  # pragma: no cover


class GcpSecretManagerStore:
    kind: ClassVar[str] = "gcp-secret-manager"

    def __init__(
        self,
        project: str,
        secret: str,
        destroy_old_versions: bool = False,
        *,
        endpoint: str | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.project, self.secret, self.destroy_old_versions = project, secret, destroy_old_versions
        self._api = _Api(endpoint, client, sleep)
        self._parent = f"projects/{project}/secrets/{secret}"

    def describe(self) -> str:
        return f"gcp-secret-manager {self._parent}"

    def missing(self) -> list[str]:
        """No Google credentials where ``make_client`` looks (no call made, none read)."""
        return [] if self._api.injected else local_readiness(self.describe())[0]

    def notes(self) -> list[str]:
        """Credentials only the GCE metadata server could give (not asked here)."""
        return [] if self._api.injected else local_readiness(self.describe())[1]

    @answers_checked
    def read(self) -> Secret | None:
        current = _access(self._api, f"{self._parent}/versions/latest", self.describe())
        return None if current is None else current[1]

    @answers_checked
    def write(self, value: Secret) -> StoreWrite:
        previous = _access(self._api, f"{self._parent}/versions/latest", self.describe())
        old = previous[1] if previous else None
        if previous is not None and old == value:  # a rerun after the write: nothing to do, nothing to undo
            same = {"project": self.project, "secret": self.secret, "unchanged": True}
            return StoreWrite(store=self.describe(), version=previous[0], details=same)
        data = value.reveal().encode()
        payload = {"data": data, "data_crc32c": crc32c(data)}
        added = self._api.call("add_secret_version", self.describe(), resend=False, parent=self._parent,
                               payload=payload)
        written = _version_id(added.name)
        current = _access(self._api, f"{self._parent}/versions/latest", self.describe())
        if current is None or current[0] != written:  # not ours to undo: someone else's version is latest now
            raise StoreError(f"{self.describe()}: another writer changed latest after version {written} was added",
                             remediation="Check who else writes this secret, then rerun.", retryable=True)
        if current[1].fingerprint != value.fingerprint:
            raise StoreError(f"{self.describe()}: latest does not read back as version {written} with the new key; "
                             + _undone(partial(self._undo, old, written, [])), retryable=True)
        holding, unreadable = self._older_holding(old, written) if old else ([], [])
        verb = "destroy" if self.destroy_old_versions else "disable"
        done, failed = [], []
        for number in holding:
            try:
                self._api.call(f"{verb}_secret_version", self.describe(), name=f"{self._parent}/versions/{number}")
                done.append(number)
            except StoreError as exc:
                failed.append(f"version {number}: {exc.message}")
        where = self.describe()
        lingering = [f"{where}: version {n} still holds the old value ({verb} failed)" for n in holding if n not in done]
        if not self.destroy_old_versions:
            lingering += [f"{where}: version {n} is disabled, not destroyed, and still holds the old value" for n in done]
        lingering += [f"{where}: version {n} is disabled and may still hold the old value" for n in unreadable]
        details: dict[str, Any] = {
            "project": self.project,
            "secret": self.secret,
            "previous_version": previous[0] if previous else None,
            "destroyed_versions" if self.destroy_old_versions else "disabled_versions": done,
        }
        if failed:
            details[f"{verb}_errors"] = failed
        disabled = [] if self.destroy_old_versions else done
        undo = partial(self._undo, old, written, disabled)
        return StoreWrite(store=where, version=written, details=details, lingering=lingering, undo=undo)

    def _older_holding(self, old: Secret, written: str) -> tuple[list[str], list[str]]:
        """ENABLED versions other than ``written`` that hold ``old``, and DISABLED ones (unreadable)."""
        holding, unreadable = [], []
        for version in self._api.call("list_secret_versions", self.describe(), parent=self._parent):
            number = _version_id(version.name)
            if number == written:
                continue
            if version.state == _DISABLED:
                unreadable.append(number)
            elif version.state == _ENABLED:
                found = _access(self._api, f"{self._parent}/versions/{number}", self.describe())
                if found is not None and found[1].fingerprint == old.fingerprint:
                    holding.append(number)
        return sorted(holding, key=int), sorted(unreadable, key=int)

    def _undo(self, old: Secret | None, written: str, disabled: list[str]) -> None:
        """Back to the old value: re-enable ``disabled``, add ``old`` again (``latest`` must stay readable),
        then disable ``written``."""
        for number in disabled:
            self._api.call("enable_secret_version", self.describe(), name=f"{self._parent}/versions/{number}")
        if old is not None:
            data = old.reveal().encode()
            self._api.call("add_secret_version", self.describe(), resend=False, parent=self._parent,
                           payload={"data": data, "data_crc32c": crc32c(data)})
        self._api.call("disable_secret_version", self.describe(), name=f"{self._parent}/versions/{written}")


def _undone(undo: Callable[[], None]) -> str:
    """Run the undo of a failed write; how that went, for the error raised."""
    try:
        undo()
    except StoreError as exc:
        return f"undoing it failed too ({exc.message})"
    return "undone"


def _access(api: _Api, name: str, what: str) -> tuple[str, Secret] | None:
    """``(version id, value)`` of a version, or None when it is missing, disabled, destroyed or empty."""
    response = api.call("access_secret_version", what, absent=("NOT_FOUND", "FAILED_PRECONDITION"), name=name)
    if response is None:
        return None
    data = response.payload.data
    if "data_crc32c" in response.payload and response.payload.data_crc32c != crc32c(data):
        raise StoreError(f"{what}: the payload of {_version_id(response.name)} failed its CRC32C check",
                         remediation="The data was corrupted on the way: rerun.", retryable=True)
    try:
        text = data.decode("utf-8")
        return (_version_id(response.name), Secret(text)) if text.strip() else None
    except (UnicodeDecodeError, KeySourceError):
        raise StoreError(f"{what}: version {_version_id(response.name)} is not one UTF-8 key") from None


def scan(
    secret: Secret,
    *,
    project: str,
    skipped: list[str] | None = None,
    endpoint: str | None = None,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Every ``projects/PROJECT/secrets/NAME`` whose ``latest`` version is ``secret``. Older versions are
    not read. Needs secretmanager.secrets.list on the project and versions.access on each secret; a
    secret that cannot be read raises, unless a ``skipped`` list is given: its error line goes there."""
    api, hits = _Api(endpoint, client, sleep), []
    for found in api.call("list_secrets", f"gcp-secret-manager projects/{project}", parent=f"projects/{project}"):
        name = f"projects/{project}/secrets/{_version_id(found.name)}"
        try:
            current = _access(api, f"{name}/versions/latest", f"gcp-secret-manager {name}")
        except StoreError as exc:
            if skipped is None:
                raise
            skipped.append(exc.message)
            continue
        if current is not None and secret.matches(current[1].reveal()):
            hits.append(name)
    return sorted(hits)


def _version_id(name: str) -> str:
    """The last segment of a resource name: answers name the project by number, not by id."""
    return name.rsplit("/", 1)[-1]


def _error_body(exc: core.GoogleAPICallError) -> dict[str, Any]:
    """Google's ``error`` object (``status`` such as ``NOT_FOUND``, ``message``), from the answer's body."""
    try:
        error = exc.response.json()["error"]  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError, ValueError):
        return {}
    return error if isinstance(error, dict) else {}


def _wait(exc: core.GoogleAPICallError | None, attempt: int) -> float:
    default = 0.5 * 2 ** (attempt - 1)
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return min(30.0, max(0.0, float(headers.get("Retry-After", default))))
    except (TypeError, ValueError):
        return default


@register("gcp-secret-manager")
def _from_runbook(config, loaded) -> GcpSecretManagerStore:
    destroy = getattr(config, "destroy_old_versions", False)
    return GcpSecretManagerStore(config.project, config.secret, destroy, endpoint=getattr(config, "endpoint", None))


__all__ = ["GcpSecretManagerStore", "crc32c", "make_client", "scan"]
