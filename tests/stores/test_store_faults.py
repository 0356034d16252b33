"""Every store that talks to a network API, against a server that answers every request with one fault.

Faults: 429 with and without ``Retry-After``, 500, 502, 503, a connection reset, and a 200 whose
body is not JSON. For each, the store's ``read`` and ``write`` must end in a ``StoreError`` with a
remediation, after a bounded number of requests and in bounded time, and neither the new key nor
the admin credential may appear in the message or the remediation. The server is a raw socket
server on 127.0.0.1 (HTTPS for Key Vault), so each client library goes over real HTTP.

Backoff waits are recorded, not slept, where the store or its library takes a sleep function
(GitHub, Prefect, Kubernetes, GCP, Vault: the store's ``sleep``; Azure: azure-core's ``transport.sleep``);
the time budget counts wall time plus the recorded waits. boto3 runs with its defaults (standard
mode, 3 attempts: no AWS_* variable is set for retries) and sleeps for real; hvac does not retry, the Vault store does.
A long ``Retry-After`` must be capped, and every client must have a finite timeout (there is no
hanging-server case: every store's timeout is over 5 s).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport

from cauterize.errors import StoreError
from cauterize.http import DEFAULT_POLICY
from cauterize.sandbox.azure_key_vault import make_tls_files
from cauterize.secret import Secret

MAX_REQUESTS_PER_CALL = 12
BUDGET_SECONDS = 40.0
LONGEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class Fault:
    name: str
    status: int | None = None  # None: reset the connection instead of answering
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b'{"message": "fault injected by the test"}'


FAULTS = [
    Fault("429-retry-after", 429, (("Retry-After", "1"),)),
    Fault("429", 429),
    Fault("500", 500),
    Fault("502", 502),
    Fault("503", 503),
    Fault("reset"),
    Fault("malformed", 200, body=b'{"data": {"value": "unterminated'),
]


class _FaultServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fault: Fault, context: ssl.SSLContext | None):
        self.fault, self.context = fault, context
        self.requests: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: each request read in full, counted, then answered with the fault."""

    server: _FaultServer

    def setup(self) -> None:
        self.request.settimeout(10)
        if self.server.context is not None:
            self.request = self.server.context.wrap_socket(self.request, server_side=True)
        self.rfile = self.request.makefile("rb")

    def finish(self) -> None:
        self.rfile.close()

    def handle(self) -> None:
        fault = self.server.fault
        while (request_line := self._read_request()) is not None:
            with self.server.lock:
                self.server.requests.append(request_line)
            if fault.status is None:
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.request.close()
                return
            head = [f"HTTP/1.1 {fault.status} Fault", "Content-Type: application/json",
                    f"Content-Length: {len(fault.body)}", *(f"{name}: {value}" for name, value in fault.headers)]
            self.request.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + fault.body)

    def _read_request(self) -> str | None:
        try:
            request_line = self.rfile.readline(65537).decode("latin-1").strip()
            if not request_line:
                return None
            headers: dict[str, str] = {}
            while line := self.rfile.readline(65537).decode("latin-1").strip():
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                self.request.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                    self.rfile.read(size + 2)
                self.rfile.readline()
            else:
                self.rfile.read(int(headers.get("content-length") or 0))
            return request_line
        except (OSError, ValueError):
            return None


class FaultServer:
    """Answers every request on ``url`` with ``fault``; ``count`` is the number of requests received."""

    def __init__(self, fault: Fault, context: ssl.SSLContext | None = None):
        self.server = _FaultServer(fault, context)
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()

    @property
    def count(self) -> int:
        with self.server.lock:
            return len(self.server.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StaticToken:
    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class Setup:
    """What a store builder needs: the server, the admin credential, where waits go, a private env and dir."""

    server: FaultServer
    token: str
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    ca: str
    sleeps: list[float] = field(default_factory=list)


def aws_store(setup: Setup):
    from cauterize.stores.aws_secrets_manager import AwsSecretsManagerStore

    env = setup.monkeypatch
    env.setenv("AWS_ENDPOINT_URL", setup.server.url)
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    env.setenv("AWS_ACCESS_KEY_ID", "fault-matrix")
    env.setenv("AWS_SECRET_ACCESS_KEY", setup.token)
    env.setenv("AWS_CONFIG_FILE", str(setup.tmp_path / "no-aws-config"))
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(setup.tmp_path / "no-aws-credentials"))
    return AwsSecretsManagerStore("prod/openai", "OPENAI_API_KEY")


def vault_store(setup: Setup):
    from cauterize.stores.vault import VaultKv2Store

    setup.monkeypatch.setenv("VAULT_ADDR", setup.server.url)
    setup.monkeypatch.setenv("VAULT_TOKEN", setup.token)
    return VaultKv2Store("secret", "prod/openai", "OPENAI_API_KEY", sleep=setup.sleeps.append)


def github_store(setup: Setup):
    from cauterize.stores.github_actions import GithubActionsStore

    return GithubActionsStore("org/app", "OPENAI_API_KEY", api_url=setup.server.url, token=setup.token,
                              sleep=setup.sleeps.append)


def kubernetes_store(setup: Setup):
    from cauterize.stores.kubernetes import KubernetesStore

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "faults", "cluster": {"server": setup.server.url}}],
        "users": [{"name": "cauterize", "user": {"token": setup.token}}],
        "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "cauterize"}}],
        "current-context": "faults",
    }
    path = setup.tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    setup.monkeypatch.setenv("KUBECONFIG", str(path))
    return KubernetesStore("prod", "openai", "OPENAI_API_KEY", "deployment/app", sleep=setup.sleeps.append)


def prefect_store(setup: Setup):
    from cauterize.stores.prefect_secret import PrefectSecretStore

    return PrefectSecretStore("openai", api_url=setup.server.url + "/api", api_key=setup.token,
                              sleep=setup.sleeps.append)


def gcp_store(setup: Setup):
    from cauterize.stores.gcp_secret_manager import TOKEN_ENV, GcpSecretManagerStore

    setup.monkeypatch.setenv(TOKEN_ENV, setup.token)
    return GcpSecretManagerStore("prod-project", "openai", endpoint=setup.server.url, sleep=setup.sleeps.append)


def azure_store(setup: Setup):
    from cauterize.stores.azure_key_vault import AzureKeyVaultStore, make_client

    setup.monkeypatch.setattr(RequestsTransport, "sleep", lambda _transport, seconds: setup.sleeps.append(seconds))
    client = make_client(setup.server.url, StaticToken(setup.token), connection_verify=setup.ca)
    return AzureKeyVaultStore(setup.server.url, "openai", client=client)


STORES: dict[str, Callable[[Setup], Any]] = {
    "aws-sm": aws_store,
    "vault": vault_store,
    "github": github_store,
    "k8s": kubernetes_store,
    "prefect": prefect_store,
    "gcp-sm": gcp_store,
    "azure-kv": azure_store,
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("fault-tls"))


@pytest.fixture
def open_faulty(monkeypatch, tmp_path, tls):
    """``open_faulty(store_name, fault)`` -> (store, server, setup), in an environment without any store's settings."""
    prefixes = ("AWS_", "VAULT_", "PREFECT_", "GITHUB_", "CLOUDSDK_", "GOOGLE_", "AZURE_", "KUBECONFIG")
    for name in [name for name in os.environ if name.startswith(prefixes)]:
        monkeypatch.delenv(name)
    servers: list[FaultServer] = []

    def open_store(store_name: str, fault: Fault):
        context = None
        if store_name == "azure-kv":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
        servers.append(server := FaultServer(fault, context))
        setup = Setup(server, secrets.token_urlsafe(24), monkeypatch, tmp_path, str(tls.ca))
        return STORES[store_name](setup), server, setup

    yield open_store
    for server in servers:
        server.close()


def _attempt(call: Callable[[], object], server: FaultServer, sleeps: list[float]):
    """(result, error, requests sent, seconds taken counting recorded waits) of one store call."""
    before, waited = server.count, len(sleeps)
    started = time.monotonic()
    try:
        result, error = call(), None
    except Exception as exc:
        result, error = None, exc
    return result, error, server.count - before, time.monotonic() - started + sum(sleeps[waited:])


def _problems(what: str, result: object, error: BaseException | None, requests: int, seconds: float,
              hidden: list[str]) -> list[str]:
    """What is wrong with how one call failed, naming types and counts, never values."""
    found = []
    if error is None:
        found.append(f"{what}: no error, returned {type(result).__name__}")
    elif not isinstance(error, StoreError):
        found.append(f"{what}: raised {type(error).__module__}.{type(error).__name__}, not a StoreError")
    else:
        if not (error.remediation or "").strip():
            found.append(f"{what}: StoreError without a remediation")
        if any(value in text for value in hidden for text in (str(error), error.remediation or "", error.one_line())):
            found.append(f"{what}: the new key or the admin token is in the error")
    if requests > MAX_REQUESTS_PER_CALL:
        found.append(f"{what}: {requests} requests")
    if seconds > BUDGET_SECONDS:
        found.append(f"{what}: {seconds:.1f} s")
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
@pytest.mark.parametrize("store_name", list(STORES))
def test_every_fault_is_a_bounded_store_error_with_a_remediation(store_name, fault, open_faulty, make_key):
    store, server, setup = open_faulty(store_name, fault)
    new_key = make_key()
    hidden = [new_key, setup.token]

    result, error, requests, seconds = _attempt(store.read, server, setup.sleeps)
    if getattr(store, "write_only", False):
        problems = [] if (result, error, requests) == (None, None, 0) else ["read: a write-only store read something"]
    else:
        problems = _problems("read", result, error, requests, seconds, hidden)
    written = _attempt(lambda: store.write(Secret(new_key)), server, setup.sleeps)
    problems += _problems("write", *written, hidden)
    if fault.name != "malformed":  # throttled, down or cut off: a rerun may succeed, and the error says so
        problems += [f"{what}: {type(err).__name__} not marked retryable" for what, err in
                     (("read", error), ("write", written[1])) if isinstance(err, StoreError) and not err.retryable]

    assert not problems, "; ".join(problems)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("store_name", [name for name in STORES if name not in ("aws-sm", "vault")])
def test_a_long_retry_after_is_waited_for_at_most_the_retry_cap(store_name, open_faulty, make_key):
    store, server, setup = open_faulty(store_name, Fault("429-retry-after-3600", 429, (("Retry-After", "3600"),)))
    call = (lambda: store.write(Secret(make_key()))) if getattr(store, "write_only", False) else store.read
    _, error, _, _ = _attempt(call, server, setup.sleeps)
    assert isinstance(error, StoreError)
    assert setup.sleeps and max(setup.sleeps) <= DEFAULT_POLICY.max_wait, f"waits of {setup.sleeps} s"


def _timeouts(store_name: str, store: Any) -> dict[str, float]:
    """The timeouts each store's client is made with, read from the store module or the client it built."""
    from cauterize.stores import aws_secrets_manager, gcp_secret_manager, kubernetes

    if store_name in ("aws-sm", "vault"):
        with contextlib.suppress(StoreError):
            store.read()
    if store_name == "aws-sm":
        config = store._api._client.meta.config
        assert config.connect_timeout == aws_secrets_manager._CONFIG.connect_timeout
        return {"connect": config.connect_timeout, "read": config.read_timeout}
    if store_name == "vault":
        return {"all": store._api._client.adapter._kwargs["timeout"]}
    if store_name in ("github", "prefect"):
        timeout = store.client.timeout
        return {"connect": timeout.connect, "read": timeout.read, "write": timeout.write, "pool": timeout.pool}
    if store_name == "k8s":
        connect, read = kubernetes.TIMEOUT
        return {"connect": connect, "read": read}
    if store_name == "gcp-sm":
        return {"per call": gcp_secret_manager.TIMEOUT}
    config = store._api.client._client._client._pipeline._transport.connection_config
    return {"connect": config.timeout, "read": config.read_timeout}


@pytest.mark.parametrize("store_name", list(STORES))
def test_every_store_client_has_a_finite_timeout(store_name, open_faulty):
    store, _, _ = open_faulty(store_name, Fault("500", 500))
    timeouts = _timeouts(store_name, store)
    assert timeouts and all(
        value is not None and math.isfinite(value) and 0 < value <= LONGEST_TIMEOUT for value in timeouts.values()
    ), timeouts
