"""Google service-account credentials: reading a key file, RS256 JWT assertions, the token exchange.

A service-account key file is JSON (``type``, ``project_id``, ``private_key_id``, ``private_key``,
``client_email``, ...). ``ServiceAccountCredentials.parse`` reads one from a ``Secret`` and says what
is wrong when it is not one, without quoting the file. ``assertion`` signs the JWT of the OAuth 2.0
JWT-bearer grant (RFC 7523) with the file's private key; ``exchange`` posts it to Google's token
endpoint and parses the answer, success or OAuth error. ``AdminAuth`` puts the admin bearer on every
request of an ``httpx.Client``: an access token as given, or one obtained for an admin key file.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cauterize.errors import AdminAuthError, InputError, ProviderRejected
from cauterize.http import DEFAULT_POLICY, RetryPolicy, send
from cauterize.secret import Secret, scrub

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # Google's longest: "a short-lived token (60 minutes)"

_EMAIL = re.compile(r"[^@\s/?#\"]+@[^@\s/?#\"]+")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PROJECT = re.compile(r"[A-Za-z0-9.:_-]{1,128}")
#: other credential files Google tools write, and what they are (named; their content is never quoted)
_OTHER_TYPES = {
    "authorized_user": "a user's OAuth credentials (gcloud auth application-default login)",
    "external_account": "a workload identity federation configuration",
    "external_account_authorized_user": "a workforce identity federation login",
    "impersonated_service_account": "an impersonation configuration",
    "gdch_service_account": "a Google Distributed Cloud service identity",
}


class NotAServiceAccountKey(InputError):
    """The key is not a Google service-account key file (exit 2, like every input error)."""

    remediation = (
        'The google provider takes a service-account key file: JSON with "type": "service_account", client_email, '
        "private_key_id and private_key (IAM > Service accounts > Keys in the Cloud console); check the key source."
    )


@dataclass(frozen=True)
class ServiceAccountCredentials:
    """The public fields of a service-account key file and its private key (never printed)."""

    client_email: str
    private_key_id: str
    project_id: str | None
    private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)

    @classmethod
    def parse(cls, secret: Secret, role: str = "key") -> ServiceAccountCredentials:
        """Read a key file; ``NotAServiceAccountKey`` names the first thing wrong (``role`` names the key)."""
        what = f"the {role} {secret.fingerprint}"
        value = secret.reveal()
        if value.startswith("AIza"):
            raise NotAServiceAccountKey(
                f"{what} is a Google API key (AIza...), not a service-account key file: "
                "the google provider handles service-account keys"
            )
        try:
            data = json.loads(value)
        except ValueError:
            raise NotAServiceAccountKey(f"{what} is not JSON: a service-account key file is a JSON document") from None
        if not isinstance(data, dict):
            raise NotAServiceAccountKey(f"{what} is JSON but not an object")
        kind = data.get("type")
        if kind != "service_account":
            described = _OTHER_TYPES.get(kind, "an unknown type") if isinstance(kind, str) else "missing"
            shown = f"'{kind}', " if kind in _OTHER_TYPES else ""
            raise NotAServiceAccountKey(f'{what} is not a service-account key: its "type" is {shown}{described}')
        missing = [
            name
            for name in ("client_email", "private_key_id", "private_key")
            if not isinstance(data.get(name), str) or not data[name].strip()
        ]
        if missing:
            raise NotAServiceAccountKey(f"{what} is a service-account key file without {', '.join(missing)}")
        project = data.get("project_id")
        for name, pattern, given in (
            ("client_email", _EMAIL, data["client_email"]),
            ("private_key_id", _KEY_ID, data["private_key_id"]),
            ("project_id", _PROJECT, project),
        ):
            if given is not None and (not isinstance(given, str) or not pattern.fullmatch(given)):
                raise NotAServiceAccountKey(f"{what} has a malformed {name}")
        return cls(
            client_email=data["client_email"],
            private_key_id=data["private_key_id"],
            project_id=project or None,
            private_key=_load_private_key(data["private_key"], what),
        )

    def key_name(self) -> str:
        """``projects/{project_id or -}/serviceAccounts/{client_email}/keys/{private_key_id}``: the key's IAM name."""
        return f"projects/{self.project_id or '-'}/serviceAccounts/{self.client_email}/keys/{self.private_key_id}"

    def assertion(self, audience: str, now: datetime | float, scope: str = CLOUD_PLATFORM) -> str:
        """The RS256-signed JWT of the JWT-bearer grant (``kid`` = the key id, ``iss`` = the client email)."""
        issued = int(now.timestamp() if isinstance(now, datetime) else now)
        header = {"alg": "RS256", "typ": "JWT", "kid": self.private_key_id}
        claims = {
            "iss": self.client_email,
            "scope": scope,
            "aud": audience,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}".encode()
        signature = self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64url(signature)}"


@dataclass(frozen=True)
class TokenAnswer:
    """What the token endpoint said: an access token, or an OAuth ``error`` and its description."""

    status: int
    access_token: str | None = field(default=None, repr=False)
    expires_in: int = 0
    error: str | None = None
    description: str = ""


def exchange(
    client: httpx.Client,
    token_url: str,
    assertion: str,
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenAnswer:
    """``POST {token_url}`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``.

    429 and 5xx are retried by ``send`` (``RateLimited``/``ProviderUnavailable`` after the last try)."""
    response = send(
        client,
        "POST",
        token_url,
        what=what,
        policy=policy,
        sleep=sleep,
        data={"grant_type": JWT_BEARER, "assertion": assertion},
    )
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    token = body.get("access_token") if response.status_code == 200 else None
    if isinstance(token, str) and token:
        return TokenAnswer(200, token, _seconds(body.get("expires_in")))
    error = body.get("error")
    description = body.get("error_description") or ""
    return TokenAnswer(
        response.status_code,
        error=error if isinstance(error, str) else None,
        description=clean_message(str(description)),
    )


class AdminAuth(httpx.Auth):
    """``Authorization: Bearer`` for admin calls. The credential is an access token, sent as is, or a
    service-account key file, exchanged with ``fetch`` for a token that is renewed a minute before it expires."""

    def __init__(
        self,
        credential: Secret,
        fetch: Callable[[ServiceAccountCredentials, str], TokenAnswer],
        now: Callable[[], datetime],
        remediation: str,
    ):
        self._credential, self._fetch, self._now, self._remediation = credential, fetch, now, remediation
        self._token: Secret | None = None
        self._renew_at: float | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request

    def token(self) -> str:
        now = self._now().timestamp()
        if self._token is None or (self._renew_at is not None and now >= self._renew_at):
            self._token, self._renew_at = self._obtain(now)
        return self._token.reveal()

    def _obtain(self, now: float) -> tuple[Secret, float | None]:
        credential = self._credential
        if not credential.reveal().startswith("{"):
            if not credential.reveal().isascii() or not credential.reveal().isprintable():
                raise InputError(f"the Google admin token {credential.fingerprint} cannot be sent in an HTTP header")
            return credential, None
        account = ServiceAccountCredentials.parse(credential, role="Google admin credential")
        answer = self._fetch(account, f"Google token for the admin credential {credential.fingerprint}")
        if answer.access_token:
            return Secret(answer.access_token), now + max(answer.expires_in - 60, 0)
        if answer.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
            raise AdminAuthError(
                f"the Google admin credential ({account.client_email}) was refused by the token endpoint "
                f"({answer.error}: {answer.description})",
                remediation=self._remediation,
            )
        raise ProviderRejected(
            f"the Google token endpoint issued no admin token ({answer.status} {answer.error}: {answer.description})"
        )


_TOKENLIKE = re.compile(r"ya29\.[\w.-]+|-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)", re.DOTALL)


def clean_message(text: str) -> str:
    """A provider message fit for an error: access tokens, PEM blocks and live secrets masked, one line."""
    text = scrub(_TOKENLIKE.sub("[redacted]", text))
    return " ".join(text.split())[:300]


def _seconds(value: object) -> int:
    try:
        return max(0, int(str(value)))
    except (TypeError, ValueError):
        return 0


def _load_private_key(pem: str, what: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise NotAServiceAccountKey(f"{what}: its private_key is not a readable PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise NotAServiceAccountKey(f"{what}: its private_key is not an RSA key")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_json(value: dict) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())
