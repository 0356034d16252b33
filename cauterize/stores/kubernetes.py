"""Kubernetes Secrets: one key of a Secret, patched with the official client, then a rollout restart.

    GET   /api/v1/namespaces/{ns}/secrets/{name}             read_secret()        None on 404
    PATCH /api/v1/namespaces/{ns}/secrets/{name}             patch_secret_key()   data[key] only, with a
                                                                                  resourceVersion precondition
    PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}   restart_workload()   as `kubectl rollout restart`

``write`` is the composite: read_secret, patch_secret_key (a strategic merge of ``data[key]`` that
keeps every other key and carries the resourceVersion just read, so a concurrent change is a 409
and the read-patch is repeated, at most three times), read back, then restart_workload when the
runbook names ``restart: deployment/NAME`` (also ``statefulset/`` and ``daemonset/``): the
pod-template annotation ``kubectl.kubernetes.io/restartedAt`` set to now (RFC 3339), which is what
kubectl does. If that restart fails the previous value is patched back before the error is
raised, so a failed write leaves the Secret as it was. ``version`` is the new resourceVersion.

``undo`` patches the previous value back (or removes the key if there was none). It does not
restart the workload again: pods already running with the new key keep working, and the next
restart reads the restored value. A Secret that does not exist is not created: a typo in the
namespace or name must not silently create a Secret nobody reads.

Kubernetes keeps no history of a Secret's data, but ``kubectl apply`` does: its
``kubectl.kubernetes.io/last-applied-configuration`` annotation holds the whole manifest applied
last, data included. When it still holds the old value, the write reports it as ``lingering``.

Connection settings come from ``KUBECONFIG`` (or ``~/.kube/config``; in a pod, the service
account), its current context, or an injected ``kubernetes.client.Configuration``. The identity
needs get and patch on secrets in the namespace, and patch on the workload (API group apps) to
restart it. Every ``ApiException`` becomes a ``StoreError`` in ``_error``.

``missing()`` reads that configuration the way the client does (the kubeconfig files merged, the
current context, its cluster and user, the files they name; or the in-cluster service account)
without loading credentials: no exec plugin or auth-provider is run, no call made.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger
from urllib3.exceptions import HTTPError as TransportError
from urllib3.util.retry import Retry

from cauterize.errors import InputError, KeySourceError, StoreError
from cauterize.secret import Secret, scrub
from cauterize.stores.base import StoreWrite, answers_checked, register

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
RESTART_KINDS = {
    "deployment": "deployments",
    "deployments": "deployments",
    "deploy": "deployments",
    "statefulset": "statefulsets",
    "statefulsets": "statefulsets",
    "sts": "statefulsets",
    "daemonset": "daemonsets",
    "daemonsets": "daemonsets",
    "ds": "daemonsets",
}
_PATCH_WORKLOAD = {
    "deployments": "patch_namespaced_deployment",
    "statefulsets": "patch_namespaced_stateful_set",
    "daemonsets": "patch_namespaced_daemon_set",
}
TIMEOUT = (10.0, 30.0)  # connect, read (seconds)
ATTEMPTS = 3  # for 429/5xx answers and for 409 conflicts
# urllib3 retries connection failures only; answers (429 Retry-After included) come back to ``_call``,
# which waits with an injectable sleep and a cap, and a PATCH is never re-sent after a read error.
_TRANSPORT_RETRIES = Retry(
    total=3, connect=3, read=0, redirect=0, status=0, other=0, backoff_factor=0.2, respect_retry_after_header=False
)


class _Conflict(StoreError):
    """The Secret changed between our read and our patch (409): read again and retry."""

    retryable = True


class KubernetesStore:
    kind = "kubernetes"

    def __init__(
        self,
        namespace: str,
        secret: str,
        key: str,
        restart: str | None = None,
        *,
        configuration: k8s.Configuration | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.namespace, self.secret, self.key = namespace, secret, key
        self.restart: tuple[str, str] | None = None
        if restart is not None:
            kind, _, name = restart.partition("/")
            if kind.lower() not in RESTART_KINDS or not name:
                raise InputError(
                    f"kubernetes restart {restart!r} must be deployment/NAME, statefulset/NAME or daemonset/NAME"
                )
            self.restart = (RESTART_KINDS[kind.lower()], name)
        self._configuration, self.sleep, self.clock = configuration, sleep, clock
        self._api: k8s.ApiClient | None = None

    def describe(self) -> str:
        return f"kubernetes {self.namespace}/{self.secret} {self.key}"

    def missing(self) -> list[str]:
        """What keeps ``_client`` from configuring itself here (nothing is run, no call made)."""
        return [] if self._configuration is not None else _config_readiness(self.describe())[0]

    def notes(self) -> list[str]:
        """Credentials an exec plugin or auth-provider would produce when first used (not run here)."""
        return [] if self._configuration is not None else _config_readiness(self.describe())[1]

    @answers_checked
    def read(self) -> Secret | None:
        current = self.read_secret()
        return None if current is None else self._value_of(current)

    @answers_checked
    def write(self, value: Secret) -> StoreWrite:
        encoded = base64.b64encode(value.reveal().encode()).decode()
        for attempt in range(1, ATTEMPTS + 1):
            current = self.read_secret()
            if current is None:
                raise StoreError(
                    f"{self.describe()}: secret {self.namespace}/{self.secret} does not exist",
                    remediation="Check namespace and secret in the runbook; cauterize changes Secrets, it does not create them.",
                )
            previous = (current.data or {}).get(self.key)
            try:
                patched = self.patch_secret_key(encoded, resource_version=current.metadata.resource_version)
                break
            except _Conflict:
                if attempt == ATTEMPTS:
                    raise
        if self.read() != value:
            raise StoreError(
                f"{self.describe()}: read-back after the patch does not hold the new key; {self._put_back(previous)}"
            )
        details: dict[str, Any] = {
            "namespace": self.namespace,
            "secret": self.secret,
            "key": self.key,
            "resourceVersion": patched.metadata.resource_version,
            "previousResourceVersion": current.metadata.resource_version,
        }
        if self.restart is not None:
            try:
                details["restartedAt"] = self.restart_workload()
            except StoreError as exc:
                raise StoreError(f"{exc.message}; {self._put_back(previous)}", remediation=exc.remediation) from exc
            details["restarted"] = "/".join(self.restart)
        return StoreWrite(
            store=self.describe(),
            version=patched.metadata.resource_version,
            details=details,
            lingering=self._lingering(patched, previous),
            undo=partial(self.patch_secret_key, previous),
        )

    # ---- one method per call -------------------------------------------------------------------

    def read_secret(self) -> k8s.V1Secret | None:
        """``GET /api/v1/namespaces/{ns}/secrets/{name}``: the Secret, or None on 404."""
        read = self.core.read_namespaced_secret
        return self._call("get", "secrets", read, self.secret, self.namespace, missing_ok=True)

    def patch_secret_key(self, encoded: str | None, *, resource_version: str | None = None) -> k8s.V1Secret:
        """``PATCH .../secrets/{name}`` (strategic merge): ``data[key]`` only, None removes the key; a
        ``resource_version`` makes it conditional (409 when the Secret changed since)."""
        body: dict[str, Any] = {"data": {self.key: encoded}}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._call("patch", "secrets", self.core.patch_namespaced_secret, self.secret, self.namespace, body)

    def restart_workload(self) -> str:
        """``PATCH /apis/apps/v1/namespaces/{ns}/{kind}/{name}``: what ``kubectl rollout restart`` sends."""
        assert self.restart is not None
        resource, name = self.restart
        stamp = self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        self._call("patch", resource, getattr(self.apps, _PATCH_WORKLOAD[resource]), name, self.namespace, body)
        return stamp

    # ---- plumbing ------------------------------------------------------------------------------

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self._client())

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self._client())

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    def _client(self) -> k8s.ApiClient:
        if self._api is None:
            configuration = self._configuration
            if configuration is None:
                configuration = k8s.Configuration()
                paths = os.environ.get("KUBECONFIG") or "~/.kube/config"  # read now, not at import time
                try:
                    if any(os.path.exists(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p):
                        k8s_config.load_kube_config(
                            config_file=paths, client_configuration=configuration, persist_config=False
                        )
                    else:
                        k8s_config.load_incluster_config(client_configuration=configuration)
                except ConfigException as exc:
                    raise StoreError(
                        f"{self.describe()}: no usable Kubernetes configuration ({exc})",
                        remediation="Set KUBECONFIG to a kubeconfig whose current context reaches the cluster.",
                    ) from None
            if configuration.retries is None:
                configuration.retries = _TRANSPORT_RETRIES
            self._api = k8s.ApiClient(configuration)
        return self._api

    def _call(self, verb: str, resource: str, method: Callable[..., Any], *args: Any, missing_ok: bool = False) -> Any:
        """One API call with a timeout; 429/5xx are retried (``Retry-After`` honoured, capped); a 404
        is None when ``missing_ok``."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return method(*args, _request_timeout=TIMEOUT)
            except ApiException as exc:
                if missing_ok and exc.status == 404:
                    return None
                if exc.status in (429, 500, 502, 503, 504) and attempt < ATTEMPTS:
                    self.sleep(_retry_after(exc, default=0.5 * 2**attempt))
                    continue
                raise self._error(exc, verb, resource) from exc
            except TransportError as exc:
                host = self._client().configuration.host
                raise StoreError(
                    f"{self.describe()}: cannot reach the Kubernetes API at {host} ({type(exc).__name__})",
                    retryable=True,
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: ApiException, verb: str, resource: str) -> StoreError:
        """The one translation of apiserver failures (``Status`` bodies) into ``StoreError``."""
        status = _status_body(exc)
        reason = status.get("reason") or exc.reason or "Error"
        message = scrub(" ".join(str(status.get("message") or "").split()))[:300]
        name = self.secret if resource == "secrets" else self.restart[1] if self.restart else "?"
        text = f"{self.describe()}: cannot {verb} {resource} {self.namespace}/{name}: {reason} ({exc.status})"
        text += f": {message}" if message else ""
        if exc.status == 409:
            return _Conflict(text)
        rbac = f"Let the identity of the current context get and patch secrets in namespace {self.namespace}"
        rbac += f", and patch {self.restart[0]} (API group apps) for the restart." if self.restart else "."
        if exc.status in (401, 403):
            return StoreError(text, remediation=rbac + " Check the user of the current context in KUBECONFIG.")
        if exc.status == 404:
            return StoreError(text, remediation=f"Check the namespace and the {resource} name in the runbook.")
        return StoreError(text, retryable=exc.status == 429 or (exc.status or 0) >= 500)

    def _value_of(self, current: k8s.V1Secret) -> Secret | None:
        encoded = (current.data or {}).get(self.key)
        if not encoded:
            return None
        try:
            return Secret(base64.b64decode(encoded, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, KeySourceError):
            raise StoreError(f"{self.describe()}: data[{self.key}] is not one UTF-8 key") from None

    def _put_back(self, previous: str | None) -> str:
        """Restore the previous value after a failed write; says how that went, for the error raised."""
        try:
            self.patch_secret_key(previous)
        except StoreError as exc:
            return f"putting the previous value back failed too ({exc.message})"
        return "the secret was put back to its previous value"

    def _lingering(self, secret: k8s.V1Secret, previous: str | None) -> list[str]:
        applied = ((secret.metadata.annotations or {}) if secret.metadata else {}).get(LAST_APPLIED) or ""
        if not previous or not applied:
            return []
        try:
            old = base64.b64decode(previous).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            old = ""
        if previous in applied or (old and json.dumps(old)[1:-1] in applied):
            where = f"the {LAST_APPLIED} annotation of secret {self.namespace}/{self.secret}"
            return [f"the old value stays in {where}: apply the manifest again with the new key, or remove it"]
        return []


def _config_readiness(what: str) -> tuple[list[str], list[str]]:
    """``(missing, notes)`` for what ``KubernetesStore._client`` would load: ``KUBECONFIG`` (or
    ``~/.kube/config``) merged and its current context resolved as ``load_kube_config`` does, else the
    in-cluster service account."""
    paths = os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not any(os.path.exists(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p):
        env, files = os.environ, (incluster_config.SERVICE_TOKEN_FILENAME, incluster_config.SERVICE_CERT_FILENAME)
        if not (env.get(incluster_config.SERVICE_HOST_ENV_NAME) and env.get(incluster_config.SERVICE_PORT_ENV_NAME)):
            return [(f"{what}: no kubeconfig ({paths}) and not in a cluster (KUBERNETES_SERVICE_HOST unset): "
                    "set KUBECONFIG to a kubeconfig whose current context reaches the cluster")], []
        absent = [name for name in files if not os.path.isfile(name)]
        return ([(f"{what}: in a cluster, but the service account's {' and '.join(absent)} missing "
                 "(automountServiceAccountToken off?): mount the token, or set KUBECONFIG")] if absent else []), []
    try:  # what load_kube_config does before it loads credentials: merge the files, resolve the context
        loader = KubeConfigLoader(config_dict=KubeConfigMerger(paths).config, config_base_path=None)
        cluster, user = loader._cluster, loader._user or {}
        context = loader.current_context["name"]
    except (ConfigException, OSError, yaml.YAMLError, TypeError, AttributeError, KeyError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        return [(f"{what}: the kubeconfig ({paths}) is not usable ({detail}): fix its current-context, "
                "or set KUBECONFIG to one that works")], []
    if "server" not in cluster:
        return [f"{what}: the cluster of context {context} has no server: fix the kubeconfig"], []
    missing, notes = [], []
    files = []  # (section, key, base): a file the client opens, relative to the kubeconfig that defines ``base``
    if cluster["server"].startswith("https"):
        files += [(cluster, "certificate-authority", cluster), (user, "client-certificate", cluster),
                  (user, "client-key", cluster)]
    provider = user.safe_get("auth-provider") if user else None
    if provider and "name" in provider:
        notes.append(f"{what}: context {context} gets its token from the {provider['name']} auth-provider "
                     "(not refreshed here)")
    elif user and ("token" in user or "tokenFile" in user):
        files.append((user, "tokenFile", user))
    elif user and "exec" in user:
        command = str(user["exec"].safe_get("command") or "")
        if not command or not (shutil.which(command) or os.path.isfile(os.path.join(_directory(cluster), command))):
            missing.append(f"{what}: the exec credential plugin {command!r} of context {context} is not found: "
                           "install it or put it on PATH")
        else:
            notes.append(f"{what}: context {context} gets its credentials from the exec plugin {command} (not run here)")
    for section, key, base in files:
        data = "token" if key == "tokenFile" else f"{key}-data"  # inline data wins over the file
        if section and key in section and data not in section:
            path = os.path.normpath(os.path.join(_directory(base), section[key]))
            if not os.path.isfile(path):
                missing.append(f"{what}: {key} {path} of context {context} does not exist: fix the kubeconfig")
    return missing, notes


def _directory(node: Any) -> str:
    """The directory of the kubeconfig file a merged node came from (relative paths start there)."""
    return os.path.dirname(os.path.abspath(node.path)) if getattr(node, "path", None) else ""


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "null")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(exc: ApiException, *, default: float) -> float:
    try:
        return min(30.0, max(0.0, float((exc.headers or {}).get("Retry-After", default))))
    except (TypeError, ValueError):
        return default


@register("kubernetes")
def _from_runbook(config, loaded) -> KubernetesStore:
    return KubernetesStore(config.namespace, config.secret, config.key, config.restart)


__all__ = ["RESTARTED_AT", "KubernetesStore"]
