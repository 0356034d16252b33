"""Google's REST conventions, shared by the google provider's clients (IAM, API Keys, Org Policy, Monitoring).

``GoogleAPI._call`` is the one boundary where an answer becomes JSON or a cauterize error. Google's
envelope is ``{"error": {code, message, status, details}}`` (cloud.google.com/apis/design/errors);
``error_for`` maps it:

    401, UNAUTHENTICATED                              AdminAuthError
    403 PERMISSION_DENIED naming an IAM permission    MissingPermission(permission=...): the
        (ErrorInfo ``metadata.permission``, or        credential is valid but may not do this
        "Permission 'a.b.c' denied" in the message)
    403 SERVICE_DISABLED (the API is off)             ProviderRejected: enable the API
    any other 403                                     AdminAuthError
    404                                               the caller's ``not_found`` (KeyNotFound...)
    any other 4xx                                     GoogleRejected (a ProviderRejected keeping
                                                      Google's status and PreconditionFailure
                                                      violations for the caller to read)

429 and 5xx are retried by ``cauterize.http.send`` first. A long-running Operation (``{name, done,
error?, response?}``) is polled by ``wait_operation``, boundedly; its ``error`` (a ``google.rpc.Status``
with a numeric code) goes through the same mapping. Messages are cleaned: no token, PEM block, live
secret or API-key-shaped string survives, and no URL is quoted (a lookup by key string carries the key
in its query).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from cauterize.errors import (
    AdminAuthError,
    MissingPermission,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from cauterize.http import DEFAULT_POLICY, RetryPolicy, json_object, send
from cauterize.providers.google_auth import clean_message

Json = dict[str, Any]

#: an API-key-shaped string (gitleaks gcp-api-key is AIza + 35); masked in every message
API_KEYLIKE = re.compile(r"AIza[0-9A-Za-z_-]{8,}")
_PERMISSION = re.compile(r"[Pp]ermission '?\"?([a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+){2})'?\"? (?:is )?denied")
#: google.rpc.Code -> (HTTP status, name), for an Operation's error
_RPC_CODES = {
    3: (400, "INVALID_ARGUMENT"),
    5: (404, "NOT_FOUND"),
    6: (409, "ALREADY_EXISTS"),
    7: (403, "PERMISSION_DENIED"),
    8: (429, "RESOURCE_EXHAUSTED"),
    9: (400, "FAILED_PRECONDITION"),
    10: (409, "ABORTED"),
    13: (500, "INTERNAL"),
    14: (503, "UNAVAILABLE"),
    16: (401, "UNAUTHENTICATED"),
}
#: permission prefix -> the predefined role that holds it (for the remediation line)
_ROLES = {
    "iam.serviceAccountKeys.": "roles/iam.serviceAccountKeyAdmin",
    "apikeys.keys.": "roles/serviceusage.apiKeysAdmin",
    "serviceusage.operations.": "roles/serviceusage.apiKeysAdmin",
    "orgpolicy.policy.": "roles/orgpolicy.policyViewer",
    "monitoring.timeSeries.": "roles/monitoring.viewer",
}


@dataclass(frozen=True)
class Violation:
    """One ``google.rpc.PreconditionFailure`` violation: ``type`` is e.g. ``constraints/iam.disable...``."""

    type: str
    subject: str
    description: str


class GoogleRejected(ProviderRejected):
    """A 4xx that is neither auth nor not-found, with Google's ``status`` and precondition ``violations``."""

    def __init__(self, message: str, *, status: str = "", violations: tuple[Violation, ...] = (), **kwargs):
        super().__init__(message, **kwargs)
        self.status, self.violations = status, violations


class GoogleAPI:
    """Base of the google provider's clients: every call goes through ``_call``."""

    def __init__(
        self,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        admin_remediation: str = "",
    ):
        self._policy, self._sleep, self._admin_remediation = policy, sleep, admin_remediation

    def _call(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        *,
        not_found: type[ProviderError] = ProviderRejected,
        **kwargs: Any,
    ) -> Json:
        """One request; ``what`` names the route (never the query: it may hold a key string)."""
        what = f"Google {method} /{path}"
        response = send(client, method, path, what=what, policy=self._policy, sleep=self._sleep, **kwargs)
        if response.status_code >= 400:
            raise error_for(response, what, not_found, self._admin_remediation)
        return json_object(response, what)

    def wait_operation(
        self,
        operation: Json,
        poll: Callable[[str], Json],
        what: str,
        *,
        first_wait: float = 0.5,
        max_wait: float = 5.0,
        budget: float = 60.0,
    ) -> Json:
        """Poll ``poll(name)`` (``GET /v2/{name}``) until the Operation is done, for about ``budget`` seconds.

        Returns the done Operation; its ``error`` raises (mapped as an HTTP answer would be), and one
        still running after the budget raises ``ProviderUnavailable`` naming it."""
        waited, wait = 0.0, first_wait
        while not operation.get("done"):
            name = str(operation.get("name") or "")
            if not name.startswith("operations/"):
                raise ProviderUnavailable(f"{what}: Google answered an operation without a name to follow")
            if waited >= budget:
                raise ProviderUnavailable(
                    f"{what}: Google's operation {name} was not done after {waited:.0f} s",
                    remediation=f"Check the operation later (GET /v2/{name}); rerun once it is done.",
                )
            pause = min(wait, max_wait, budget - waited)
            self._sleep(pause)
            waited, wait = waited + pause, wait * 2
            operation = poll(name)
        error = operation.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            status, name = _RPC_CODES.get(code, (400, str(code))) if isinstance(code, int) else (400, "UNKNOWN")
            raise _mapped(
                status, name, _clean(error.get("message")), error.get("details"), what, ProviderRejected,
                self._admin_remediation,
            )
        return operation


def error_for(
    response: httpx.Response, what: str, not_found: type[ProviderError], admin_remediation: str = ""
) -> ProviderError:
    """Map a Google error answer to a cauterize error (quoting Google's status and message, cleaned)."""
    code, message = provider_message(response)
    error = _envelope(response)
    return _mapped(response.status_code, code, message, error.get("details"), what, not_found, admin_remediation)


def provider_message(response: httpx.Response) -> tuple[str, str]:
    """``(status, message)`` of Google's envelope ``{"error": {code, message, status}}`` or an OAuth error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("status"), error.get("message")
    elif isinstance(error, str) and isinstance(body, dict):
        code, message = error, body.get("error_description")
    else:
        code, message = None, None
    return str(code or response.reason_phrase), _clean(message or response.reason_phrase or "no message")


def error_reasons(response: httpx.Response) -> list[str]:
    """The ``reason`` of every ``google.rpc.ErrorInfo`` in Google's ``error.details``."""
    return [str(item["reason"]) for item in _infos(_envelope(response).get("details")) if item.get("reason")]


def _mapped(
    status: int,
    code: str,
    message: str,
    details: object,
    what: str,
    not_found: type[ProviderError],
    admin_remediation: str,
) -> ProviderError:
    infos = _infos(details)
    reasons = {str(info.get("reason")) for info in infos}
    if status == 401 or code == "UNAUTHENTICATED":
        return AdminAuthError(
            f"the Google admin credential was rejected ({status} {code}): {message}", remediation=admin_remediation
        )
    if status == 403 and "SERVICE_DISABLED" in reasons:
        disabled = [i.get("metadata") for i in infos if i.get("reason") == "SERVICE_DISABLED"]
        service = next((str(m["service"]) for m in disabled if isinstance(m, dict) and m.get("service")), "")
        return ProviderRejected(
            f"{what}: the API is not enabled ({status} SERVICE_DISABLED): {message}",
            remediation=f"Enable {service or 'the API named above'} in the project (gcloud services enable), "
            "then rerun.",
        )
    if status == 403:
        permission = _permission(infos, message)
        if permission:
            role = next((role for prefix, role in _ROLES.items() if permission.startswith(prefix)), None)
            held = f" (it is in {role})" if role else ""
            wildcard = (
                " Under the project wildcard '-' Google also answers this for a resource that does not exist."
                if "/projects/-/" in what
                else ""
            )
            return MissingPermission(
                f"the Google admin credential lacks {permission} ({status} {code}): {message}",
                permission=permission,
                remediation=f"Grant the admin credential {permission}{held} on the key's project, then rerun."
                + wildcard,
            )
        return AdminAuthError(
            f"the Google admin credential was rejected ({status} {code}): {message}", remediation=admin_remediation
        )
    if status == 404:
        return not_found(f"{what}: not found (404 {code}): {message}")
    return GoogleRejected(
        f"{what}: Google refused the request ({status} {code}): {message}", status=code, violations=_violations(details)
    )


def _envelope(response: httpx.Response) -> Json:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _infos(details: object) -> list[Json]:
    return [
        item
        for item in (details if isinstance(details, list) else [])
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.ErrorInfo")
    ]


def _permission(infos: list[Json], message: str) -> str | None:
    for info in infos:
        named = (info.get("metadata") or {}).get("permission") if isinstance(info.get("metadata"), dict) else None
        if isinstance(named, str) and named:
            return named
    match = _PERMISSION.search(message)
    return match.group(1) if match else None


def _violations(details: object) -> tuple[Violation, ...]:
    found = []
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.PreconditionFailure"):
            for violation in item.get("violations") or []:
                if isinstance(violation, dict):
                    found.append(
                        Violation(
                            str(violation.get("type") or ""),
                            _clean(violation.get("subject") or ""),
                            _clean(violation.get("description") or ""),
                        )
                    )
    return tuple(found)


def _clean(text: object) -> str:
    return API_KEYLIKE.sub("[key redacted]", clean_message(str(text)))
