"""A faithful local emulator of the Azure Key Vault secrets REST surface that cauterize uses.

    PUT   /secrets/{name}                  set: a new version (``value``, ``contentType``, ``tags``, ``attributes``)
    GET   /secrets/{name}[/{version}]      get a version, the current one without a version; 403 when disabled
    PATCH /secrets/{name}[/{version}]      update a version's ``attributes`` (``enabled``), ``contentType``, ``tags``
    GET   /secrets/{name}/versions         list versions (``maxresults`` 1-25, ``nextLink`` paging)
    GET   /secrets                         list secrets, each with its current version's attributes

Every request needs ``api-version``. As Key Vault does: names are case-insensitive; the current
version is the most recently *created* one, whatever its state, so getting it once disabled is
403 ``Forbidden`` / ``SecretDisabled``; an update answers without the value; times are Unix seconds.

Auth is Key Vault's challenge flow, which the official client performs: a request without a token
(the client's first, sent without its body) is 401 with ``WWW-Authenticate: Bearer
authorization="https://login.microsoftonline.com/{tenant}", resource="{resource}"``; the client
then asks its credential for a token for ``{resource}/.default`` and sends the request again.
``resource`` is, as for a real vault, the DNS suffix of the vault's host (``myvault.vault.azure.net``
-> ``https://vault.azure.net``); for ``127.0.0.1:PORT`` that rule gives ``https://0.0.1:PORT``, which
passes the client's ``verify_challenge_resource`` check, so tests keep that check on. Tokens come
from ``add_token(permissions)`` (access-policy secret permissions ``get``, ``list``, ``set``); a
token lacking one gets 403 ``Forbidden`` / ``AccessDenied``. Errors are ``{"error": {code, message,
innererror?}}``; ``fail_next`` injects them (429 ``Throttled`` carries ``Retry-After``).

The client refuses bearer tokens over plain http, so ``serve_tls`` serves a handler over HTTPS with
a certificate from ``make_tls_files`` (a throwaway CA and a leaf for 127.0.0.1 and localhost):

    vault = AzureKeyVaultEmulator()
    token = vault.add_token()
    with serve_tls(vault, make_tls_files(tmp_path)) as app: ...  # SecretClient(app.url, ..., connection_verify=ca)
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cauterize.sandbox.openai import RecordedRequest
from cauterize.sandbox.server import Handler, ServedApp, _bridge

Body = dict[str, Any]
API_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_S = r"^/secrets/(?P<name>[^/]+)"
_ROUTES = [  # method, path, handler, the access-policy permission it needs
    ("GET", re.compile(r"^/secrets/?$"), "_list_secrets", "list"),
    ("GET", re.compile(_S + r"/versions/?$"), "_list_versions", "list"),
    ("PUT", re.compile(_S + r"/?$"), "_set", "set"),
    ("GET", re.compile(_S + r"(?:/(?P<version>[0-9a-fA-F]*))?$"), "_get", "get"),
    ("PATCH", re.compile(_S + r"(?:/(?P<version>[0-9a-fA-F]*))?$"), "_update", "set"),
]
_FAULTS = {
    401: ("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
    403: ("Forbidden", "Access denied."),
    429: ("Throttled", "Request was not processed because too many requests were received."),
    500: ("InternalServerError", "An internal server error occurred."),
    503: ("ServiceUnavailable", "The service is unavailable."),
}


@dataclass
class Version:
    id: str
    value: str
    created: int
    updated: int
    enabled: bool = True
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class StoredSecret:
    name: str
    versions: list[Version] = field(default_factory=list)  # oldest first


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


class VaultError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers: dict[str, str] = {}

    def response(self) -> httpx.Response:
        error: Body = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return httpx.Response(self.status, json={"error": error}, headers=self.headers)


class AzureKeyVaultEmulator:
    """In-memory secrets and versions behind an ``httpx`` handler (``httpx.MockTransport(emulator)``)."""

    def __init__(
        self, *, now: Callable[[], datetime] | None = None, tenant_id: str | None = None,
        resource: str | None = None, page_size: int = 25,
    ):
        self._clock = now or (lambda: datetime.now(UTC))
        self.tenant_id = tenant_id or "72f988bf-0000-4000-8000-" + secrets.token_hex(6)
        self.resource, self.page_size = resource, page_size  # resource None: the vault host's DNS suffix
        self.secrets: dict[str, StoredSecret] = {}  # by lower-cased name
        self.tokens: dict[str, frozenset[str] | None] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # ---- seeding and assertions --------------------------------------------------------------

    def add_token(self, permissions: Iterable[str] | None = None) -> str:
        """A bearer token with secret permissions (``get``, ``list``, ``set``); all of them if None."""
        token = "eyJ0eXAi." + secrets.token_urlsafe(32)
        self.tokens[token] = None if permissions is None else frozenset(permissions)
        return token

    def add_secret(self, name: str, value: str, *, enabled: bool = True, content_type: str | None = None,
                   tags: dict[str, str] | None = None) -> str:
        """A new version of ``name`` (created if needed); returns its version id."""
        with self._lock:
            stored = self.secrets.setdefault(name.lower(), StoredSecret(name))
            now = self._now()
            version = Version(secrets.token_hex(16), value, now, now, enabled, content_type, dict(tags or {}))
            stored.versions.append(version)
            return version.id

    def version(self, name: str, version: str = "") -> Version:
        """A version (the current one by default), for test assertions."""
        return self._version(name, version)

    def fail_next(self, method: str, path_pattern: str, status: int = 429, retry_after: int | None = 1,
                  count: int = 1, message: str | None = None) -> None:
        """Answer the next ``count`` authenticated requests matching ``method`` (or ``*``) and the path glob."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message))

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or fnmatch.fnmatchcase(r.path, path))
        ]

    # ---- the handler -------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            headers = {k.lower(): v for k, v in request.headers.items()}
            recorded = RecordedRequest(request.method, request.url.path, request.url.query.decode(), headers,
                                       request.read())
            self.requests.append(recorded)
            try:
                return self._dispatch(recorded)
            except VaultError as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        base = "https://" + request.headers.get("host", "vault.local")
        for method, pattern, handler, permission in _ROUTES:
            match = pattern.match(request.path)
            if match and method == request.method:
                self._authorize(request, permission, base)
                self._inject_fault(request)
                version = request.params.get("api-version")
                if version not in API_VERSIONS:
                    raise VaultError(400, "BadParameter", f"The specified version ({version}) is not recognized. "
                                     f"Consider using the latest supported version ({API_VERSIONS[-1]}).")
                return httpx.Response(200, json=getattr(self, handler)(request, base, **match.groupdict()))
        raise VaultError(404, "NotFound", f"The requested resource {request.path} was not found.")

    def _authorize(self, request: RecordedRequest, permission: str, base: str) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            missing = not token.strip()
            error = VaultError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token." if missing
                               else "AKV10032: Invalid issuer. The token was not issued for this vault.")
            resource = self.resource or "https://" + base.removeprefix("https://").split(".", 1)[-1]
            error.headers["www-authenticate"] = (
                f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", resource="{resource}"'
            )
            raise error
        allowed = self.tokens[token.strip()]
        if allowed is not None and permission not in allowed:
            vault = base.removeprefix("https://").split(".")[0]
            raise VaultError(403, "Forbidden", f"The user, group or application 'appid=cauterize;iss=https://sts."
                             f"windows.net/{self.tenant_id}/' does not have secrets {permission} permission on key "
                             f"vault '{vault};location=westeurope'.", "AccessDenied")

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining > 0 and matches:
                fault.remaining -= 1
                code, message = _FAULTS.get(fault.status, ("Error", "Injected error."))
                error = VaultError(fault.status, code, fault.message or message)
                if fault.status == 429 and fault.retry_after is not None:
                    error.headers["retry-after"] = str(fault.retry_after)
                raise error

    # ---- routes --------------------------------------------------------------------------------

    def _set(self, request: RecordedRequest, base: str, name: str) -> Body:
        if not _NAME.match(name):
            raise VaultError(400, "BadParameter", f"The request URI contains an invalid name: {name}")
        body = _json_body(request)
        if not isinstance(body.get("value"), str):
            raise VaultError(400, "BadParameter", "Property 'value' is required and must be a string.")
        attributes = body.get("attributes") or {}
        version_id = self.add_secret(name, body["value"], enabled=attributes.get("enabled", True) is not False,
                                     content_type=body.get("contentType"), tags=body.get("tags"))
        return self._bundle(base, self.secrets[name.lower()], self._version(name, version_id), value=True)

    def _get(self, request: RecordedRequest, base: str, name: str, version: str | None = None) -> Body:
        found = self._version(name, version or "")
        if not found.enabled:
            raise VaultError(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return self._bundle(base, self.secrets[name.lower()], found, value=True)

    def _update(self, request: RecordedRequest, base: str, name: str, version: str | None = None) -> Body:
        found, body = self._version(name, version or ""), _json_body(request)
        attributes = body.get("attributes") or {}
        if "enabled" in attributes:
            found.enabled = bool(attributes["enabled"])
        if "contentType" in body:
            found.content_type = body["contentType"]
        if "tags" in body:
            found.tags = dict(body["tags"] or {})
        found.updated = self._now()
        return self._bundle(base, self.secrets[name.lower()], found, value=False)

    def _list_versions(self, request: RecordedRequest, base: str, name: str) -> Body:
        stored = self._stored(name)
        items = [self._bundle(base, stored, v, value=False) for v in stored.versions]
        return self._page(request, base, items)

    def _list_secrets(self, request: RecordedRequest, base: str) -> Body:
        items = []
        for stored in sorted(self.secrets.values(), key=lambda s: s.name.lower()):
            item = self._bundle(base, stored, stored.versions[-1], value=False)
            items.append({**item, "id": f"{base}/secrets/{stored.name}"})
        return self._page(request, base, items)

    # ---- objects -------------------------------------------------------------------------------

    def _stored(self, name: str) -> StoredSecret:
        stored = self.secrets.get(name.lower())
        if stored is None or not stored.versions:
            raise VaultError(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault. "
                             "If you recently deleted this secret you may be able to recover it using the correct "
                             "recovery command. For help resolving this issue, please see "
                             "https://go.microsoft.com/fwlink/?linkid=2125182")
        return stored

    def _version(self, name: str, version: str) -> Version:
        stored = self._stored(name)
        if not version:
            return stored.versions[-1]
        found = next((v for v in stored.versions if v.id == version.lower()), None)
        if found is None:
            raise VaultError(404, "SecretNotFound", f"A secret with (name/id) {name}/{version} was not found in this "
                             "key vault. For help resolving this issue, please see "
                             "https://go.microsoft.com/fwlink/?linkid=2125182")
        return found

    def _page(self, request: RecordedRequest, base: str, items: list[Body]) -> Body:
        params = request.params
        try:
            size = int(params.get("maxresults") or self.page_size)
            start = int(params.get("$skiptoken") or 0)
        except ValueError:
            raise VaultError(400, "BadParameter", "Invalid maxresults or $skiptoken.") from None
        if not 1 <= size <= 25:
            raise VaultError(400, "BadParameter", "maxresults must be between 1 and 25.")
        end = start + size
        next_link = None
        if end < len(items):
            next_link = (f"{base}{request.path}?api-version={params.get('api-version')}&$skiptoken={end}"
                         f"&maxresults={size}")
        return {"value": items[start:end], "nextLink": next_link}

    def _bundle(self, base: str, stored: StoredSecret, version: Version, *, value: bool) -> Body:
        body: Body = {
            "id": f"{base}/secrets/{stored.name}/{version.id}",
            "attributes": {"enabled": version.enabled, "created": version.created, "updated": version.updated,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
        }
        if value:
            body["value"] = version.value
        if version.content_type is not None:
            body["contentType"] = version.content_type
        if version.tags:
            body["tags"] = version.tags
        return body

    def _now(self) -> int:
        return int(self._clock().timestamp())


def _json_body(request: RecordedRequest) -> Body:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise VaultError(400, "BadParameter", "The request body is not a JSON object.")
    return body


# ---- HTTPS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the certificate clients trust (``connection_verify``, ``REQUESTS_CA_BUNDLE``)
    cert: Path  # the server's certificate, issued by ``ca``
    key: Path


def make_tls_files(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """A throwaway CA and a server certificate for ``hosts``, valid for a day, written to ``directory``."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cauterize sandbox CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "sandbox-ca.pem", directory / "sandbox-cert.pem", directory / "sandbox-key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class _TlsServer(ThreadingHTTPServer):
    """The handshake happens in each connection's thread, so a silent client cannot stall ``accept``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler_class: Any, context: ssl.SSLContext):
        super().__init__(address, handler_class)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(10)
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


def serve_tls(handler: Handler, tls: TlsFiles, host: str = "127.0.0.1") -> ServedApp:
    """``serve`` over HTTPS: ``handler`` on ``https://host:PORT`` with ``tls``'s certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server = _TlsServer((host, 0), _bridge(handler), context)
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05),
                              name=f"sandbox-tls-{server.server_address[1]}", daemon=True)
    thread.start()
    return ServedApp(f"https://{host}:{server.server_address[1]}", server, thread)


__all__ = ["API_VERSIONS", "AzureKeyVaultEmulator", "TlsFiles", "VaultError", "make_tls_files", "serve_tls"]
