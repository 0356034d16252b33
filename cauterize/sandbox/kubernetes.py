"""A faithful local emulator of the few Kubernetes apiserver endpoints cauterize uses.

    GET    /api/v1/namespaces/{ns}/secrets/{name}              a v1 Secret (``data`` base64)
    PUT    /api/v1/namespaces/{ns}/secrets/{name}              replace; 409 Conflict on a stale resourceVersion
    PATCH  /api/v1/namespaces/{ns}/secrets/{name}              merge-patch or strategic-merge-patch
    GET    /apis/apps/v1/namespaces/{ns}/{kind}/{name}         kind: deployments, statefulsets, daemonsets
    PATCH  /apis/apps/v1/namespaces/{ns}/{kind}/{name}         e.g. ``kubectl rollout restart``'s annotation

As the apiserver does: ``stringData`` is folded into ``data`` on every write and never stored;
``metadata.resourceVersion`` comes from one cluster-wide counter and moves only when an object
changes; a PUT or PATCH carrying a ``resourceVersion`` other than the current one is 409 Conflict
(optimistic concurrency); an ``immutable`` Secret refuses data changes (422); a change to a
workload's spec bumps ``metadata.generation``. Strategic merge is applied as a JSON merge patch,
which is what it means for the maps used here (lists are replaced, not merged by key); JSON patch
and server-side apply are not emulated (415). Errors are ``Status`` bodies with the apiserver's
wording. Auth is a bearer token; a token may be limited to (verb, resource) rules, and a missing
rule is 403 Forbidden naming user, verb and resource as RBAC does. Pod-template restarts
(``kubectl.kubernetes.io/restartedAt`` changes) are recorded in ``emulator.restarts``.

    emulator = KubernetesEmulator()
    token = emulator.add_token()
    emulator.add_secret("prod", "openai", {"OPENAI_API_KEY": value})
    emulator.add_workload("prod", "app")
    with serve(emulator) as app: ...   # kubernetes.client.Configuration(host=app.url, api_key=...)

Requests are recorded in ``emulator.requests``; ``fail_next`` injects Status errors (a 429
carries ``Retry-After``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import fnmatch
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from cauterize.sandbox.openai import RecordedRequest

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
_NS = r"namespaces/(?P<ns>[^/]+)"
_ROUTES = [  # path pattern, API group
    (re.compile(rf"^/api/v1/{_NS}/(?P<resource>secrets)/(?P<name>[^/]+)$"), ""),
    (re.compile(rf"^/apis/apps/v1/{_NS}/(?P<resource>{'|'.join(_KINDS)})/(?P<name>[^/]+)$"), "apps"),
]
_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch"}
_SERVER_FIELDS = ("name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_FAULTS = {
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden"),
    409: ("Conflict", "Operation cannot be fulfilled: the object has been modified"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
}
Body = dict[str, Any]


@dataclass
class Restart:
    namespace: str
    kind: str  # deployments | statefulsets | daemonsets
    name: str
    restarted_at: str


@dataclass
class Token:
    user: str
    rules: frozenset[tuple[str, str]] | None  # (verb, resource); None = cluster-admin


@dataclass
class _Fault:
    method: str
    pattern: str
    status: int
    retry_after: int | None
    remaining: int
    message: str | None


@dataclass(eq=False)
class ApiStatus(Exception):
    """A failure, answered as a ``Status`` object."""

    code: int
    reason: str
    message: str
    details: Body | None = None
    retry_after: int | None = None

    def response(self) -> httpx.Response:
        body: Body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        body.update(message=self.message, reason=self.reason, **({"details": self.details} if self.details else {}))
        headers = {"retry-after": str(self.retry_after)} if self.retry_after is not None else {}
        return httpx.Response(self.code, json={**body, "code": self.code}, headers=headers)


class KubernetesEmulator:
    """In-memory Secrets and workloads behind an ``httpx`` handler (``httpx.MockTransport(emulator)``)."""

    def __init__(self, *, now: Callable[[], datetime] | None = None):
        self._clock = now or (lambda: datetime.now(UTC))
        self.objects: dict[tuple[str, str, str], Body] = {}  # (resource, namespace, name) -> object
        self.tokens: dict[str, Token] = {}
        self.restarts: list[Restart] = []
        self.requests: list[RecordedRequest] = []
        self._version = 1000
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # ---- seeding and assertions ----------------------------------------------------------------

    def add_token(
        self, user: str = "system:serviceaccount:ops:cauterize", rules: Iterable[tuple[str, str]] | None = None
    ) -> str:
        """A bearer token for ``user``, allowed ``rules`` like ``("patch", "secrets")`` (everything if None)."""
        value = secrets.token_urlsafe(32)
        self.tokens[value] = Token(user, None if rules is None else frozenset(rules))
        return value

    def add_secret(
        self,
        namespace: str,
        name: str,
        values: dict[str, str],
        *,
        annotations: dict[str, str] | None = None,
        immutable: bool = False,
    ) -> Body:
        """Create a Secret holding ``values`` (plain strings; stored base64 in ``data``)."""
        body: Body = {"metadata": {"annotations": annotations} if annotations else {}, "stringData": values}
        if immutable:
            body["immutable"] = True
        return self._store("secrets", namespace, name, _normalized_secret(body, name), created=True)

    def add_workload(self, namespace: str, name: str, kind: str = "deployments") -> Body:
        """Create a Deployment (or StatefulSet, DaemonSet) with one container."""
        labels = {"app": name}
        template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}
        spec = {"replicas": 2, "selector": {"matchLabels": labels}, "template": template}
        body = {"apiVersion": "apps/v1", "kind": _KINDS[kind], "metadata": {}, "spec": spec}
        return self._store(kind, namespace, name, body, created=True)

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's ``data``, decoded: for test assertions."""
        data = self.objects[("secrets", namespace, name)].get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: int | None = 1,
        count: int = 1,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (or ``*``) and the path glob with ``status``."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_pattern, status, retry_after, count, message))

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path glob."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or fnmatch.fnmatchcase(r.path, path))
        ]

    # ---- the handler ---------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            headers = {k.lower(): v for k, v in request.headers.items()}
            url = request.url
            recorded = RecordedRequest(request.method, url.path, url.query.decode(), headers, request.read())
            self.requests.append(recorded)
            try:
                return self._dispatch(recorded)
            except ApiStatus as exc:
                return exc.response()

    def _dispatch(self, request: RecordedRequest) -> httpx.Response:
        token = self._authenticate(request)
        self._inject_fault(request)
        for pattern, group in _ROUTES:
            if (match := pattern.match(request.path)) is None:
                continue
            ns, resource, name = match["ns"], match["resource"], match["name"]
            verb = _VERBS.get(request.method, request.method.lower())
            if token.rules is not None and (verb, resource) not in token.rules:
                message = (
                    f'{_label(resource)} "{name}" is forbidden: User "{token.user}" cannot {verb} resource '
                    f'"{resource}" in API group "{group}" in the namespace "{ns}"'
                )
                raise ApiStatus(403, "Forbidden", message, _details(resource, name))
            if verb not in ("get", "patch") and not (verb == "update" and resource == "secrets"):
                raise ApiStatus(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            current = self._existing(resource, ns, name)
            if verb == "get":
                return httpx.Response(200, json=current)
            new = self._patched(current, request) if verb == "patch" else _json_body(request)
            return httpx.Response(200, json=self._write(resource, ns, name, current, new))
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def _authenticate(self, request: RecordedRequest) -> Token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise ApiStatus(401, "Unauthorized", "Unauthorized")
        return token

    def _inject_fault(self, request: RecordedRequest) -> None:
        for fault in self._faults:
            matches = fault.method in ("*", request.method) and fnmatch.fnmatchcase(request.path, fault.pattern)
            if fault.remaining > 0 and matches:
                fault.remaining -= 1
                reason, message = _FAULTS.get(fault.status, ("InternalError", "Internal error occurred: injected"))
                retry_after = fault.retry_after if fault.status == 429 else None
                raise ApiStatus(fault.status, reason, fault.message or message, retry_after=retry_after)

    # ---- objects -------------------------------------------------------------------------------

    def _existing(self, resource: str, ns: str, name: str) -> Body:
        found = self.objects.get((resource, ns, name))
        if found is None:
            raise ApiStatus(404, "NotFound", f'{_label(resource)} "{name}" not found', _details(resource, name))
        return copy.deepcopy(found)

    def _patched(self, current: Body, request: RecordedRequest) -> Body:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            message = "the body of the request was in an unknown format - accepted media types include: "
            raise ApiStatus(415, "UnsupportedMediaType", message + ", ".join(PATCH_TYPES))
        patch = _json_body(request)
        return _merge_patch(current, patch)

    def _write(self, resource: str, ns: str, name: str, current: Body, new: Body) -> Body:
        """Store ``new`` in place of ``current`` as the apiserver does, or refuse with a Status."""
        meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
        if meta.get("name", name) != name:
            message = f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            raise ApiStatus(400, "BadRequest", message)
        if meta.get("resourceVersion", old_meta["resourceVersion"]) != old_meta["resourceVersion"]:
            message = (
                f'Operation cannot be fulfilled on {_label(resource)} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
            raise ApiStatus(409, "Conflict", message, _details(resource, name))
        meta.update({k: v for k, v in old_meta.items() if k in _SERVER_FIELDS})
        if resource == "secrets":
            new = _normalized_secret(new, name)
            if current.get("immutable") and (new["data"] != current["data"] or not new.get("immutable")):
                message = f'Secret "{name}" is invalid: data: Forbidden: field is immutable when `immutable` is set'
                raise ApiStatus(422, "Invalid", message, _details(resource, name))
        elif new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
            stamp = _template_annotation(new, RESTARTED_AT)
            if stamp and stamp != _template_annotation(current, RESTARTED_AT):
                self.restarts.append(Restart(ns, resource, name, stamp))
        if new == current:
            return current  # a no-op write does not move resourceVersion
        return self._store(resource, ns, name, new, created=False)

    def _store(self, resource: str, ns: str, name: str, body: Body, *, created: bool) -> Body:
        self._version += 1
        meta = body.setdefault("metadata", {})
        meta.update(name=name, namespace=ns, resourceVersion=str(self._version))
        if created:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"))
            if resource != "secrets":
                meta["generation"] = 1
        self.objects[(resource, ns, name)] = copy.deepcopy(body)
        return body


def _normalized_secret(body: Body, name: str) -> Body:
    """Fold ``stringData`` into ``data`` and check keys and base64, as the apiserver does."""
    data = dict(body.get("data") or {})
    for key, value in (body.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    for key, value in data.items():
        if not _KEY.match(key):
            message = (
                f'Secret "{name}" is invalid: data[{key}]: Invalid value: "{key}": a valid config key must '
                "consist of alphanumeric characters, '-', '_' or '.'"
            )
            raise ApiStatus(422, "Invalid", message, _details("secrets", name))
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ApiStatus(400, "BadRequest", f"illegal base64 data in Secret data[{key}]") from None
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", **body, "data": data}


def _template_annotation(workload: Body, name: str) -> str | None:
    template = (workload.get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get(name)


def _label(resource: str) -> str:
    """How the apiserver names a resource in messages: ``secrets``, ``deployments.apps``."""
    return resource if resource == "secrets" else f"{resource}.apps"


def _details(resource: str, name: str) -> Body:
    return {"name": name, **({} if resource == "secrets" else {"group": "apps"}), "kind": resource}


def _json_body(request: RecordedRequest) -> Body:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiStatus(400, "BadRequest", "the object provided is unrecognized (must be a JSON object)")
    return body


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif not key.startswith("$"):  # strategic-merge directives ($patch, $retainKeys) are not modelled
            result[key] = _merge_patch(result.get(key), value)
    return result


__all__ = ["PATCH_TYPES", "RESTARTED_AT", "ApiStatus", "KubernetesEmulator", "Restart", "Token"]
